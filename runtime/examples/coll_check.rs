//! Collective checks that need a real job (tests run them under `mprun`):
//! schedules that only run between ranks that do not share memory, such
//! as the reduce that streams large vectors in pieces over TCP.
//!
//! `coll_check reduce`: reduces of vectors around and across the sizes
//! where the tree works in pieces, at every root, with a non-commutative
//! operation (which must combine in rank order) and a commutative one,
//! each checked against a serial fold; then a root that passes a result
//! buffer of the wrong length, which must fail there alone and leave
//! nothing behind that disturbs the next reduce.
//!
//! `coll_check board [straddle]`: allreduce (with a separate result and in
//! place), reduce, bcast, scatter, gather, allgather and alltoall at sizes around `MPR_SHM_BOARD_MAX` (on the
//! shared-memory boards below it; above it copied straight between the
//! processes, or by messages with `MPR_SHM_DIRECT_MIN=0`) and of several
//! hundred KiB, with odd counts, at every root, with barriers between, each
//! checked against a serial fold; then ranks whose arguments are wrong or
//! disagree: each call fails on the ranks that can tell, nobody hangs, and
//! the next call is right. `straddle` adds disagreements across the board
//! limit (one rank by messages or directly, the others on the boards),
//! which only the boards can report without hanging.
//!
//! `coll_check comms [straddle]`: the `board` checks on communicators made
//! from the world, which have boards of their own: on the ranks that share
//! this host (`split_shared`, in reverse order), on a duplicate, then on
//! both halves of a split at once (different sizes, so different calls
//! run side by side), then on a duplicate made after many communicators
//! were made and dropped (their boards reused) while more are alive than
//! there are boards (the extra ones by messages), interleaved with the
//! world's own calls.

use std::process::ExitCode;

use mpr::{Comm, op};

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let universe = match mpr::init() {
        Ok(universe) => universe,
        Err(error) => {
            eprintln!("init: {error}");
            return ExitCode::FAILURE;
        }
    };
    universe.set_error_mode(mpr::ErrorMode::Return);
    let world = universe.world();
    let result = match mode.as_str() {
        "reduce" => reduce(world),
        "board" => board(
            world,
            std::env::args().nth(2).as_deref() == Some("straddle"),
        ),
        "comms" => comms(
            world,
            std::env::args().nth(2).as_deref() == Some("straddle"),
        ),
        other => Err(format!("unknown mode {other:?}")),
    };
    match result {
        Ok(()) => {
            println!("rank {} ok", world.rank());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("rank {}: {message}", world.rank());
            ExitCode::FAILURE
        }
    }
}

/// Non-commutative, associative: affine maps `x -> a·x + b`, the left one
/// applied first.
fn affine(f: [u64; 2], g: [u64; 2]) -> [u64; 2] {
    [
        g[0].wrapping_mul(f[0]),
        g[0].wrapping_mul(f[1]).wrapping_add(g[1]),
    ]
}

fn sum_pair(a: [u64; 2], b: [u64; 2]) -> [u64; 2] {
    [a[0].wrapping_add(b[0]), a[1].wrapping_add(b[1])]
}

fn operand(rank: u32, i: usize) -> [u64; 2] {
    let rank = u64::from(rank);
    [
        (rank * 3 + i as u64) % 5 + 2,
        (rank + 1) * 1000 + i as u64 * 7 + 3,
    ]
}

/// `f` over the operands of every rank, in rank order, per element.
fn fold(f: fn([u64; 2], [u64; 2]) -> [u64; 2], ranks: u32, count: usize) -> Vec<[u64; 2]> {
    (0..count)
        .map(|i| {
            (0..ranks)
                .map(|r| operand(r, i))
                .reduce(f)
                .unwrap_or([0, 0])
        })
        .collect()
}

