//! Command line of `mpr-bench`, with the OSU benchmarks' names and options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Which benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Benchmark {
    /// One-way latency: ping-pong between ranks 0 and 1, half the round trip.
    Latency,
    /// Streaming bandwidth from rank 0 to rank 1 (window of non-blocking sends).
    Bw,
    /// Bidirectional bandwidth between ranks 0 and 1.
    Bibw,
    /// Multiple bandwidth / message rate: ranks i and i+n/2 form pairs that
    /// all stream at once.
    #[value(name = "mbw_mr")]
    MbwMr,
    /// Broadcast from rank 0 (size: whole buffer).
    Bcast,
    /// Allreduce, f32 sum (size: whole buffer).
    Allreduce,
    /// Reduce to rank 0, f32 sum (size: whole buffer).
    Reduce,
    /// Gather to rank 0 (size: per-rank block).
    Gather,
    /// Scatter from rank 0 (size: per-rank block).
    Scatter,
    /// Allgather (size: per-rank block).
    Allgather,
    /// All-to-all (size: per-rank block).
    Alltoall,
    /// Barrier.
    Barrier,
    /// Reduce-scatter (block variant), f32 sum (size: whole buffer).
    #[value(name = "reduce_scatter")]
    ReduceScatter,
}

impl Benchmark {
    /// The OSU name of the benchmark.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Benchmark::Latency => "latency",
            Benchmark::Bw => "bw",
            Benchmark::Bibw => "bibw",
            Benchmark::MbwMr => "mbw_mr",
            Benchmark::Bcast => "bcast",
            Benchmark::Allreduce => "allreduce",
            Benchmark::Reduce => "reduce",
            Benchmark::Gather => "gather",
            Benchmark::Scatter => "scatter",
            Benchmark::Allgather => "allgather",
            Benchmark::Alltoall => "alltoall",
            Benchmark::Barrier => "barrier",
            Benchmark::ReduceScatter => "reduce_scatter",
        }
    }

    /// Whether the benchmark is a reduction over `f32` (sizes from 4 bytes).
    pub(crate) fn reduces(self) -> bool {
        matches!(
            self,
            Benchmark::Allreduce | Benchmark::Reduce | Benchmark::ReduceScatter
        )
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// OSU-style table.
    Table,
    /// `size,value` lines with a header.
    Csv,
    /// One JSON object.
    Json,
}

/// OSU-style micro-benchmarks for mpr.
///
/// Benchmarks run under the launcher (`mprun -n 2 mpr-bench latency`);
/// `mpr-bench plot` runs on its own.
#[derive(Debug, Parser)]
#[command(
    name = "mpr-bench",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub(crate) struct Options {
    /// A tool that runs without the launcher instead of a benchmark.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// The benchmark to run.
    #[arg(value_enum, required = true)]
    pub(crate) benchmark: Option<Benchmark>,
    /// Message sizes, `min:max` in bytes (powers of two in between; `max` alone also works).
    #[arg(short = 'm', long = "message-size", value_parser = parse_range)]
    pub(crate) sizes: Option<(usize, usize)>,
    /// Timed iterations for small messages (large ones use a tenth).
    #[arg(short = 'i', long = "iterations")]
    pub(crate) iterations: Option<usize>,
    /// Warm-up iterations for small messages (large ones use a tenth).
    #[arg(short = 'x', long = "warmup")]
    pub(crate) warmup: Option<usize>,
    /// Window of non-blocking sends for bandwidth tests.
    #[arg(short = 'W', long = "window-size", default_value_t = 64)]
    pub(crate) window: usize,
    /// Bandwidth tests: the most bytes of receive buffer in use at once.
    /// `osu_bw` receives the whole window into one buffer (C allows it);
    /// safe Rust cannot alias receive buffers, so when `window x size`
    /// exceeds this, the receiver posts its window in batches that share
    /// one buffer of this size, keeping the memory touched per window
    /// (and so the caches' share of the figure) close to `osu_bw`'s.
    /// `0` gives every message of the window its own slice.
    #[arg(long = "recv-footprint", default_value_t = DEFAULT_RECV_FOOTPRINT)]
    pub(crate) recv_footprint: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    /// Shorthand for `--format csv`.
    #[arg(long)]
    pub(crate) csv: bool,
    /// Shorthand for `--format json`.
    #[arg(long)]
    pub(crate) json: bool,
    /// Collectives: also report the minimum and maximum latency over ranks,
    /// and the iteration time: rank 0's wall time of the timed loop
    /// (collective and the barrier after it) per iteration, which counts
    /// the time ranks wait for the slowest to leave.
    #[arg(short = 'f', long = "full")]
    pub(crate) full: bool,
    /// Collectives: run on a duplicate of the world communicator
    /// (`Comm::dup`) instead of the world itself, to measure collectives
    /// on a derived communicator.
    #[arg(long)]
    pub(crate) dup: bool,
}

