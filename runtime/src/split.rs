//! New communicators: `dup` and `split`, and the context ids that keep
//! their traffic apart.
//!
//! Context ids come in pairs (point-to-point `2n`, collective `2n + 1`); the
//! world has pair 0. Each rank counts the pairs it has handed out; a new
//! communicator takes the maximum of its members' next free pair (an
//! allreduce-max over the parent, MPI's way) and every member of the parent
//! moves past it. A pair is thus free on every member, so two communicators
//! a rank belongs to never share a context. Ranks left out of a split
//! advance too (harmless: ids are never reused, there are 2³¹ pairs).
//!
//! Creating communicators from several threads of one rank at once is not
//! supported (two concurrent allocations could pick the same pair); create
//! them from one thread, as with MPICH's default configuration.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use mpr_collectives::{Algorithm, op};

use crate::comm::{Comm, CommInner, Group};
use crate::error::Error;
use crate::{ContextId, Rank};

/// The next context pair this rank has not handed out.
#[derive(Debug)]
pub(crate) struct ContextCounter(AtomicU32);

impl ContextCounter {
    /// A counter for a rank that only has the world (pair 0).
    pub(crate) fn after_world() -> ContextCounter {
        ContextCounter(AtomicU32::new(1))
    }
}

/// Highest pair number (its collective context `2n + 1` must fit a u32).
const LAST_PAIR: u32 = u32::MAX / 2;

impl CommInner {
    /// Agrees with every rank of this communicator on a fresh context pair.
    fn new_contexts(&self) -> Result<(ContextId, ContextId), Error> {
        let mut agreed = [self.contexts.0.load(Ordering::Acquire)];
        let schedule = mpr_collectives::allreduce(
            Algorithm::RecursiveDoubling,
            self.rank.0,
            self.group.size(),
            1,
            true,
        );
        self.run(&schedule, &[], &mut agreed, Some(&op::Max))?;
        let pair = agreed[0];
        if pair > LAST_PAIR {
            return Err(self.error(Error::ContextsExhausted));
        }
        self.contexts.0.fetch_max(pair + 1, Ordering::AcqRel);
        Ok((ContextId(2 * pair), ContextId(2 * pair + 1)))
    }
}

impl Comm {
    /// A new communicator with the same ranks and new contexts
    /// (`MPI_Comm_dup`): its messages never match this one's. Collective:
    /// every rank calls it.
    ///
    /// ```
    /// mpr::local::run(2, |world| {
    ///     let copy = world.dup()?;
    ///     assert_eq!((copy.rank(), copy.size()), (world.rank(), 2));
    ///     let peer = 1 - world.rank();
    ///     // Same tag on both communicators: each receive gets its own message.
    ///     world.send(&[1u8], peer, 0)?;
    ///     copy.send(&[2u8], peer, 0)?;
    ///     let mut got = [0u8];
    ///     copy.recv(&mut got, peer, 0)?;
    ///     assert_eq!(got, [2]);
    ///     world.recv(&mut got, peer, 0)?;
    ///     assert_eq!(got, [1]);
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn dup(&self) -> Result<Comm, Error> {
        let inner = &*self.inner;
        let contexts = inner.new_contexts()?;
        let mut copy = CommInner::derived(inner, contexts, inner.rank, inner.group.clone());
        copy.claim_boards()?;
        Ok(Comm {
            inner: Arc::new(copy),
        })
    }

