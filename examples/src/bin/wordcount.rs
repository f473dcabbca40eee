//! `wordcount`: counts the words of a text in parallel, merges the counts,
//! and checks them against a serial count; prints the ten most frequent
//! words.
//!
//! Pattern taught: *irregular work on serde objects* (map-reduce). The
//! data are not arrays of numbers but strings and hash maps of varying
//! size, so they travel as objects (serialized with serde):
//! 1. rank 0 makes a deterministic text (words drawn from a Zipf-like
//!    distribution, lines of varying length) or reads the file given, and
//!    cuts it at line ends into one chunk per rank of about equal size in
//!    bytes (not in lines: lines differ in length);
//! 2. [`Comm::scatter_obj`] sends each rank its chunk as a `String`;
//! 3. each rank counts its words into a `HashMap<String, u64>` (map);
//! 4. the maps are merged up a binomial tree with [`Comm::send_obj`] /
//!    [`Comm::recv_obj`] (reduce): in round `k`, a rank whose bit `k` is set
//!    sends its map to the rank `2^k` below it and is done, which merges
//!    it into its own; after ⌈log₂ p⌉ rounds rank 0 holds everything. Maps
//!    grow as they climb, which a fixed-size reduction could not express.
//!
//! Rank 0 then counts the whole text itself and compares both maps entry
//! by entry. A word is a maximal run of alphanumeric characters,
//! lowercased.
//!
//! Run: `mprun -n 4 target/release/wordcount [lines | FILE]` (default
//! 20 000 generated lines); every rank count works.
//!
//! [`Comm::scatter_obj`]: mpr::Comm::scatter_obj
//! [`Comm::send_obj`]: mpr::Comm::send_obj
//! [`Comm::recv_obj`]: mpr::Comm::recv_obj

use std::collections::HashMap;
use std::process::ExitCode;

use mpr::Comm;
use mpr_examples::{Phases, SplitMix64};

/// Word counts.
type Counts = HashMap<String, u64>;

/// Tag of the maps sent up the merge tree.
const MERGE: i32 = 7;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wordcount: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A deterministic text of `lines` lines: words from a vocabulary of made
/// up words, the `r`-th most common with probability about `1/r`
/// (Zipf's law, as in natural text), 0 to 15 words a line.
fn generate(lines: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "an", "el", "or", "um", "ber", "dix",
        "qua", "zen",
    ];
    let mut rng = SplitMix64::new(42);
    let vocabulary: Vec<String> = (0..3000)
        .map(|_| {
            let syllables = 1 + rng.below(3);
            (0..syllables)
                .map(|_| SYLLABLES[rng.below(16) as usize])
                .collect()
        })
        .collect();
    // Cumulative weights 1/1, 1/2, 1/3, ... for inverse-CDF sampling.
    let cumulative: Vec<f64> = vocabulary
        .iter()
        .enumerate()
        .scan(0.0, |total, (r, _)| {
            *total += 1.0 / (r + 1) as f64;
            Some(*total)
        })
        .collect();
    let total = cumulative[cumulative.len() - 1];
    let mut text = String::new();
    for _ in 0..lines {
        let words = rng.below(16);
        for w in 0..words {
            let x = rng.next_f64() * total;
            let word = &vocabulary[cumulative.partition_point(|&c| c <= x)];
            if w == 0 {
                // Capitalized, to exercise the lowercasing.
                let mut chars = word.chars();
                let first = chars.next().map(|c| c.to_ascii_uppercase());
                text.extend(first);
                text.push_str(chars.as_str());
            } else {
                text.push(' ');
                text.push_str(word);
            }
        }
        if words > 0 {
            text.push('.');
        }
        text.push('\n');
    }
    text
}

/// Cuts `text` at line ends into `parts` chunks of about equal size in
/// bytes (some may be empty if lines are long).
fn chunks(text: &str, parts: usize) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut result = Vec::with_capacity(parts);
    let mut start = 0;
    for part in 1..parts {
        // The chunk ends with the line holding byte `target`.
        let target = text.len() * part / parts;
        let end = if target < start {
            start
        } else {
            match bytes[target..].iter().position(|&b| b == b'\n') {
                Some(offset) => target + offset + 1,
                None => text.len(),
            }
        };
        result.push(text[start..end].to_owned());
        start = end;
    }
    result.push(text[start..].to_owned());
    result
}

