//! The algorithms. Each public function builds the [`Schedule`] of one
//! rank; every rank of the communicator must build its own with the same
//! algorithm and the same shared arguments (root, counts, op commutativity).
//! An algorithm that does not implement the collective falls back to the
//! first one [`Collective::algorithms`](crate::Collective::algorithms) lists.

mod allgather;
mod alltoall;
mod reduce;
mod rooted;
mod tree;

pub use allgather::allgather;
pub use alltoall::{alltoall, alltoallv};
pub use reduce::{allreduce, exscan, reduce, reduce_scatter, scan};
pub use rooted::{bcast, gather, gatherv, scatter, scatterv};

use crate::schedule::{Region, Schedule};

/// Dissemination barrier: in round k, send an empty message to
/// `rank + 2^k` and receive one from `rank - 2^k`; ⌈log₂ p⌉ rounds.
pub fn barrier(rank: u32, size: u32) -> Schedule {
    let mut s = Schedule::new();
    let empty = Region::output(0, 0);
    let (mut distance, mut round) = (1u32, 0);
    while distance < size {
        s.sendrecv(
            (rank + distance) % size,
            empty,
            (rank + size - distance) % size,
            empty,
            round,
        );
        distance <<= 1;
        round += 1;
    }
    s
}

/// `rank` relative to `root` (the root is 0).
fn rel(rank: u32, root: u32, size: u32) -> u32 {
    (rank + size - root) % size
}

/// The rank whose relative rank is `v`.
fn abs(v: u32, root: u32, size: u32) -> u32 {
    (v + root) % size
}

/// Tag of a tree level.
fn level(mask: u32) -> i32 {
    mask.trailing_zeros() as i32
}