/// Tools that need no launcher.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Draws `--csv` results as a log-log chart (no launcher needed).
    ///
    /// The value against message size, one series per CSV, to SVG (PNG when
    /// OUT ends in `.png`). Rows with size 0 (or a value of 0) cannot sit on
    /// a log axis and are skipped.
    Plot(PlotOptions),
}

/// Options of `mpr-bench plot`.
#[derive(Debug, Args)]
pub(crate) struct PlotOptions {
    /// CSV files from `mpr-bench NAME --csv` or `mpi_bench NAME --csv`.
    #[arg(required = true, value_name = "CSV")]
    pub(crate) inputs: Vec<PathBuf>,
    /// Output file: SVG, or PNG when the name ends in `.png`.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub(crate) output: PathBuf,
    /// Chart title (default: the metric against message size).
    #[arg(short = 't', long)]
    pub(crate) title: Option<String>,
    /// Series label, given once per CSV in order (default: the file stem).
    #[arg(short = 'l', long = "label", value_name = "LABEL")]
    pub(crate) labels: Vec<String>,
}

/// Messages above this size count as large (OSU's `LARGE_MESSAGE_SIZE`).
pub(crate) const LARGE_MESSAGE: usize = 8192;

/// Default `--recv-footprint`: 1 MiB.
pub(crate) const DEFAULT_RECV_FOOTPRINT: usize = 1 << 20;

impl Options {
    /// The output format after the shorthands.
    pub(crate) fn format(&self) -> Format {
        if self.csv {
            Format::Csv
        } else if self.json {
            Format::Json
        } else {
            self.format
        }
    }

    /// Sizes to measure: 0 (latency only), then powers of two.
    /// How many receives of `size` bytes a bandwidth test posts at once:
    /// the whole window, or as many as fit in `--recv-footprint` (at least one).
    pub(crate) fn recv_batch(&self, size: usize) -> usize {
        let window = self.window.max(1);
        if self.recv_footprint == 0 {
            return window;
        }
        (self.recv_footprint / size.max(1)).clamp(1, window)
    }

    pub(crate) fn sizes(&self, default_max: usize, include_zero: bool) -> Vec<usize> {
        let (min, max) = self
            .sizes
            .unwrap_or((if include_zero { 0 } else { 1 }, default_max));
        let mut sizes = Vec::new();
        if min == 0 {
            sizes.push(0);
        }
        let mut size = min.max(1).next_power_of_two();
        while size <= max {
            sizes.push(size);
            size *= 2;
        }
        sizes
    }

    /// (warm-up, timed) iterations for a message size.
    pub(crate) fn iterations(
        &self,
        size: usize,
        small: (usize, usize),
        large: (usize, usize),
    ) -> (usize, usize) {
        let (warmup, iterations) = if size > LARGE_MESSAGE { large } else { small };
        let scale = |given: Option<usize>, default: usize, small_default: usize| {
            given.map_or(default, |g| {
                if size > LARGE_MESSAGE {
                    (g * default / small_default).max(1)
                } else {
                    g
                }
            })
        };
        (
            scale(self.warmup, warmup, small.0),
            scale(self.iterations, iterations, small.1),
        )
    }
}

fn parse_range(text: &str) -> Result<(usize, usize), String> {
    let number = |part: &str| {
        part.trim()
            .parse::<usize>()
            .map_err(|_| format!("{part:?} is not a byte count"))
    };
    match text.split_once(':') {
        Some((min, max)) => {
            let (min, max) = (number(min)?, number(max)?);
            if min > max {
                return Err(format!("min {min} is above max {max}"));
            }
            Ok((min, max))
        }
        None => Ok((0, number(text)?)),
    }
}
