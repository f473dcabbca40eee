//! Collective benchmarks, OSU-style: each call is timed on its own with a
//! barrier (not timed) between calls; every rank averages its own times,
//! and rank 0 reports the average over ranks (with `-f`, also the minimum
//! and maximum). Message size means what it means in OSU: the per-rank
//! block for gather, scatter, allgather and alltoall; the whole buffer for
//! bcast, reduce, allreduce and reduce_scatter (reductions on `f32` sums).

use mpr::op::{Max, Min, Sum};
use mpr::{Comm, Error};

use crate::options::{Benchmark, Options};
use crate::report::{self, Metric};

/// Largest collective message by default (OSU: 1 MiB).
const MAX_COLLECTIVE: usize = 1 << 20;

/// Runs one collective benchmark over every size.
pub(crate) fn run(world: &Comm, options: &Options, benchmark: Benchmark) -> Result<(), Error> {
    let format = options.format();
    let rank = world.rank();
    let name = benchmark.name();
    if rank == 0 {
        let title = format!("{name} ({} ranks)", world.size());
        report::header_with_extremes(format, &title, Metric::AvgLatency, options.full);
    }
    let sizes = if benchmark == Benchmark::Barrier {
        vec![0]
    } else {
        let floor = if benchmark.reduces() { 4 } else { 1 };
        options
            .sizes(MAX_COLLECTIVE, false)
            .into_iter()
            .filter(|&s| s >= floor)
            .collect()
    };
    for (index, size) in sizes.into_iter().enumerate() {
        let (warmup, iterations) = options.iterations(size, (200, 1000), (10, 100));
        let mut buffers = Buffers::new(world.size() as usize, size);
        world.barrier()?;
        let mut total = 0.0;
        let mut loop_started = mpr::wtime();
        for i in 0..warmup + iterations {
            let started = mpr::wtime();
            if i == warmup {
                loop_started = started;
            }
            buffers.call(world, benchmark)?;
            let elapsed = mpr::wtime() - started;
            if i >= warmup {
                total += elapsed;
            }
            if benchmark != Benchmark::Barrier {
                world.barrier()?;
            }
        }
        let iteration = (mpr::wtime() - loop_started) * 1e6 / iterations as f64;
        let mine = [total * 1e6 / iterations as f64];
        let (mut sum, mut low, mut high) = ([0.0], [0.0], [0.0]);
        world.reduce(&mine, &mut sum, Sum, 0)?;
        world.reduce(&mine, &mut low, Min, 0)?;
        world.reduce(&mine, &mut high, Max, 0)?;
        if rank == 0 {
            let average = sum[0] / f64::from(world.size());
            let extremes = options.full.then_some((low[0], high[0], iteration));
            report::row_with_extremes(format, size, average, extremes, index == 0);
        }
    }
    if rank == 0 {
        report::footer(format);
    }
    Ok(())
}

/// The buffers of one message size, allocated once before timing.
struct Buffers {
    bytes: Vec<u8>,
    all_bytes: Vec<u8>,
    all_bytes_out: Vec<u8>,
    floats: Vec<f32>,
    floats_out: Vec<f32>,
    /// Reduce-scatter: `ranks` blocks in, one block out.
    blocks: Vec<f32>,
    block: Vec<f32>,
}

impl Buffers {
    fn new(ranks: usize, size: usize) -> Buffers {
        let count = (size / 4).max(1);
        Buffers {
            bytes: vec![1; size],
            all_bytes: vec![1; size * ranks],
            all_bytes_out: vec![0; size * ranks],
            floats: vec![1.0; count],
            floats_out: vec![0.0; count],
            blocks: vec![1.0; (count / ranks).max(1) * ranks],
            block: vec![0.0; (count / ranks).max(1)],
        }
    }

    fn call(&mut self, world: &Comm, benchmark: Benchmark) -> Result<(), Error> {
        match benchmark {
            Benchmark::Bcast => world.bcast(&mut self.bytes, 0),
            Benchmark::Allreduce => world.allreduce(&self.floats, &mut self.floats_out, Sum),
            Benchmark::Reduce => world.reduce(&self.floats, &mut self.floats_out, Sum, 0),
            Benchmark::Gather => world.gather(&self.bytes, &mut self.all_bytes_out, 0),
            Benchmark::Scatter => world.scatter(&self.all_bytes, &mut self.bytes, 0),
            Benchmark::Allgather => world.allgather(&self.bytes, &mut self.all_bytes_out),
            Benchmark::Alltoall => world.alltoall(&self.all_bytes, &mut self.all_bytes_out),
            Benchmark::Barrier => world.barrier(),
            Benchmark::ReduceScatter => world.reduce_scatter(&self.blocks, &mut self.block, Sum),
            Benchmark::Latency | Benchmark::Bw | Benchmark::Bibw | Benchmark::MbwMr => Ok(()),
        }
    }
}
