//! `pi`: computes π as the integral of 4/(1+x²) over [0, 1] with the
//! midpoint rule, each rank integrating its own slice of the steps, and
//! checks the result against [`std::f64::consts::PI`].
//!
//! Pattern taught: *data parallelism with a reduction*. Every rank knows
//! the whole problem (the step count) and computes which part is its own
//! from its rank (a block of consecutive steps, so any rank count works);
//! no data moves until the end, when the partial sums are combined:
//! - [`Comm::reduce`](mpr::Comm::reduce) with [`op::Sum`] leaves the
//!   total on rank 0 only (`MPI_Reduce`);
//! - [`Comm::allreduce`](mpr::Comm::allreduce) leaves it on every rank
//!   (`MPI_Allreduce`), which then all check it; two more allreduces,
//!   with [`op::Min`] and [`op::Max`], check that every rank got the very
//!   same bits.
//!
//! The tolerance is the midpoint rule's error bound plus a bound on
//! rounding: with `n` steps of width `h = 1/n`, the truncation error is
//! at most `h²/24 · max|f''| = h²/3` (`|f''| ≤ 8` on [0, 1]), and summing
//! `n` terms of at most 4 loses at most `n · ε · π` after scaling by `h`.
//! The error actually seen is printed beside it (it is usually far
//! smaller: errors of opposite signs cancel).
//!
//! Run: `mprun -n 4 target/release/pi [steps]` (default 10 000 000).

use std::f64::consts::PI;
use std::process::ExitCode;

use mpr::op;
use mpr_examples::{Phases, arg, block};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pi: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Midpoint-rule sum of `4/(1+x²)` over steps `steps` of width `h`
/// (not yet multiplied by `h`).
fn partial_sum(steps: std::ops::Range<usize>, h: f64) -> f64 {
    steps
        .map(|i| {
            let x = (i as f64 + 0.5) * h;
            4.0 / (1.0 + x * x)
        })
        .sum()
}

fn run() -> Result<(), String> {
    let steps: usize = arg(1, "steps", 10_000_000)?;
    if steps == 0 {
        return Err("steps must be at least 1".into());
    }
    let universe = mpr::init().map_err(|e| e.to_string())?;
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    let mut phases = Phases::new();

    // Each rank integrates its own block of steps.
    let h = 1.0 / steps as f64;
    let mine = partial_sum(block(steps, size, rank), h) * h;
    phases.lap("integrate");

    // Variant 1: the total on rank 0.
    let mut total = [0.0f64];
    world
        .reduce(&[mine], &mut total, op::Sum, 0)
        .map_err(|e| e.to_string())?;
    phases.lap("reduce");

    // Variant 2: the total on every rank.
    let mut everywhere = [0.0f64];
    world
        .allreduce(&[mine], &mut everywhere, op::Sum)
        .map_err(|e| e.to_string())?;
    phases.lap("allreduce");

    let n = steps as f64;
    let tolerance = h * h / 3.0 + n * f64::EPSILON * PI;
    let error = (everywhere[0] - PI).abs();
    if error > tolerance {
        return Err(format!(
            "rank {rank}: allreduce gave {:.17} (error {error:.3e} > tolerance {tolerance:.3e})",
            everywhere[0]
        ));
    }
    // Every rank must hold the same value, bit for bit.
    let mut lowest = [0.0f64];
    let mut highest = [0.0f64];
    world
        .allreduce(&everywhere, &mut lowest, op::Min)
        .map_err(|e| e.to_string())?;
    world
        .allreduce(&everywhere, &mut highest, op::Max)
        .map_err(|e| e.to_string())?;
    if lowest[0].to_bits() != highest[0].to_bits() {
        return Err(format!(
            "ranks disagree on the allreduce result: {:.17} to {:.17}",
            lowest[0], highest[0]
        ));
    }
    phases.lap("check");

    if rank == 0 {
        let error = (total[0] - PI).abs();
        if error > tolerance {
            return Err(format!(
                "reduce gave {:.17} (error {error:.3e} > tolerance {tolerance:.3e})",
                total[0]
            ));
        }
        // Reduce and allreduce may add the partial sums in different orders.
        let apart = (total[0] - everywhere[0]).abs();
        if apart > f64::from(size) * f64::EPSILON * PI {
            return Err(format!(
                "reduce ({:.17}) and allreduce ({:.17}) differ by {apart:.3e}",
                total[0], everywhere[0]
            ));
        }
        println!(
            "pi: {steps} steps over {size} ranks: {:.15}, error {error:.3e} \
             within tolerance {tolerance:.3e}, allreduce the same on every rank (correct)",
            total[0]
        );
    }
    phases.report(world, "pi").map_err(|e| e.to_string())?;
    Ok(())
}
