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

use crate::schedule::{Region, Schedule, Transfer};

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

/// One round in which this rank sends `send(peer)` to, and receives
/// `recv(peer)` from, every other rank (tag 0): linear allgather and
/// alltoall.
///
/// Every receive is posted in the call's first round, so the sends are
/// expected (see [`Step::expected`](crate::schedule::Step::expected)) up
/// to 4 ranks; beyond, with every rank sending to every other at once,
/// eager megabytes pile up. Measured over TCP (2026-11-26, alltoall,
/// bound, medians of 7 alternating runs, µs, 128 KiB / 512 KiB / 1 MiB
/// blocks, not expected → expected): 4 ranks 276 → 215, 868 → 796,
/// 2 515 → 2 448; 8 ranks 1 288 → 991, 4 742 → 5 091, 15 181 → 16 237.
fn with_every_other(
    s: &mut Schedule,
    rank: u32,
    size: u32,
    send: impl Fn(u32) -> Region,
    recv: impl Fn(u32) -> Region,
) {
    if size < 2 {
        return;
    }
    let others = || (1..size).map(|step| (rank + step) % size);
    let transfer = |peer, region| Transfer {
        peer,
        tag: 0,
        region,
    };
    s.exchange(
        others().map(|peer| transfer(peer, send(peer))).collect(),
        others().map(|peer| transfer(peer, recv(peer))).collect(),
    );
    if size <= 4 {
        s.expected();
    }
}
