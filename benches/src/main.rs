//! `mpr-bench`: OSU-style micro-benchmarks for mpr.
//!
//! Run under the launcher, e.g. `mprun -n 2 target/release/mpr-bench latency`.
//! The methodology follows the OSU micro-benchmarks so that figures sit
//! beside theirs: warm-up iterations are not timed, latency is half a
//! round trip, bandwidth streams a window of 64 non-blocking sends per
//! iteration and counts MB as 10^6 bytes.
//!
//! `mpr-bench plot A.csv [B.csv ...] -o OUT.svg` draws `--csv` results and
//! runs without the launcher: it is dispatched before `mpr::init`.

mod coll;
mod csv;
mod options;
mod p2p;
mod plot;
mod report;

use std::process::ExitCode;

use clap::Parser;

use options::{Benchmark, Command, Options};

fn main() -> ExitCode {
    let options = Options::parse();
    if let Some(Command::Plot(plot)) = &options.command {
        return match plot::run(plot) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("mpr-bench plot: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(benchmark) = options.benchmark else {
        unreachable!("clap requires a benchmark without a subcommand");
    };
    let universe = match mpr::init() {
        Ok(universe) => universe,
        Err(error) => {
            eprintln!("mpr-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let world = universe.world();
    let result = match benchmark {
        Benchmark::Latency => p2p::latency(world, &options),
        Benchmark::Bw => p2p::bandwidth(world, &options, false),
        Benchmark::Bibw => p2p::bandwidth(world, &options, true),
        Benchmark::MbwMr => p2p::multi_bandwidth(world, &options),
        collective if options.dup => world
            .dup()
            .and_then(|comm| coll::run(&comm, &options, collective)),
        collective => coll::run(world, &options, collective),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mpr-bench: rank {}: {error}", world.rank());
            ExitCode::FAILURE
        }
    }
}
