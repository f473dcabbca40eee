//! `mpr-bench`: OSU-style micro-benchmarks for mpr.
//!
//! Run under the launcher, e.g. `mprun -n 2 target/release/mpr-bench latency`.
//! The methodology follows the OSU micro-benchmarks so that figures sit
//! beside theirs: warm-up iterations are not timed, latency is half a
//! round trip, bandwidth streams a window of 64 non-blocking sends per
//! iteration and counts MB as 10^6 bytes.

mod options;
mod p2p;
mod report;

use std::process::ExitCode;

use clap::Parser;

use options::{Benchmark, Options};

fn main() -> ExitCode {
    let options = Options::parse();
    let universe = match mpr::init() {
        Ok(universe) => universe,
        Err(error) => {
            eprintln!("mpr-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let world = universe.world();
    let result = match options.benchmark {
        Benchmark::Latency => p2p::latency(world, &options),
        Benchmark::Bw => p2p::bandwidth(world, &options, false),
        Benchmark::Bibw => p2p::bandwidth(world, &options, true),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mpr-bench: rank {}: {error}", world.rank());
            ExitCode::FAILURE
        }
    }
}
