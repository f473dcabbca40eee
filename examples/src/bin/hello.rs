//! `hello`: the smallest mpr program. Every rank initializes the runtime,
//! says who and where it is, and finalizes when the universe is dropped.
//!
//! Run it with `mprun -n 4 target/release/hello`.

fn main() -> Result<(), mpr::InitError> {
    let universe = mpr::init()?;
    let world = universe.world();
    let host = universe
        .hosts()
        .nth(world.rank() as usize)
        .unwrap_or("?")
        .to_owned();
    println!(
        "Hello from rank {} of {} on {host}",
        world.rank(),
        world.size()
    );
    Ok(())
}
