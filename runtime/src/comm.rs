//! Communicators: a group of ranks and the contexts their messages use.

use std::sync::Arc;

use crate::collective::Forced;
use crate::engine;
use crate::error::Error;
use crate::runtime::Runtime;
use crate::split::ContextCounter;
use crate::{ContextId, Rank, Tag};

/// A rank that is no rank: sends to it and receives from it complete at
/// once and move nothing (`MPI_PROC_NULL`).
pub const PROC_NULL: Rank = Rank(u32::MAX);

/// Which senders a receive accepts (ranks of the communicator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Any sender (`MPI_ANY_SOURCE`).
    Any,
    /// Only this rank.
    Rank(Rank),
}

/// Accept a message from any rank.
pub const ANY_SOURCE: Source = Source::Any;

impl From<Rank> for Source {
    fn from(rank: Rank) -> Self {
        Source::Rank(rank)
    }
}

impl From<u32> for Source {
    fn from(rank: u32) -> Self {
        Source::Rank(Rank(rank))
    }
}

/// Which tags a receive accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagMatch {
    /// Any tag (`MPI_ANY_TAG`).
    Any,
    /// Only this tag.
    Tag(Tag),
}

/// Accept a message with any tag.
pub const ANY_TAG: TagMatch = TagMatch::Any;

impl From<Tag> for TagMatch {
    fn from(tag: Tag) -> Self {
        TagMatch::Tag(tag)
    }
}

impl From<i32> for TagMatch {
    fn from(tag: i32) -> Self {
        TagMatch::Tag(Tag(tag))
    }
}

/// What a completed receive (or probe) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The sender, as a rank of the communicator (`PROC_NULL` for a
    /// receive from `PROC_NULL`).
    pub source: Rank,
    /// The message's tag.
    pub tag: Tag,
    /// Length of the message in bytes.
    pub len: usize,
}

impl Status {
    /// Number of whole elements of `T` in the message (`MPI_Get_count`).
    pub fn count<T>(&self) -> usize {
        match std::mem::size_of::<T>() {
            0 => 0,
            size => self.len / size,
        }
    }

    pub(crate) fn proc_null() -> Status {
        Status {
            source: PROC_NULL,
            tag: Tag(-1),
            len: 0,
        }
    }
}

/// The members of a communicator, as world ranks.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// World rank of each member, by communicator rank.
    members: Vec<Rank>,
    /// Communicator rank of each world rank (`u32::MAX`: not a member).
    by_world: Vec<u32>,
}

impl Group {
    /// Every world rank, in order.
    pub(crate) fn world(size: u32) -> Group {
        Group {
            members: (0..size).map(Rank).collect(),
            by_world: (0..size).collect(),
        }
    }

    /// The world ranks `members`, in communicator rank order, of a world of
    /// `world_size` ranks.
    pub(crate) fn from_members(members: Vec<Rank>, world_size: u32) -> Group {
        let mut by_world = vec![u32::MAX; world_size as usize];
        for (rank, member) in members.iter().enumerate() {
            by_world[member.index()] = rank as u32;
        }
        Group { members, by_world }
    }

    /// Number of members.
    pub(crate) fn size(&self) -> u32 {
        self.members.len() as u32
    }

    /// The members' world ranks, in communicator rank order.
    pub(crate) fn members(&self) -> &[Rank] {
        &self.members
    }
}

/// Shared state of a communicator; requests keep it alive.
#[derive(Debug)]
pub(crate) struct CommInner {
    pub(crate) rt: Arc<Runtime>,
    /// Context of point-to-point messages.
    pub(crate) p2p: ContextId,
    /// Context of the collectives' messages.
    pub(crate) coll: ContextId,
    /// This process's rank in the communicator.
    pub(crate) rank: Rank,
    pub(crate) group: Group,
    /// Context ids this rank has handed out, shared by all its communicators.
    pub(crate) contexts: Arc<ContextCounter>,
    /// Collective algorithms forced on this communicator.
    pub(crate) forced: Forced,
    /// Collective schedules by call shape.
    pub(crate) schedules: crate::collective::cache::ScheduleCache,
    /// Whether every member offered shared memory in one domain (computed
    /// on first use; the same answer on every member).
    shares_memory: std::sync::OnceLock<bool>,
    /// Calls made on the collective boards (`collective/board.rs`).
    pub(crate) board_calls: std::sync::atomic::AtomicU64,
    /// Large direct exchanges made (`collective/direct.rs`): every other
    /// one copies in reverse order.
    pub(crate) direct_exchanges: std::sync::atomic::AtomicU64,
    /// The boards of a communicator made from the world, if it has a
    /// board of its own (`collective/board_number.rs`); the world's are
    /// the runtime's.
    pub(crate) boards: Option<crate::transport::shm::board::Boards>,
}

