//! Rank 1 kills itself with SIGKILL while rank 0 waits to receive from it
//! (or, with the argument `barrier`, waits in a barrier, which on shared
//! memory runs on the collective boards; with `allreduce`, `bcast`,
//! `alltoall`, `allgather` or `gather`, in a 1 MiB one (`scatter`: 128 KiB), which on shared memory copies
//! straight between the processes, and whose ranks wait for their peers'
//! publications or until their peers have copied their buffers); rank 0
//! prints how long it took until the wait failed, and the error.
//!
//! Used by the transport tests, with and without a launcher that reports
//! failed ranks: over shared memory there is no end-of-file, so the
//! runtime must notice the death itself (a pidfd in its poller).

use std::time::Instant;

fn main() {
    let universe = match mpr::init() {
        Ok(universe) => universe,
        Err(error) => {
            eprintln!("init failed: {error}");
            std::process::exit(2);
        }
    };
    universe.set_error_mode(mpr::ErrorMode::Return);
    let world = universe.world();
    if let Err(error) = world.barrier() {
        eprintln!("barrier failed: {error}");
        std::process::exit(3);
    }
    match world.rank() {
        1 => {
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
            // SIGKILL is asynchronous only in theory; never go on.
            loop {
                std::thread::park();
            }
        }
        0 => {
            let started = Instant::now();
            let mut large = vec![1u64; 128 << 10];
            let result = match std::env::args().nth(1).as_deref() {
                Some("barrier") => world.barrier(),
                Some("allreduce") => world.allreduce_in_place(&mut large, mpr::op::Sum),
                Some("bcast") => world.bcast(&mut large, 0),
                Some("alltoall") => {
                    let send = large.clone();
                    world.alltoall(&send, &mut large)
                }
                Some("scatter") => {
                    // 128 KiB from the root: within the direct range.
                    let send = vec![1u64; 16 << 10];
                    world.scatter(&send, &mut large[..8 << 10], 0)
                }
                Some("allgather") => {
                    let send = vec![1u64; large.len() / 2];
                    world.allgather(&send, &mut large)
                }
                Some("gather") => {
                    let send = vec![1u64; large.len() / 2];
                    world.gather(&send, &mut large, 0)
                }
                _ => {
                    let mut buf = [0u8; 8];
                    world.recv(&mut buf, 1, 0).map(|_| ())
                }
            };
            println!(
                "rank 0: wait for rank 1 ended after {} ms: {result:?}",
                started.elapsed().as_millis()
            );
        }
        _ => {}
    }
}
