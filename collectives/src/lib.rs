//! Collective algorithms for mpr, as schedules over point-to-point messages.
//!
//! An algorithm is a pure function from (rank, size, root, counts) to a
//! [`Schedule`]: the steps one rank takes, each a set of sends and receives
//! of regions of its buffers followed by local copies and reductions. A
//! schedule knows nothing of transports; tests check whole worlds of them
//! for matching sends and receives and for deadlock freedom without moving
//! a byte, and one generic executor, [`execute`], runs any schedule over any
//! [`Channel`] (the runtime's point-to-point engine, or an in-memory world
//! in tests).
//!
//! The crate does not depend on the runtime: the runtime implements
//! [`Channel`] over its collective context and exposes the collectives as
//! methods of its communicator.
//!
//! # Buffers
//!
//! A schedule names three buffers of one element type `T`:
//! [`Buf::Input`] (the caller's send buffer, read only), [`Buf::Output`]
//! (the caller's receive buffer) and [`Buf::Scratch`] (allocated by the
//! executor, [`Schedule::scratch`] elements). Regions are counted in
//! elements; messages move the regions' bytes.
//!
//! # Matching
//!
//! Every transfer carries a tag. Between two ranks, the k-th send with a tag
//! matches the k-th receive with that tag (MPI's non-overtaking rule), so a
//! schedule world is correct when, for every (sender, receiver, tag), both
//! sides list the same sequence of lengths, and deadlock-free when it
//! completes even if every send waits for its receive (rendezvous).

mod algorithm;
mod build;
mod exec;
pub mod op;
mod schedule;

#[cfg(test)]
mod tests;

pub use algorithm::{
    Algorithm, Collective, REDUCE_PIECE, REDUCE_PIPELINE_FROM, UnknownAlgorithm, reduce_segment,
    select,
};
pub use build::{
    allgather, allreduce, allreduce_from_input, alltoall, alltoallv, barrier, bcast, exscan,
    gather, gatherv, reduce, reduce_scatter, scan, scatter, scatterv,
};
pub use exec::{Channel, Incoming, Outgoing, execute, execute_poisoned, with_scratch};
pub use op::{Loc, Op};
pub use schedule::{Buf, Local, Region, Schedule, Step, Transfer};
