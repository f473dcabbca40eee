//! `hello`: the smallest mpr program. Every rank initializes the runtime,
//! says who and where it is, meets the others at a barrier (so the data
//! plane is really wired up), and finalizes when the universe is dropped.
//!
//! Checks: the rank is below the size, the launcher's placement is
//! consistent, and the barrier completes.
//!
//! Run it with `mprun -n 4 target/release/hello`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hello: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let universe = mpr::init().map_err(|e| e.to_string())?;
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    let placement = universe.placement();
    if rank >= size || placement.local_rank >= placement.local_size {
        return Err(format!(
            "inconsistent placement: rank {rank} of {size}, local rank {} of {}",
            placement.local_rank, placement.local_size
        ));
    }
    let host = universe
        .hosts()
        .nth(rank as usize)
        .unwrap_or("?")
        .to_owned();
    println!("Hello from rank {rank} of {size} on {host}");
    world.barrier().map_err(|e| e.to_string())?;
    Ok(())
}
