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
    // 16-byte elements: pieces of 32 KiB are 2048 of them, and vectors of
    // 128 KiB (8192) and more go in pieces; 40 000 (640 KB) go whole at 2
    // ranks and in pieces at more.
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
