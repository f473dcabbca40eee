//! Small helpers shared by the example programs: per-phase timing reported
//! by rank 0, and a deterministic pseudo-random generator so that every run
//! (and every rank count) works on the same data.
//!
//! The programs themselves are the binaries under `src/bin/`; each one's
//! module doc explains the parallel pattern it teaches.

use std::ops::Range;

use mpr::{Comm, op};

/// Wall-clock time per phase of a program, measured on every rank with
/// [`mpr::wtime`] and reported by rank 0 as the slowest rank's time (a
/// phase is over when its last rank is done).
///
/// ```
/// mpr::local::run(2, |world| {
///     let mut phases = mpr_examples::Phases::new();
///     let sum: u64 = (0..1000).sum();
///     phases.lap("compute");
///     let mut total = [0u64];
///     world.allreduce(&[sum], &mut total, mpr::op::Sum)?;
///     phases.lap("allreduce");
///     phases.report(&world, "doc")?;
///     Ok::<(), mpr::Error>(())
/// });
/// ```
#[derive(Debug, Clone)]
pub struct Phases {
    names: Vec<&'static str>,
    seconds: Vec<f64>,
    started: f64,
    last: f64,
}

impl Default for Phases {
    fn default() -> Self {
        Phases::new()
    }
}

impl Phases {
    /// Starts the clock of the first phase now.
    pub fn new() -> Phases {
        let now = mpr::wtime();
        Phases {
            names: Vec::new(),
            seconds: Vec::new(),
            started: now,
            last: now,
        }
    }

    /// Ends the current phase, naming it, and starts the next one.
    pub fn lap(&mut self, name: &'static str) {
        let now = mpr::wtime();
        self.add(name, now - self.last);
        self.last = now;
    }

    /// Adds `seconds` to phase `name` (created at the end if new), for
    /// phases interleaved in a loop; does not move the clock of [`lap`].
    ///
    /// [`lap`]: Phases::lap
    pub fn add(&mut self, name: &'static str, seconds: f64) {
        match self.names.iter().position(|&n| n == name) {
            Some(index) => self.seconds[index] += seconds,
            None => {
                self.names.push(name);
                self.seconds.push(seconds);
            }
        }
    }

    /// Restarts the clock of the current phase now (time since the last
    /// lap is not counted).
    pub fn skip(&mut self) {
        self.last = mpr::wtime();
    }

    /// Reduces every phase to its slowest rank and prints one line per
    /// phase on rank 0, `program: phase NAME  SECONDS s`, then the total.
    /// Collective: every rank calls it, with the same phases in the same
    /// order.
    pub fn report(&self, comm: &Comm, program: &str) -> Result<(), mpr::Error> {
        let mut mine = self.seconds.clone();
        mine.push(self.last - self.started);
        let mut slowest = vec![0.0; mine.len()];
        comm.reduce(&mine, &mut slowest, op::Max, 0)?;
        if comm.rank() == 0 {
            let width = self.names.iter().map(|n| n.len()).max().unwrap_or(0);
            let names = self.names.iter().copied().chain(["total"]);
            for (name, seconds) in names.zip(&slowest) {
                println!("{program}: phase {name:<width$}  {seconds:>10.6} s");
            }
        }
        Ok(())
    }
}

/// SplitMix64, a tiny, fast pseudo-random generator: the same seed gives
/// the same numbers on every platform, which makes the examples'
/// results reproducible and independent of the rank count.
///
/// ```
/// let mut a = mpr_examples::SplitMix64::new(7);
/// let mut b = mpr_examples::SplitMix64::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!((0.0..1.0).contains(&a.next_f64()));
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// A uniform float in `[0, 1)`, with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..bound` (`bound > 0`; the tiny modulo bias
    /// does not matter here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The SplitMix64 finalizer: a bijective mix of 64 bits, also a good hash
/// of an integer key.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The part of `0..len` that rank `rank` of `size` owns in a block
/// distribution: contiguous blocks whose lengths differ by at most one,
/// the longer ones first.
///
/// ```
/// use mpr_examples::block;
/// assert_eq!([block(10, 3, 0), block(10, 3, 1), block(10, 3, 2)], [0..4, 4..7, 7..10]);
/// ```
pub fn block(len: usize, size: u32, rank: u32) -> Range<usize> {
    let (size, rank) = (size as usize, rank as usize);
    let (base, extra) = (len / size, len % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// Parses optional positional argument `index` (1-based, as in
/// `std::env::args`), with `default` when absent.
pub fn arg<T: std::str::FromStr>(index: usize, name: &str, default: T) -> Result<T, String> {
    match std::env::args().nth(index) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| format!("argument {name}: cannot parse {text:?}")),
    }
}
