//! `jacobi`: solves the steady 2-D heat equation (Laplace's equation) on
//! an N×N grid by Jacobi iteration, distributed over the ranks, and checks
//! the result against a serial solve of the same problem in the same
//! program.
//!
//! Pattern taught: *domain decomposition with halo exchange*. The grid is
//! cut into blocks of whole rows, one block per rank (block lengths differ
//! by at most one, so any rank count up to N works). Updating a point
//! needs its four neighbours, so a rank's first and last rows need a row
//! owned by the rank above or below: each rank keeps one extra *halo* row
//! on each side and, every iteration, swaps edge rows with its neighbours.
//! - The exchange is non-blocking ([`Comm::scope`] with
//!   [`Scope::irecv`] / [`Scope::isend`] on borrowed rows of the grid), so
//!   a rank updates the rows that need no halo while the messages are in
//!   flight, then waits and updates its two edge rows.
//! - The top and bottom ranks have no neighbour there: they exchange with
//!   [`PROC_NULL`], which completes at once and leaves the fixed boundary
//!   row in the halo, so no rank is a special case.
//! - Convergence is global: every iteration ends with an allreduce
//!   ([`op::Max`]) of the largest change of any point, and all ranks stop
//!   at the same iteration.
//! - At the end, rank 0 gathers the blocks with [`Comm::gatherv`] (blocks
//!   of unequal length) and compares them with its own serial solve. Each
//!   point sees the same arithmetic in the same order in both, so the
//!   difference must be 0 (checked against 1e-12).
//!
//! Boundary: the top edge is held at 1, the left edge falls linearly from
//! 1 to 0, the right and bottom edges are held at 0.
//!
//! Run: `mprun -n 4 target/release/jacobi [N] [max_iterations] [tolerance]`
//! (defaults 64, 2000, 1e-4).
//!
//! [`Comm::scope`]: mpr::Comm::scope
//! [`Comm::gatherv`]: mpr::Comm::gatherv
//! [`Scope::irecv`]: mpr::Scope::irecv
//! [`Scope::isend`]: mpr::Scope::isend
//! [`PROC_NULL`]: mpr::PROC_NULL
//! [`op::Max`]: mpr::op::Max

use std::process::ExitCode;

use mpr::{Comm, PROC_NULL, Rank, op};
use mpr_examples::{Phases, arg, block};

