//! `matmul`: distributed dense matrix product C = A × B of two N×N
//! matrices, with threads inside each rank, checked against a serial
//! product.
//!
//! Pattern taught: *hybrid parallelism* (processes between ranks, threads
//! inside them) with the classic collectives of a row decomposition:
//! 1. rank 0 makes A and B (deterministic pseudo-random numbers, so every
//!    run multiplies the same matrices);
//! 2. [`Comm::scatter`] hands each rank a block of N/p consecutive rows of
//!    A (`MPI_Scatter`: equal blocks, so p must divide N);
//! 3. [`Comm::bcast`] gives every rank all of B (`MPI_Bcast`);
//! 4. each rank computes its rows of C = (its rows of A) × B, spreading the
//!    rows over its cores with rayon (`par_chunks_mut`, one row of C per
//!    task: rows are independent, so no locking);
//! 5. [`Comm::gather`] collects the blocks of C on rank 0 in rank order,
//!    which compares them with a serial product.
//!
//! Both products add the terms of each element in the same order (the
//! cache-friendly i-k-j loop), so they agree to the last bit; the check
//! allows N·ε·max|A|·max|B| anyway, the bound for a different order.
//!
//! With several ranks on one host, give each fewer threads
//! (`-x RAYON_NUM_THREADS=1` for one rank per core).
//!
//! Run: `mprun -n 4 target/release/matmul [N]` (default 240, which 1 to
//! 6, 8, 10 and 12 ranks divide).
//!
//! [`Comm::scatter`]: mpr::Comm::scatter
//! [`Comm::bcast`]: mpr::Comm::bcast
//! [`Comm::gather`]: mpr::Comm::gather

use std::process::ExitCode;

use mpr_examples::{Phases, SplitMix64, arg};
use rayon::prelude::*;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("matmul: {message}");
            ExitCode::FAILURE
        }
    }
}

/// An `rows × cols` matrix, row-major, of pseudo-random numbers in
/// [-1, 1) drawn from `seed`.
fn random_matrix(rows: usize, cols: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    (0..rows * cols)
        .map(|_| 2.0 * rng.next_f64() - 1.0)
        .collect()
}

/// One row of a product: `c = a × b` where `a` is a row of `n` entries
/// and `b` is `n × n` (i-k-j order: streams through rows of `b`).
fn row_times(a: &[f64], b: &[f64], c: &mut [f64]) {
    let n = c.len();
    c.fill(0.0);
    for (k, &aik) in a.iter().enumerate() {
        for (cij, &bkj) in c.iter_mut().zip(&b[k * n..(k + 1) * n]) {
            *cij += aik * bkj;
        }
    }
}

/// `c = a × b` for a block of rows `a`, one rayon task per row.
fn multiply_parallel(a: &[f64], b: &[f64], c: &mut [f64], n: usize) {
    c.par_chunks_mut(n)
        .zip(a.par_chunks(n))
        .for_each(|(c_row, a_row)| row_times(a_row, b, c_row));
}

/// `c = a × b`, one row after the other.
fn multiply_serial(a: &[f64], b: &[f64], c: &mut [f64], n: usize) {
    for (c_row, a_row) in c.chunks_mut(n).zip(a.chunks(n)) {
        row_times(a_row, b, c_row);
    }
}

fn run() -> Result<(), String> {
    let n: usize = arg(1, "N", 240)?;
    let universe = mpr::init().map_err(|e| e.to_string())?;
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    if n == 0 || n % size as usize != 0 {
        return Err(format!(
            "N = {n} must be a positive multiple of the rank count {size}"
        ));
    }
    let rows = n / size as usize;
    let mut phases = Phases::new();

    // Only the root holds the whole of A (and C); the others pass empty
    // buffers where the root's data would be.
    let (a, mut b) = if rank == 0 {
        (random_matrix(n, n, 1), random_matrix(n, n, 2))
    } else {
        (Vec::new(), vec![0.0; n * n])
    };
    phases.lap("generate");

    let mut my_a = vec![0.0; rows * n];
    world.scatter(&a, &mut my_a, 0).map_err(|e| e.to_string())?;
    phases.lap("scatter A");
    world.bcast(&mut b, 0).map_err(|e| e.to_string())?;
    phases.lap("bcast B");

    let multiply_started = mpr::wtime();
    let mut my_c = vec![0.0; rows * n];
    multiply_parallel(&my_a, &b, &mut my_c, n);
    let multiply_seconds = mpr::wtime() - multiply_started;
    phases.lap("multiply");

    let mut c = if rank == 0 {
        vec![0.0; n * n]
    } else {
        Vec::new()
    };
    world.gather(&my_c, &mut c, 0).map_err(|e| e.to_string())?;
    phases.lap("gather C");

    let mut verdict = Ok(());
    if rank == 0 {
        let mut reference = vec![0.0; n * n];
        multiply_serial(&a, &b, &mut reference, n);
        phases.lap("serial product");
        let largest = |m: &[f64]| m.iter().fold(0.0f64, |x, v| x.max(v.abs()));
        let tolerance = n as f64 * f64::EPSILON * largest(&a) * largest(&b);
        let difference = c
            .iter()
            .zip(&reference)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f64, f64::max);
        if difference > tolerance {
            verdict = Err(format!(
                "distributed and serial products differ by {difference:.3e} (> {tolerance:.3e})"
            ));
        } else {
            let trace: f64 = (0..n).map(|i| c[i * n + i]).sum();
            println!(
                "matmul: {n}x{n} over {size} ranks x {} threads, trace {trace:.6}; \
                 max |distributed - serial| = {difference:.1e} (correct); \
                 rank 0 multiplied at {:.2} GFLOP/s",
                rayon::current_num_threads(),
                2.0 * (rows * n * n) as f64 / multiply_seconds / 1e9
            );
        }
    } else {
        phases.lap("serial product");
    }
    phases.report(world, "matmul").map_err(|e| e.to_string())?;
    verdict
}
