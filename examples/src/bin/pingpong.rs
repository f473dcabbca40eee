//! `pingpong`: ranks 0 and 1 bounce messages of growing size, from 1 byte
//! to 64 MiB, and check every byte of every reply.
//!
//! Pattern taught: the eager protocol for small messages and the
//! rendezvous protocol (straight into the posted buffer) for large ones,
//! seen from the same two calls. Other ranks, if any, idle.
//!
//! Run: `mprun -n 2 target/release/pingpong [max_bytes]`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pingpong: {message}");
            ExitCode::FAILURE
        }
    }
}

fn pattern(len: usize, round: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ round) as u8)
        .collect()
}

fn run() -> Result<(), String> {
    let max: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64 << 20);
    let universe = mpr::init().map_err(|e| e.to_string())?;
    let world = universe.world();
    if world.size() < 2 {
        return Err("needs at least 2 ranks".into());
    }
    let rank = world.rank();
    if rank > 1 {
        return Ok(());
    }
    let peer = 1 - rank;
    let mut len = 1usize;
    let mut round = 0;
    while len <= max {
        let reps = if len <= 65_536 { 20 } else { 2 };
        let expected = pattern(len, round);
        let mut buf = vec![0u8; len];
        let started = mpr::wtime();
        for _ in 0..reps {
            if rank == 0 {
                world.send(&expected, peer, 1).map_err(|e| e.to_string())?;
                let status = world.recv(&mut buf, peer, 1).map_err(|e| e.to_string())?;
                if status.len != len || buf != expected {
                    return Err(format!("{len}-byte reply differs from what was sent"));
                }
            } else {
                let status = world.recv(&mut buf, peer, 1).map_err(|e| e.to_string())?;
                if status.len != len || buf != expected {
                    return Err(format!("{len}-byte message arrived damaged"));
                }
                world.send(&buf, peer, 1).map_err(|e| e.to_string())?;
            }
        }
        if rank == 0 {
            let one_way = (mpr::wtime() - started) / (2.0 * reps as f64);
            println!(
                "{len:>10} bytes  {:>10.2} us  {:>9.1} MB/s  (checked)",
                one_way * 1e6,
                len as f64 / one_way / 1e6
            );
        }
        len *= 4;
        round += 1;
    }
    Ok(())
}