    /// Splits this communicator by host (`MPI_Comm_split_type` with
    /// `MPI_COMM_TYPE_SHARED`): the ranks that share memory with this one
    /// (same host, same kernel and network namespace) form a new
    /// communicator, ordered by `key` and then by their rank here; a rank
    /// that shares memory with no other (over TCP alone) gets a
    /// communicator of its own. Collective: every rank calls it. The usual
    /// first step of a two-level algorithm: collectives among the ranks of
    /// one host run on the shared-memory boards, then one rank per host
    /// talks to the other hosts.
    ///
    /// ```
    /// mpr::local::run(3, |world| {
    ///     // `local::run` puts every rank on one host: with shared memory
    ///     // (the default) all three are in `host`, over TCP each alone.
    ///     let host = world.split_shared(0)?;
    ///     assert!(host.size() == 3 || host.size() == 1);
    ///     let mut count = [1u32];
    ///     host.allreduce_in_place(&mut count, mpr::op::Sum)?;
    ///     assert_eq!(count, [host.size()]);
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn split_shared(&self, key: i32) -> Result<Comm, Error> {
        let inner = &*self.inner;
        let world = inner.to_world(inner.rank)?;
        // Domains are numbered below the world size; a rank without one
        // takes a colour of its own above them.
        let color = inner
            .rt
            .memory_domain(world)
            .unwrap_or(inner.rt.size() + world.0);
        let (all, contexts) = self.split_exchange(Some(color), key)?;
        self.split_part(&all, contexts, color)
    }

    /// Splits this communicator by colour (`MPI_Comm_split`): ranks passing
    /// the same `Some(color)` form a new communicator, ordered by `key` and
    /// then by their rank here; ranks passing `None` (`MPI_UNDEFINED`) get
    /// `None`. Collective: every rank calls it. Broadcasting on a split
    /// communicator is how to send one message to a chosen group.
    ///
    /// ```
    /// mpr::local::run(5, |world| {
    ///     let rank = world.rank();
    ///     // Evens and odds, in reverse rank order; rank 4 stays out.
    ///     let color = (rank != 4).then_some(rank % 2);
    ///     let half = world.split(color, -(rank as i32))?;
    ///     if let Some(half) = half {
    ///         assert_eq!(half.size(), 2);
    ///         let mut word = if half.rank() == 0 { [rank] } else { [0] };
    ///         half.bcast(&mut word, 0)?;
    ///         assert_eq!(word, [if rank % 2 == 0 { 2 } else { 3 }]);
    ///         assert_eq!(half.world_rank(0)?.0, word[0]);
    ///     } else {
    ///         assert_eq!(rank, 4);
    ///     }
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn split(&self, color: Option<u32>, key: i32) -> Result<Option<Comm>, Error> {
        let (all, contexts) = self.split_exchange(color, key)?;
        let Some(color) = color else { return Ok(None) };
        self.split_part(&all, contexts, color).map(Some)
    }

    /// The exchange of a split: every rank's colour and key (three words
    /// each: coloured, colour, key), and the new communicators' contexts.
    fn split_exchange(
        &self,
        color: Option<u32>,
        key: i32,
    ) -> Result<(Vec<u32>, (ContextId, ContextId)), Error> {
        let inner = &*self.inner;
        let size = inner.group.size();
        let mine = [u32::from(color.is_some()), color.unwrap_or(0), key as u32];
        let mut all = vec![0u32; 3 * size as usize];
        let schedule = mpr_collectives::allgather(
            Algorithm::Bruck,
            inner.rank.0,
            size,
            &vec![3; size as usize],
        );
        inner.run(&schedule, &mine, &mut all, None)?;
        let contexts = inner.new_contexts()?;
        Ok((all, contexts))
    }

    /// This rank's part of a split: the ranks of `all` with `color`.
    fn split_part(
        &self,
        all: &[u32],
        contexts: (ContextId, ContextId),
        color: u32,
    ) -> Result<Comm, Error> {
        let inner = &*self.inner;
        let mut members: Vec<(i32, u32)> = all
            .chunks_exact(3)
            .enumerate()
            .filter(|(_, entry)| entry[0] == 1 && entry[1] == color)
            .map(|(rank, entry)| (entry[2] as i32, rank as u32))
            .collect();
        members.sort_unstable();
        let rank = members
            .iter()
            .position(|&(_, r)| r == inner.rank.0)
            .unwrap_or(0) as u32;
        let world = members
            .iter()
            .map(|&(_, r)| inner.to_world(Rank(r)))
            .collect::<Result<Vec<Rank>, Error>>()?;
        let group = Group::from_members(world, inner.rt.size());
        let mut part = CommInner::derived(inner, contexts, Rank(rank), group);
        part.claim_boards()?;
        Ok(Comm {
            inner: Arc::new(part),
        })
    }
}
