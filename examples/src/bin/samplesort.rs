//! `samplesort`: sorts pseudo-random 64-bit keys spread over all ranks, so
//! that afterwards every rank holds a sorted run and the runs follow each
//! other in rank order; then checks the result.
//!
//! Pattern taught: *irregular all-to-all exchange*, the heart of parallel
//! sorting, hashing and joins (sample sort with regular sampling):
//! 1. each rank sorts its own keys and picks `s` evenly spaced samples;
//! 2. [`Comm::allgather`] gives every rank all `p·s` samples; each sorts
//!    them and takes every `s`-th as the `p - 1` *splitters*, the same on
//!    every rank without further talk;
//! 3. the splitters cut each rank's sorted keys into `p` buckets, bucket
//!    `j` for rank `j` (a binary search per splitter);
//! 4. [`Comm::alltoall`] swaps the bucket sizes (one count per pair), so
//!    each rank knows how much it will receive from whom;
//! 5. [`Comm::alltoallv`] moves the keys (blocks of different sizes per
//!    pair), and each rank sorts what it received.
//!
//! Checks, all distributed: each rank's keys are sorted; the last key of
//! each rank is at most the first key of the next non-empty rank (via an
//! allgather of every rank's first and last key); and the keys are a
//! permutation of the input, by comparing, before and after, the total
//! count and two commutative checksums of a hash of every key (wrapping
//! sum and xor), each combined over ranks with an allreduce. The
//! imbalance (largest run over mean) shows how well the samples split.
//!
//! Run: `mprun -n 4 target/release/samplesort [keys_per_rank]` (default
//! 200 000); every rank count works.
//!
//! [`Comm::allgather`]: mpr::Comm::allgather
//! [`Comm::alltoall`]: mpr::Comm::alltoall
//! [`Comm::alltoallv`]: mpr::Comm::alltoallv

use std::process::ExitCode;

use mpr::{Comm, op};
use mpr_examples::{Phases, SplitMix64, arg, mix64};

/// Samples each rank contributes per rank of the job (oversampling).
const SAMPLES: usize = 64;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("samplesort: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Count, wrapping sum and xor of a hash of the keys of every rank: equal
/// for any two arrangements of the same multiset of keys.
fn fingerprint(world: &Comm, keys: &[u64]) -> Result<[u64; 3], mpr::Error> {
    let sum = keys.iter().fold(0u64, |s, &k| s.wrapping_add(mix64(k)));
    let xor = keys.iter().fold(0u64, |x, &k| x ^ mix64(k));
    let mut count_sum = [0u64; 2];
    world.allreduce(&[keys.len() as u64, sum], &mut count_sum, op::Sum)?;
    let mut all_xor = [0u64];
    world.allreduce(&[xor], &mut all_xor, op::BitXor)?;
    Ok([count_sum[0], count_sum[1], all_xor[0]])
}

/// The `p - 1` splitters: every `SAMPLES`-th of all samples, sorted.
fn splitters(world: &Comm, sorted_keys: &[u64]) -> Result<Vec<u64>, mpr::Error> {
    let p = world.size() as usize;
    let s = SAMPLES * p;
    // Evenly spaced samples of the sorted keys (a rank without keys sends
    // zeros, which only makes the first buckets a little larger).
    let samples: Vec<u64> = (0..s)
        .map(|i| match sorted_keys.len() {
            0 => 0,
            len => sorted_keys[i * len / s],
        })
        .collect();
    let mut all = vec![0u64; s * p];
    world.allgather(&samples, &mut all)?;
    all.sort_unstable();
    Ok((1..p).map(|j| all[j * s]).collect())
}

fn run() -> Result<(), String> {
    let per_rank: usize = arg(1, "keys_per_rank", 200_000)?;
    let universe = mpr::init().map_err(|e| e.to_string())?;
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    let p = size as usize;
    let mut phases = Phases::new();

    let mut rng = SplitMix64::new(0x5eed ^ (u64::from(rank) << 32));
    let mut keys: Vec<u64> = (0..per_rank).map(|_| rng.next_u64()).collect();
    let before = fingerprint(world, &keys).map_err(|e| e.to_string())?;
    phases.lap("generate");

    keys.sort_unstable();
    phases.lap("local sort");

    let cuts = splitters(world, &keys).map_err(|e| e.to_string())?;
    phases.lap("splitters");

    // Bucket j holds the keys k with cuts[j-1] <= k < cuts[j]: since the
    // keys are sorted, buckets are consecutive runs found by binary search.
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().map(|&cut| keys.partition_point(|&k| k < cut)));
    bounds.push(keys.len());
    let send_counts: Vec<usize> = bounds.windows(2).map(|w| w[1] - w[0]).collect();
    let mut recv_counts = vec![0usize; p];
    world
        .alltoall(&send_counts, &mut recv_counts)
        .map_err(|e| e.to_string())?;
    phases.lap("alltoall counts");

    let mut sorted = vec![0u64; recv_counts.iter().sum()];
    world
        .alltoallv(&keys, &send_counts, &mut sorted, &recv_counts)
        .map_err(|e| e.to_string())?;
    phases.lap("alltoallv keys");

    // The received blocks are each sorted already; a k-way merge would do,
    // but sorting again is simpler and fast on nearly sorted input.
    sorted.sort_unstable();
    phases.lap("final sort");

    // Check 1: sorted here.
    let mut problems = Vec::new();
    if let Some(i) = sorted.windows(2).position(|w| w[0] > w[1]) {
        problems.push(format!("rank {rank}: keys {i} and {} out of order", i + 1));
    }
    // Check 2: ordered across ranks. Every rank learns every rank's
    // (count, first, last).
    let ends = [
        sorted.len() as u64,
        sorted.first().copied().unwrap_or(0),
        sorted.last().copied().unwrap_or(0),
    ];
    let mut all_ends = vec![0u64; 3 * p];
    world
        .allgather(&ends, &mut all_ends)
        .map_err(|e| e.to_string())?;
    let runs: Vec<&[u64]> = all_ends.chunks(3).filter(|e| e[0] > 0).collect();
    if rank == 0 {
        for pair in runs.windows(2) {
            if pair[0][2] > pair[1][1] {
                problems.push(format!(
                    "a run ends with {} but the next one starts with {}",
                    pair[0][2], pair[1][1]
                ));
            }
        }
    }
    // Check 3: the same multiset of keys.
    let after = fingerprint(world, &sorted).map_err(|e| e.to_string())?;
    if after != before {
        problems.push(format!(
            "keys changed: (count, sum, xor) {before:x?} before, {after:x?} after"
        ));
    }
    // Every rank's verdict, so that rank 0 reports them all.
    let mut failures = [0u32];
    world
        .allreduce(&[u32::from(!problems.is_empty())], &mut failures, op::Sum)
        .map_err(|e| e.to_string())?;
    phases.lap("check");

    if rank == 0 && failures[0] == 0 {
        let largest = all_ends.chunks(3).map(|e| e[0]).max().unwrap_or(0);
        let mean = before[0] as f64 / p as f64;
        println!(
            "samplesort: {} keys over {size} ranks sorted, ordered across ranks and a \
             permutation of the input (correct); largest run {largest}, imbalance {:.3}",
            before[0],
            largest as f64 / mean.max(1.0)
        );
    }
    phases
        .report(world, "samplesort")
        .map_err(|e| e.to_string())?;
    match (problems.is_empty(), failures[0]) {
        (true, 0) => Ok(()),
        (true, n) => Err(format!("rank {rank}: {n} rank(s) found errors")),
        (false, _) => Err(problems.join("; ")),
    }
}