fn reduce(world: &Comm) -> Result<(), String> {
    let (rank, size) = (world.rank(), world.size());
    // 16-byte elements: over TCP, vectors of 128 KiB (8192) and more go in
    // pieces of 48 KiB (3072 of them), the last one short.
    for count in [8191usize, 8192, 2 * 8192 + 1, 40_000] {
        let mine: Vec<[u64; 2]> = (0..count).map(|i| operand(rank, i)).collect();
        for root in 0..size {
            let mut out = vec![[0, 0]; if rank == root { count } else { 0 }];
            world
                .reduce(&mine, &mut out, affine, root)
                .map_err(|e| e.to_string())?;
            if rank == root && out != fold(affine, size, count) {
                return Err(format!("affine reduce of {count} to root {root} is wrong"));
            }
            world
                .reduce(&mine, &mut out, op::commutative(sum_pair), root)
                .map_err(|e| e.to_string())?;
            if rank == root && out != fold(sum_pair, size, count) {
                return Err(format!("sum reduce of {count} to root {root} is wrong"));
            }
        }
    }
    // The root's result buffer is one element short: the root fails with
    // an error, the others complete (with a commutative op the tree is
    // rooted there, so no rank waits for the root's data), and the next
    // reduce is unaffected.
    let count = 40_000;
    let mine: Vec<[u64; 2]> = (0..count).map(|i| operand(rank, i)).collect();
    let root = size - 1;
    let mut short = vec![[0, 0]; if rank == root { count - 1 } else { 0 }];
    let result = world.reduce(&mine, &mut short, op::commutative(sum_pair), root);
    match (rank == root, result) {
        (true, Err(_)) | (false, Ok(())) => {}
        (true, Ok(())) => return Err("a short result buffer was accepted".into()),
        (false, Err(error)) => return Err(format!("a rank with good arguments failed: {error}")),
    }
    let mut out = vec![[0, 0]; if rank == root { count } else { 0 }];
    world
        .reduce(&mine, &mut out, affine, root)
        .map_err(|e| e.to_string())?;
    if rank == root && out != fold(affine, size, count) {
        return Err("the reduce after a rejected one is wrong".into());
    }
    Ok(())
}