impl CommInner {
    /// Whether every member offered shared memory in one domain: the same
    /// answer on every member, so collectives may choose by it.
    pub(crate) fn shares_memory(&self) -> bool {
        *self
            .shares_memory
            .get_or_init(|| self.rt.share_memory(self.group.members()))
    }

    /// A communicator derived from `parent` (by dup or split), with its own
    /// contexts.
    pub(crate) fn derived(
        parent: &CommInner,
        (p2p, coll): (ContextId, ContextId),
        rank: Rank,
        group: Group,
    ) -> CommInner {
        CommInner {
            rt: Arc::clone(&parent.rt),
            p2p,
            coll,
            rank,
            group,
            contexts: Arc::clone(&parent.contexts),
            forced: Forced::default(),
            schedules: Default::default(),
            shares_memory: Default::default(),
            board_calls: Default::default(),
            direct_exchanges: Default::default(),
            boards: None,
        }
    }

    /// World rank of communicator rank `rank`, or an error naming it.
    pub(crate) fn to_world(&self, rank: Rank) -> Result<Rank, Error> {
        self.group
            .members
            .get(rank.index())
            .copied()
            .ok_or(Error::InvalidRank {
                rank,
                size: self.group.members.len() as u32,
            })
    }

    /// Communicator rank of world rank `rank` (unchanged if not a member).
    pub(crate) fn to_comm(&self, rank: Rank) -> Rank {
        match self.group.by_world.get(rank.index()) {
            Some(&comm) if comm != u32::MAX => Rank(comm),
            _ => rank,
        }
    }

    /// An engine status as a status of this communicator.
    pub(crate) fn status(&self, status: engine::Status) -> Status {
        Status {
            source: self.to_comm(status.source),
            tag: status.tag,
            len: status.len,
        }
    }

    /// An engine error as an error of this communicator, through the error
    /// policy (which may abort the job instead).
    pub(crate) fn op_error(&self, error: engine::OpError) -> Error {
        self.rt
            .handle(Error::from_op(error, |rank| self.to_comm(rank)))
    }

    /// An API error through the error policy.
    pub(crate) fn error(&self, error: Error) -> Error {
        self.rt.handle(error)
    }
}

/// A communicator: the ranks that take part and the matching contexts of
/// their messages. `Comm` is `Send + Sync`: threads of a rank may share it.
#[derive(Debug, Clone)]
pub struct Comm {
    pub(crate) inner: Arc<CommInner>,
}

impl Comm {
    /// The world communicator over a runtime.
    pub(crate) fn world(rt: Arc<Runtime>) -> Comm {
        let size = rt.size();
        let rank = rt.rank();
        Comm {
            inner: Arc::new(CommInner {
                rt,
                p2p: ContextId::WORLD_P2P,
                coll: ContextId::WORLD_COLL,
                rank,
                group: Group::world(size),
                contexts: Arc::new(ContextCounter::after_world()),
                forced: Forced::default(),
                schedules: Default::default(),
                shares_memory: Default::default(),
                board_calls: Default::default(),
                direct_exchanges: Default::default(),
                boards: None,
            }),
        }
    }

    /// This process's rank in the communicator.
    pub fn rank(&self) -> u32 {
        self.inner.rank.0
    }

    /// Number of ranks in the communicator.
    pub fn size(&self) -> u32 {
        self.inner.group.members.len() as u32
    }

    /// World rank of a rank of this communicator.
    pub fn world_rank(&self, rank: impl Into<Rank>) -> Result<Rank, Error> {
        self.inner.to_world(rank.into())
    }

    /// Aborts the whole job with exit code `code` (`MPI_Abort`): the
    /// launcher stops every rank. Never returns.
    pub fn abort(&self, code: i32) -> ! {
        let message = format!("rank {} called abort({code})", self.inner.rt.rank());
        self.inner.rt.abort(code, &message)
    }
}
