//! `ring`: a token travels around all ranks, several laps, and every rank
//! checks what it receives.
//!
//! Pattern taught: blocking point-to-point in a fixed topology. Rank 0
//! starts each lap; every rank receives from its left neighbour, adds its
//! rank, and sends to its right neighbour. After `laps` laps the token must
//! hold `laps * (0 + 1 + ... + size-1)`.
//!
//! Run: `mprun -n 4 target/release/ring [laps]`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ring: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let laps: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let universe = mpr::init().map_err(|e| e.to_string())?;
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    let right = (rank + 1) % size;
    let left = (rank + size - 1) % size;
    let started = mpr::wtime();
    let mut token = [0u64];
    for lap in 0..laps {
        if rank == 0 {
            world.send(&token, right, 0).map_err(|e| e.to_string())?;
            world.recv(&mut token, left, 0).map_err(|e| e.to_string())?;
            let expected = (lap + 1) * u64::from(size) * u64::from(size - 1) / 2;
            if token[0] != expected {
                return Err(format!(
                    "lap {lap}: token is {} but should be {expected}",
                    token[0]
                ));
            }
        } else {
            world.recv(&mut token, left, 0).map_err(|e| e.to_string())?;
            token[0] += u64::from(rank);
            world.send(&token, right, 0).map_err(|e| e.to_string())?;
        }
    }
    if rank == 0 {
        let elapsed = mpr::wtime() - started;
        println!(
            "ring: {laps} laps over {size} ranks, token {} (correct); {:.2} us per hop",
            token[0],
            elapsed * 1e6 / (laps as f64 * f64::from(size))
        );
    }
    Ok(())
}