/// Tag of rows sent to the rank above.
const UPWARD: i32 = 1;
/// Tag of rows sent to the rank below.
const DOWNWARD: i32 = 2;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("jacobi: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Fixed value of boundary point (`row`, `col`) of the whole grid, whose
/// rows and columns `0` and `n + 1` are the boundary.
fn boundary(row: usize, col: usize, n: usize) -> f64 {
    if row == 0 {
        1.0
    } else if col == 0 {
        1.0 - row as f64 / (n + 1) as f64
    } else {
        0.0
    }
}

/// Rows `first..first + rows` of the interior (0-based) with a halo row
/// on each side, `n + 2` points wide: boundary points hold their fixed
/// values, interior points (and halos inside the grid) start at 0.
fn initial_block(n: usize, first: usize, rows: usize) -> Vec<f64> {
    let width = n + 2;
    let mut grid = vec![0.0; (rows + 2) * width];
    for (local, line) in grid.chunks_mut(width).enumerate() {
        let row = first + local; // row of the whole grid, boundary included
        for (col, point) in line.iter_mut().enumerate() {
            if row == 0 || row == n + 1 || col == 0 || col == n + 1 {
                *point = boundary(row, col, n);
            }
        }
    }
    grid
}

/// One Jacobi update of a row: every interior point of `out` becomes the
/// mean of its four neighbours in the old grid. Returns the largest
/// change.
fn update_row(above: &[f64], row: &[f64], below: &[f64], out: &mut [f64]) -> f64 {
    let mut change = 0.0f64;
    for j in 1..row.len() - 1 {
        let new = 0.25 * (above[j] + below[j] + row[j - 1] + row[j + 1]);
        change = change.max((new - row[j]).abs());
        out[j] = new;
    }
    change
}

/// Updates interior rows `range` (indices into `interior`, which holds
/// rows without halos) into `next` (with halos). Every row in `range` must
/// have both neighbours in `interior`.
fn update_inner(
    interior: &[f64],
    next: &mut [f64],
    width: usize,
    range: std::ops::Range<usize>,
) -> f64 {
    let mut change = 0.0f64;
    for i in range {
        let out = &mut next[(i + 1) * width..(i + 2) * width];
        let row = |r: usize| &interior[r * width..(r + 1) * width];
        change = change.max(update_row(row(i - 1), row(i), row(i + 1), out));
    }
    change
}

/// Updates interior row `i` of `grid` (with halos, so grid row `i + 1`)
/// into `next`.
fn update_with_halo(grid: &[f64], next: &mut [f64], width: usize, i: usize) -> f64 {
    let row = |r: usize| &grid[r * width..(r + 1) * width];
    update_row(
        row(i),
        row(i + 1),
        row(i + 2),
        &mut next[(i + 1) * width..(i + 2) * width],
    )
}

/// The serial solve: the whole interior as one block, same updates, same
/// stopping rule. Returns the grid (with boundary rows) and the
/// iteration count.
fn serial(n: usize, max_iterations: usize, tolerance: f64) -> (Vec<f64>, usize) {
    let width = n + 2;
    let mut grid = initial_block(n, 0, n);
    let mut next = grid.clone();
    let mut iterations = 0;
    let mut change = f64::INFINITY;
    while iterations < max_iterations && change >= tolerance {
        change = 0.0;
        for i in 0..n {
            change = change.max(update_with_halo(&grid, &mut next, width, i));
        }
        std::mem::swap(&mut grid, &mut next);
        iterations += 1;
    }
    (grid, iterations)
}

/// Parallel sweeps until convergence; returns this rank's block, the
/// iteration count and the largest change of the last iteration.
fn parallel(
    world: &Comm,
    n: usize,
    max_iterations: usize,
    tolerance: f64,
    phases: &mut Phases,
) -> Result<(Vec<f64>, usize, f64), mpr::Error> {
    let (rank, size) = (world.rank(), world.size());
    let mine = block(n, size, rank);
    let rows = mine.len();
    let width = n + 2;
    let up = if rank == 0 { PROC_NULL } else { Rank(rank - 1) };
    let down = if rank + 1 == size {
        PROC_NULL
    } else {
        Rank(rank + 1)
    };
    let mut grid = initial_block(n, mine.start, rows);
    let mut next = grid.clone();
    phases.lap("setup");

    let mut iterations = 0;
    let mut change = f64::INFINITY;
    while iterations < max_iterations && change >= tolerance {
        let started = mpr::wtime();
        let mut waited = 0.0;
        // Halo rows receive; edge rows are sent; the rows in between are
        // updated while the messages travel.
        let (top_halo, rest) = grid.split_at_mut(width);
        let (interior, bottom_halo) = rest.split_at_mut(rows * width);
        let (first, last) = (&interior[..width], &interior[(rows - 1) * width..]);
        let inner_change = world.scope(|s| {
            let requests = [
                s.irecv(top_halo, up, DOWNWARD)?,
                s.irecv(bottom_halo, down, UPWARD)?,
                s.isend(first, up, UPWARD)?,
                s.isend(last, down, DOWNWARD)?,
            ];
            let inner = update_inner(interior, &mut next, width, 1..rows.saturating_sub(1));
            let wait_started = mpr::wtime();
            mpr::wait_all(requests)?;
            waited = mpr::wtime() - wait_started;
            Ok::<f64, mpr::Error>(inner)
        })?;
        // The halos are in: update the edge rows.
        let mut local = inner_change.max(update_with_halo(&grid, &mut next, width, 0));
        if rows > 1 {
            local = local.max(update_with_halo(&grid, &mut next, width, rows - 1));
        }
        let reduce_started = mpr::wtime();
        phases.add("compute", reduce_started - started - waited);
        phases.add("halo wait", waited);
        let mut global = [0.0];
        world.allreduce(&[local], &mut global, op::Max)?;
        change = global[0];
        phases.add("allreduce", mpr::wtime() - reduce_started);
        std::mem::swap(&mut grid, &mut next);
        iterations += 1;
    }
    phases.skip();
    Ok((grid, iterations, change))
}

fn run() -> Result<(), String> {
    let n: usize = arg(1, "N", 64)?;
    let max_iterations: usize = arg(2, "max_iterations", 2000)?;
    let tolerance: f64 = arg(3, "tolerance", 1e-4)?;
    let universe = mpr::init().map_err(|e| e.to_string())?;
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    if n < size as usize {
        return Err(format!("N = {n} gives some of the {size} ranks no row"));
    }
    let width = n + 2;
    let mut phases = Phases::new();
    let (grid, iterations, change) =
        parallel(world, n, max_iterations, tolerance, &mut phases).map_err(|e| e.to_string())?;

    // Rank 0 collects every block's interior rows, in rank order.
    let counts: Vec<usize> = (0..size).map(|r| block(n, size, r).len() * width).collect();
    let rows = block(n, size, rank).len();
    let mut whole = if rank == 0 {
        vec![0.0; n * width]
    } else {
        Vec::new()
    };
    world
        .gatherv(&grid[width..(rows + 1) * width], &mut whole, &counts, 0)
        .map_err(|e| e.to_string())?;
    phases.lap("gatherv");

    let mut verdict = Ok(());
    if rank == 0 {
        let (reference, serial_iterations) = serial(n, max_iterations, tolerance);
        phases.lap("serial solve");
        let difference = whole
            .iter()
            .zip(&reference[width..(n + 1) * width])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        let centre = reference[(n / 2 + 1) * width + n / 2 + 1];
        if serial_iterations != iterations {
            verdict = Err(format!(
                "parallel solve stopped after {iterations} iterations, serial after {serial_iterations}"
            ));
        } else if difference > 1e-12 {
            verdict = Err(format!(
                "parallel and serial grids differ by up to {difference:.3e}"
            ));
        } else {
            let how = if iterations < max_iterations {
                "converged"
            } else {
                "stopped"
            };
            println!(
                "jacobi: {n}x{n} grid over {size} ranks, {how} after {iterations} iterations \
                 (last change {change:.1e}), centre {centre:.6e}; \
                 max |parallel - serial| = {difference:.1e} (correct)"
            );
        }
    } else {
        phases.lap("serial solve");
    }
    phases.lap("check");
    phases.report(world, "jacobi").map_err(|e| e.to_string())?;
    verdict
}
