//! Point-to-point benchmarks between ranks 0 and 1: latency, bw, bibw.

use mpr::{Comm, Error};

use crate::options::Options;
use crate::report::{self, Metric};

/// Largest point-to-point message by default (OSU: 4 MiB).
const MAX_P2P: usize = 4 << 20;

fn require_pair(world: &Comm) -> Result<bool, Error> {
    if world.size() < 2 {
        eprintln!("mpr-bench: point-to-point benchmarks need at least 2 ranks");
        world.abort(2);
    }
    Ok(world.rank() < 2)
}

/// OSU latency: ping-pong, half the round-trip time, per size.
pub(crate) fn latency(world: &Comm, options: &Options) -> Result<(), Error> {
    if !require_pair(world)? {
        return Ok(());
    }
    let format = options.format();
    let rank = world.rank();
    if rank == 0 {
        report::header(format, "latency", Metric::Latency);
    }
    for (index, size) in options.sizes(MAX_P2P, true).into_iter().enumerate() {
        let (warmup, iterations) = options.iterations(size, (100, 10_000), (10, 1_000));
        let send = vec![b'a'; size];
        let mut recv = vec![0u8; size];
        let mut started = 0.0;
        for i in 0..warmup + iterations {
            if i == warmup {
                started = mpr::wtime();
            }
            if rank == 0 {
                world.send(&send, 1, 1)?;
                world.recv(&mut recv, 1, 1)?;
            } else {
                world.recv(&mut recv, 0, 1)?;
                world.send(&send, 0, 1)?;
            }
        }
        let latency = (mpr::wtime() - started) * 1e6 / (2.0 * iterations as f64);
        if rank == 0 {
            report::row(format, size, latency, index == 0);
        }
    }
    if rank == 0 {
        report::footer(format);
    }
    Ok(())
}

/// OSU bw (rank 0 streams to rank 1) or bibw (both stream at once): a
/// window of non-blocking sends, then a short acknowledgement.
pub(crate) fn bandwidth(world: &Comm, options: &Options, both: bool) -> Result<(), Error> {
    if !require_pair(world)? {
        return Ok(());
    }
    let format = options.format();
    let rank = world.rank();
    let peer = 1 - rank;
    let window = options.window.max(1);
    if rank == 0 {
        report::header(format, if both { "bibw" } else { "bw" }, Metric::Bandwidth);
    }
    for (index, size) in options.sizes(MAX_P2P, false).into_iter().enumerate() {
        let (warmup, iterations) = options.iterations(size, (10, 100), (2, 20));
        let send = vec![b'a'; size];
        let batch = options.recv_batch(size);
        let mut recv = vec![0u8; size * batch];
        let mut ack = [0u8; 4];
        let mut started = 0.0;
        for i in 0..warmup + iterations {
            if i == warmup {
                started = mpr::wtime();
            }
            let sending = rank == 0 || both;
            let receiving = rank == 1 || both;
            if batch == window {
                // OSU order: the whole window of receives, then of sends.
                world.scope(|scope| {
                    let mut requests = Vec::with_capacity(2 * window);
                    if receiving {
                        for chunk in recv.chunks_mut(size.max(1)).take(window) {
                            requests.push(scope.irecv(chunk, peer, 100)?);
                        }
                    }
                    if sending {
                        for _ in 0..window {
                            requests.push(scope.isend(&send, peer, 100)?);
                        }
                    }
                    mpr::wait_all(requests).map(drop)
                })?;
            } else {
                world.scope(|scope| {
                    let mut sends = Vec::with_capacity(window);
                    if sending {
                        for _ in 0..window {
                            sends.push(scope.isend(&send, peer, 100)?);
                        }
                    }
                    if receiving {
                        receive_in_batches(world, &mut recv, size, window, peer)?;
                    }
                    mpr::wait_all(sends).map(drop)
                })?;
            }
            if rank == 0 {
                world.recv(&mut ack, 1, 101)?;
            } else {
                world.send(&ack, 0, 101)?;
            }
        }
        let elapsed = mpr::wtime() - started;
        let bytes = size as f64 * window as f64 * iterations as f64 * if both { 2.0 } else { 1.0 };
        if rank == 0 {
            report::row(format, size, bytes / elapsed / 1e6, index == 0);
        }
    }
    if rank == 0 {
        report::footer(format);
    }
    Ok(())
}

/// Receives `window` messages of `size` bytes from `peer`, posting as many
/// at once as `buffer` holds and reusing it for every batch.
fn receive_in_batches(
    world: &Comm,
    buffer: &mut [u8],
    size: usize,
    window: usize,
    peer: u32,
) -> Result<(), Error> {
    let batch = (buffer.len() / size.max(1)).max(1);
    let mut left = window;
    while left > 0 {
        let posted = batch.min(left);
        world.scope(|scope| {
            let mut requests = Vec::with_capacity(posted);
            for chunk in buffer.chunks_mut(size.max(1)).take(posted) {
                requests.push(scope.irecv(chunk, peer, 100)?);
            }
            mpr::wait_all(requests).map(drop)
        })?;
        left -= posted;
    }
    Ok(())
}

/// OSU mbw_mr: ranks `i` and `i + n/2` form pairs that all stream a window
/// of non-blocking sends at once; reports the aggregate bandwidth (and, in
/// tables, the message rate) over all pairs, timed by the slowest sender.
pub(crate) fn multi_bandwidth(world: &Comm, options: &Options) -> Result<(), Error> {
    let size_of_world = world.size();
    if size_of_world < 2 || size_of_world % 2 != 0 {
        eprintln!("mpr-bench: mbw_mr needs an even number of ranks");
        world.abort(2);
    }
    let pairs = size_of_world / 2;
    let rank = world.rank();
    let sender = rank < pairs;
    let peer = if sender { rank + pairs } else { rank - pairs };
    let format = options.format();
    let window = options.window.max(1);
    if rank == 0 {
        report::header(
            format,
            &format!("mbw_mr ({pairs} pairs)"),
            Metric::Bandwidth,
        );
    }
    for (index, size) in options.sizes(MAX_P2P, false).into_iter().enumerate() {
        let (warmup, iterations) = options.iterations(size, (10, 100), (2, 20));
        let send = vec![b'a'; size];
        let mut recv = vec![0u8; size * options.recv_batch(size)];
        let mut ack = [0u8; 4];
        world.barrier()?;
        let mut started = 0.0;
        for i in 0..warmup + iterations {
            if i == warmup {
                started = mpr::wtime();
            }
            if sender {
                world.scope(|scope| {
                    let mut requests = Vec::with_capacity(window);
                    for _ in 0..window {
                        requests.push(scope.isend(&send, peer, 100)?);
                    }
                    mpr::wait_all(requests).map(drop)
                })?;
            } else {
                receive_in_batches(world, &mut recv, size, window, peer)?;
            }
            if sender {
                world.recv(&mut ack, peer, 101)?;
            } else {
                world.send(&ack, peer, 101)?;
            }
        }
        let elapsed = [mpr::wtime() - started];
        let mut slowest = [0.0];
        world.reduce(&elapsed, &mut slowest, mpr::op::Max, 0)?;
        if rank == 0 {
            let messages = f64::from(pairs) * window as f64 * iterations as f64;
            let bandwidth = messages * size as f64 / slowest[0] / 1e6;
            if format == crate::options::Format::Table {
                println!(
                    "{size:<12}{bandwidth:>18.2}{:>18.0} msg/s",
                    messages / slowest[0]
                );
            } else {
                report::row(format, size, bandwidth, index == 0);
            }
        }
    }
    if rank == 0 {
        report::footer(format);
    }
    Ok(())
}
