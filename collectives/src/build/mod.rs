//! The algorithms. Each public function builds the [`Schedule`] of one
//! rank; every rank of the communicator must build its own with the same
//! algorithm and the same shared arguments (root, counts, op commutativity).
//! An algorithm that does not implement the collective falls back to the
//! first one [`Collective::algorithms`](crate::Collective::algorithms) lists.

mod allgather;
mod alltoall;
mod barrier;
mod reduce;
mod rooted;
mod tree;

pub use allgather::allgather;
pub use alltoall::{alltoall, alltoallv};
pub use barrier::barrier;
pub use reduce::{allreduce, allreduce_from_input, exscan, reduce, reduce_scatter, scan};
pub use rooted::{bcast, gather, gatherv, scatter, scatterv};

#[cfg(doc)]
use crate::schedule::Schedule;

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