/// Largest operand on the boards: `MPR_SHM_BOARD_MAX` in bytes, which the
/// tests set (and `MPR_SHM_BOARD_BCAST_MAX` to the same).
fn board_max() -> usize {
    std::env::var("MPR_SHM_BOARD_MAX")
        .ok()
        .and_then(|max| max.parse().ok())
        .unwrap_or(2048)
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn board(world: &Comm, straddle: bool) -> Result<(), String> {
    if world.size() < 2 {
        return Ok(());
    }
    let (rank, size) = (world.rank(), world.size());
    let element = std::mem::size_of::<[u64; 2]>();
    let board_max = board_max();
    let limit = board_max / element;
    for count in [
        0usize,
        1,
        2,
        63,
        limit - 1,
        limit,
        limit + 1,
        3 * limit,
        40_003,
    ] {
        let mine: Vec<[u64; 2]> = (0..count).map(|i| operand(rank, i)).collect();
        let mut out = vec![[7, 7]; count];
        world
            .allreduce(&mine, &mut out, affine)
            .map_err(|e| e.to_string())?;
        check(out == fold(affine, size, count), || {
            format!("affine allreduce of {count}")
        })?;
        world.barrier().map_err(|e| e.to_string())?;
        let mut inplace = mine.clone();
        world
            .allreduce_in_place(&mut inplace, op::commutative(sum_pair))
            .map_err(|e| e.to_string())?;
        check(inplace == fold(sum_pair, size, count), || {
            format!("in-place sum of {count}")
        })?;
        for root in 0..size {
            let mut out = vec![[7, 7]; if rank == root { count } else { 0 }];
            world
                .reduce(&mine, &mut out, affine, root)
                .map_err(|e| e.to_string())?;
            check(rank != root || out == fold(affine, size, count), || {
                format!("affine reduce of {count} to {root}")
            })?;
        }
        for root in 0..size {
            let bytes = count * element;
            let mut buf: Vec<u8> = if rank == root {
                (0..bytes).map(|i| (i * 31 + root as usize) as u8).collect()
            } else {
                vec![0; bytes]
            };
            world.bcast(&mut buf, root).map_err(|e| e.to_string())?;
            let expected: Vec<u8> = (0..bytes).map(|i| (i * 31 + root as usize) as u8).collect();
            check(buf == expected, || {
                format!("bcast of {bytes} B from {root}")
            })?;
        }
    }
    // All-to-all of blocks whose whole send buffer is around the limit,
    // then twice a buffer of more than 1 MiB: direct exchanges that large
    // copy in reverse order every other call.
    let per_rank = limit / size as usize;
    for block in [
        0usize,
        1,
        3,
        per_rank.saturating_sub(1),
        per_rank,
        per_rank + 1,
        2 * per_rank + 5,
        20_001,
        40_001,
        40_001,
    ] {
        let send: Vec<[u64; 2]> = (0..block * size as usize)
            .map(|i| [u64::from(rank), i as u64])
            .collect();
        let mut recv = vec![[9, 9]; send.len()];
        world
            .alltoall(&send, &mut recv)
            .map_err(|e| e.to_string())?;
        let expected: Vec<[u64; 2]> = (0..size as usize)
            .flat_map(|from| {
                (0..block).map(move |i| [from as u64, (rank as usize * block + i) as u64])
            })
            .collect();
        check(recv == expected, || {
            format!("alltoall of {block}-element blocks")
        })?;
    }
    // Allgather of blocks around the limit, then twice of more than 1 MiB
    // in all (as for all-to-all).
    for block in [
        0usize,
        1,
        3,
        limit - 1,
        limit,
        limit + 1,
        20_001,
        40_001,
        40_001,
    ] {
        let send: Vec<[u64; 2]> = (0..block).map(|i| [u64::from(rank), i as u64]).collect();
        let mut recv = vec![[9, 9]; block * size as usize];
        world
            .allgather(&send, &mut recv)
            .map_err(|e| e.to_string())?;
        let expected: Vec<[u64; 2]> = (0..size as u64)
            .flat_map(|from| (0..block).map(move |i| [from, i as u64]))
            .collect();
        check(recv == expected, || {
            format!("allgather of {block}-element blocks")
        })?;
    }
    // Scatter of blocks whose whole send buffer is around the limit, from
    // every root.
    for block in [
        0usize,
        1,
        5,
        per_rank.saturating_sub(1),
        per_rank,
        per_rank + 1,
        20_001,
    ] {
        for root in 0..size {
            let send: Vec<[u64; 2]> = if rank == root {
                (0..block * size as usize)
                    .map(|i| [u64::from(root), i as u64])
                    .collect()
            } else {
                Vec::new()
            };
            let mut recv = vec![[9, 9]; block];
            world
                .scatter(&send, &mut recv, root)
                .map_err(|e| e.to_string())?;
            let expected: Vec<[u64; 2]> = (0..block)
                .map(|i| [u64::from(root), (rank as usize * block + i) as u64])
                .collect();
            check(recv == expected, || {
                format!("scatter of {block} from {root}")
            })?;
        }
    }
    // Gather of blocks around the limit, to every root.
    for block in [0usize, 1, 5, limit - 1, limit, limit + 1, 30_001] {
        let send: Vec<[u64; 2]> = (0..block).map(|i| [u64::from(rank), i as u64]).collect();
        for root in 0..size {
            let mut recv = vec![
                [9, 9];
                if rank == root {
                    block * size as usize
                } else {
                    0
                }
            ];
            world
                .gather(&send, &mut recv, root)
                .map_err(|e| e.to_string())?;
            if rank == root {
                let expected: Vec<[u64; 2]> = (0..size as u64)
                    .flat_map(|from| (0..block).map(move |i| [from, i as u64]))
                    .collect();
                check(recv == expected, || format!("gather of {block} to {root}"))?;
            }
        }
    }
    let good = |count: usize| -> Result<(), String> {
        let mine: Vec<[u64; 2]> = (0..count).map(|i| operand(rank, i)).collect();
        let mut out = vec![[0, 0]; count];
        world
            .allreduce(&mine, &mut out, affine)
            .map_err(|e| e.to_string())?;
        check(out == fold(affine, size, count), || {
            format!("allreduce of {count} after a failed call")
        })
    };
    // Rank 1's result buffer is short: it fails, and so does every rank
    // that waits for its operand.
    let count = 10;
    let mine: Vec<[u64; 2]> = (0..count).map(|i| operand(rank, i)).collect();
    let mut out = vec![[0, 0]; if rank == 1 { count - 1 } else { count }];
    let result = world.allreduce(&mine, &mut out, affine);
    check(result.is_err(), || {
        "an allreduce with a short buffer on rank 1 succeeded".into()
    })?;
    good(count)?;
    // Gathers to the last rank where another rank's block is longer: the
    // root fails (that rank may: on the boards it can tell, by messages its
    // send completes), the others complete; then where the root's buffer
    // is short: the root fails alone (also above the board limit, where
    // the others must not write into it).
    let root = size - 1;
    let odd = if size > 2 { 1 } else { 0 };
    let cases = [
        (4usize, false),
        (limit + 4, false),
        (4, true),
        (limit + 4, true),
    ];
    for (block, short_root) in cases {
        let mine = if rank == odd && !short_root {
            block + 1
        } else {
            block
        };
        let send = vec![[3u64, 3]; mine];
        let room = block * size as usize - usize::from(short_root);
        let mut recv = vec![[0, 0]; if rank == root { room } else { 0 }];
        let result = world.gather(&send, &mut recv, root);
        let either = rank == odd && !short_root;
        check(either || result.is_err() == (rank == root), || {
            format!("gather of {block} (short root: {short_root}): {result:?}")
        })?;
        good(count)?;
    }
    // Rank 1's all-to-all receive buffer is short: everyone fails.
    let send = vec![[1u64, 1]; 2 * size as usize];
    let mut recv = vec![
        [0, 0];
        if rank == 1 {
            send.len() - 1
        } else {
            send.len()
        }
    ];
    let result = world.alltoall(&send, &mut recv);
    check(result.is_err(), || {
        "an alltoall with a short buffer on rank 1 succeeded".into()
    })?;
    good(count)?;
    // Rank 1's allgather receive buffer is short: everyone fails.
    let send = vec![[1u64, 1]; 3];
    let mut recv = vec![
        [0, 0];
        if rank == 1 {
            3 * size as usize - 1
        } else {
            3 * size as usize
        }
    ];
    let result = world.allgather(&send, &mut recv);
    check(result.is_err(), || {
        "an allgather with a short buffer on rank 1 succeeded".into()
    })?;
    good(count)?;
    // Reduces to the last rank: a root whose result buffer is short fails
    // alone (with a commutative op, whose message tree is rooted there);
    // another rank whose operand is longer makes the root fail (by messages,
    // the ranks between them in the tree fail too), and nobody hangs.
    for count in [3usize, limit + 3] {
        let root = size - 1;
        let sum = op::commutative(sum_pair);
        let mine: Vec<[u64; 2]> = (0..count).map(|i| operand(rank, i)).collect();
        let mut out = vec![[0, 0]; if rank == root { count - 1 } else { 0 }];
        let result = world.reduce(&mine, &mut out, sum, root);
        check(result.is_err() == (rank == root), || {
            format!("a reduce of {count} to a short root: {result:?}")
        })?;
        good(count)?;
        let other = if root == 1 { 0 } else { 1 };
        let longer = if rank == other { count + 1 } else { count };
        let mine: Vec<[u64; 2]> = (0..longer).map(|i| operand(rank, i)).collect();
        let mut out = vec![[0, 0]; if rank == root { count } else { 0 }];
        let result = world.reduce(&mine, &mut out, sum, root);
        check(rank != root || result.is_err(), || {
            format!("a reduce of {count} with a longer operand on rank {other}: {result:?}")
        })?;
        good(count)?;
    }
    // Scatters from rank 0: a root whose send buffer is short fails, and
    // so does everyone; a rank 1 whose block is longer fails alone.
    for block in [3usize, per_rank + 3] {
        let send = vec![
            [4u64, 4];
            if rank == 0 {
                block * size as usize - 1
            } else {
                0
            }
        ];
        let mut recv = vec![[0, 0]; block];
        let result = world.scatter(&send, &mut recv, 0);
        check(result.is_err(), || {
            format!("a scatter of {block} from a short root succeeded")
        })?;
        good(count)?;
        let send = vec![[4u64, 4]; if rank == 0 { block * size as usize } else { 0 }];
        let mut recv = vec![[0, 0]; if rank == 1 { block + 1 } else { block }];
        let result = world.scatter(&send, &mut recv, 0);
        check(result.is_err() == (rank == 1), || {
            format!("a scatter of {block} with a longer block on rank 1: {result:?}")
        })?;
        good(count)?;
    }
    // Rank 1 receives a bcast into a buffer of another length: it fails
    // there, the others complete.
    for bytes in [100usize, 3 * board_max] {
        let mut buf = vec![1u8; if rank == 1 { bytes + 8 } else { bytes }];
        let result = world.bcast(&mut buf, 0);
        check(result.is_err() == (rank == 1), || {
            format!("bcast of {bytes} B with a longer buffer on rank 1: {result:?}")
        })?;
        good(count)?;
    }
    if straddle {
        // Rank 1 passes a count above the board limit, the others below.
        let count = if rank == 1 { 4 * limit } else { limit / 2 };
        let mine: Vec<[u64; 2]> = (0..count).map(|i| operand(rank, i)).collect();
        let mut out = vec![[0, 0]; count];
        let result = world.allreduce(&mine, &mut out, affine);
        check(result.is_err(), || {
            "an allreduce with disagreeing counts succeeded".into()
        })?;
        good(5)?;
        // Rank 1's all-to-all blocks are above the limit, the others' below.
        let block = if rank == 1 { 2 * per_rank + 1 } else { 1 };
        let send = vec![[2u64, 2]; block * size as usize];
        let mut recv = vec![[0, 0]; send.len()];
        let result = world.alltoall(&send, &mut recv);
        check(result.is_err(), || {
            "an alltoall with disagreeing blocks succeeded".into()
        })?;
        good(5)?;
        // Rank 1's reduce operand is above the limit, the others' below:
        // the root fails.
        let root = size - 1;
        let count = if rank == 1 { 4 * limit } else { limit / 2 };
        let mine: Vec<[u64; 2]> = (0..count).map(|i| operand(rank, i)).collect();
        let mut out = vec![[0, 0]; if rank == root { count } else { 0 }];
        let result = world.reduce(&mine, &mut out, affine, root);
        check(rank != root || result.is_err(), || {
            format!("a straddling reduce: {result:?}")
        })?;
        good(5)?;
        // The same to rank 0, whose operand is on the board while rank 1's
        // goes by messages (with two ranks, rank 1 does not wait for the
        // root then): the root fails.
        let mut out = vec![[0, 0]; if rank == 0 { count } else { 0 }];
        let result = world.reduce(&mine, &mut out, affine, 0);
        check(rank != 0 || result.is_err(), || {
            format!("a straddling reduce to rank 0: {result:?}")
        })?;
        good(5)?;
        // Nothing of it is left to match a reduce by messages.
        let count = 4 * limit + 1;
        let mine: Vec<[u64; 2]> = (0..count).map(|i| operand(rank, i)).collect();
        let mut out = vec![[0, 0]; if rank == 0 { count } else { 0 }];
        world
            .reduce(&mine, &mut out, affine, 0)
            .map_err(|e| format!("the reduce after a straddling one: {e}"))?;
        check(rank != 0 || out == fold(affine, size, count), || {
            "the reduce after a straddling one is wrong".into()
        })?;
        // Rank 1's allgather block is above the limit, the others' below.
        let block = if rank == 1 { limit + 1 } else { 1 };
        let send = vec![[2u64, 2]; block];
        let mut recv = vec![[0, 0]; block * size as usize];
        let result = world.allgather(&send, &mut recv);
        check(result.is_err(), || {
            "an allgather with disagreeing blocks succeeded".into()
        })?;
        good(5)?;
        // Gathers to the last rank where one rank's block is on the other
        // side of the limit from the root's: the root fails, the others
        // complete (that rank may fail).
        let root = size - 1;
        let odd = if size > 2 { 1 } else { 0 };
        for (small, large) in [(4usize, limit + 4), (limit + 4, 4)] {
            let block = if rank == odd { large } else { small };
            let send = vec![[5u64, 5]; block];
            let mut recv = vec![
                [0, 0];
                if rank == root {
                    small * size as usize
                } else {
                    0
                }
            ];
            let result = world.gather(&send, &mut recv, root);
            check(rank == odd || result.is_err() == (rank == root), || {
                format!("a straddling gather of {small} and {large}: {result:?}")
            })?;
            good(5)?;
        }
        // The root's scatter goes by messages or directly, rank 1 expects
        // a board one.
        let block = if rank == 1 { 1 } else { 2 * per_rank + 1 };
        let send = vec![[6u64, 6]; if rank == 0 { block * size as usize } else { 0 }];
        let mut recv = vec![[0, 0]; block];
        let result = world.scatter(&send, &mut recv, 0);
        check(result.is_err() == (rank == 1), || {
            format!("a straddling scatter: {result:?}")
        })?;
        good(5)?;
        // The root's bcast goes by messages, rank 1 expects a board one.
        let bytes = if rank == 1 { 100 } else { 3 * board_max };
        let mut buf = vec![1u8; bytes];
        let result = world.bcast(&mut buf, 0);
        check(result.is_err() == (rank == 1), || {
            format!("a straddling bcast: {result:?}")
        })?;
        good(5)?;
    }
    world.barrier().map_err(|e| e.to_string())?;
    Ok(())
}

fn comms(world: &Comm, straddle: bool) -> Result<(), String> {
    let fail = |error: mpr::Error| error.to_string();
    let rank = world.rank();
    // The ranks of this host (all of them, unless some use TCP alone).
    let host = world.split_shared(-(rank as i32)).map_err(fail)?;
    board(&host, straddle)?;
    drop(host);
    let copy = world.dup().map_err(fail)?;
    board(&copy, straddle)?;
    // Halves of 1 and 2, or 2 and 3 ranks, ... each checking on its own.
    let half = world
        .split(Some(u32::from(rank < world.size() / 2)), 0)
        .map_err(fail)?
        .ok_or("no half")?;
    board(&half, straddle)?;
    world.barrier().map_err(fail)?;
    // Made and dropped: more communicators than boards, each used once.
    for round in 0..20u32 {
        let comm = world
            .split(Some(round % 3), -(rank as i32))
            .map_err(fail)?
            .ok_or("no communicator")?;
        let count = (round as usize * 37) % 300;
        let mine: Vec<[u64; 2]> = (0..count).map(|i| operand(comm.rank(), i)).collect();
        let mut out = vec![[0, 0]; count];
        comm.allreduce(&mine, &mut out, affine).map_err(fail)?;
        check(out == fold(affine, comm.size(), count), || {
            format!("allreduce of {count} on communicator {round}")
        })?;
    }
    // More alive at once than there are boards, used in reverse order,
    // each call between calls of the world.
    let alive = (0..12)
        .map(|_| world.dup())
        .collect::<Result<Vec<Comm>, _>>()
        .map_err(fail)?;
    for (index, comm) in alive.iter().enumerate().rev() {
        let count = 5 + index * 101;
        let mine: Vec<[u64; 2]> = (0..count).map(|i| operand(rank, i)).collect();
        let mut out = vec![[0, 0]; count];
        comm.allreduce(&mine, &mut out, affine).map_err(fail)?;
        check(out == fold(affine, world.size(), count), || {
            format!("allreduce of {count} on communicator {index} of many")
        })?;
        let mut word = [rank];
        world.allreduce_in_place(&mut word, op::Sum).map_err(fail)?;
        let size = world.size();
        check(word == [size * (size - 1) / 2], || "the world's sum".into())?;
    }
    drop(alive);
    let again = world.dup().map_err(fail)?;
    board(&again, false)
}