/// Adds the words of `text` to `counts`.
fn count_words(text: &str, counts: &mut Counts) {
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if !word.is_empty() {
            *counts.entry(word.to_lowercase()).or_default() += 1;
        }
    }
}

/// Merges every rank's counts into rank 0's, up a binomial tree; other
/// ranks end with an empty map.
fn merge_tree(world: &Comm, mut counts: Counts) -> Result<Counts, mpr::Error> {
    let (rank, size) = (world.rank(), world.size());
    let mut step = 1;
    while step < size {
        if rank % (2 * step) == step {
            world.send_obj(&counts, rank - step, MERGE)?;
            return Ok(Counts::new());
        }
        if rank + step < size {
            let (theirs, _) = world.recv_obj::<Counts>(rank + step, MERGE)?;
            for (word, n) in theirs {
                *counts.entry(word).or_default() += n;
            }
        }
        step *= 2;
    }
    Ok(counts)
}

fn run() -> Result<(), String> {
    let source = std::env::args().nth(1);
    let universe = mpr::init().map_err(|e| e.to_string())?;
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    let mut phases = Phases::new();

    // Rank 0 makes or reads the text; if that fails, every rank must stop.
    let text = if rank == 0 {
        match source.as_deref() {
            None => Ok(generate(20_000)),
            Some(arg) => match arg.parse::<usize>() {
                Ok(lines) => Ok(generate(lines)),
                Err(_) => {
                    std::fs::read_to_string(arg).map_err(|e| format!("cannot read {arg}: {e}"))
                }
            },
        }
    } else {
        Ok(String::new())
    };
    let problem = world
        .bcast_obj(Some(text.as_ref().err().cloned()), 0)
        .map_err(|e| e.to_string())?;
    if let Some(problem) = problem {
        return Err(problem);
    }
    let text = text?;
    phases.lap("make text");

    let parts = if rank == 0 {
        chunks(&text, size as usize)
    } else {
        Vec::new()
    };
    let mine: String = world.scatter_obj(&parts, 0).map_err(|e| e.to_string())?;
    phases.lap("scatter_obj");

    let mut counts = Counts::new();
    count_words(&mine, &mut counts);
    let my_words: u64 = counts.values().sum();
    phases.lap("count");

    let merged = merge_tree(world, counts).map_err(|e| e.to_string())?;
    phases.lap("merge tree");

    let mut verdict = Ok(());
    if rank == 0 {
        let mut serial = Counts::new();
        count_words(&text, &mut serial);
        phases.lap("serial count");
        if parts.concat() != text {
            verdict = Err("the chunks do not add up to the text".to_string());
        } else if merged != serial {
            let wrong = serial
                .iter()
                .filter(|&(word, n)| merged.get(word) != Some(n))
                .count()
                + merged.keys().filter(|w| !serial.contains_key(*w)).count();
            verdict = Err(format!(
                "{wrong} of {} words are counted differently in parallel",
                serial.len()
            ));
        } else {
            let total: u64 = serial.values().sum();
            println!(
                "wordcount: {total} words ({} distinct) in {} lines over {size} ranks; \
                 merged counts equal the serial count (correct)",
                serial.len(),
                text.lines().count()
            );
            let mut top: Vec<(&String, &u64)> = serial.iter().collect();
            top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (place, (word, n)) in top.iter().take(10).enumerate() {
                println!("wordcount: {:>2}. {word:<12} {n}", place + 1);
            }
        }
    } else {
        phases.lap("serial count");
    }
    // How evenly the chunks split the work.
    let per_rank = world.gather_obj(&my_words, 0).map_err(|e| e.to_string())?;
    if let Some(per_rank) = per_rank {
        println!("wordcount: words per rank {per_rank:?}");
    }
    phases.lap("check");
    phases
        .report(world, "wordcount")
        .map_err(|e| e.to_string())?;
    verdict
}
