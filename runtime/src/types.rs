//! Small value types shared by every layer: ranks, tags, context ids.

use std::fmt;

/// A process rank: in the world communicator, or in a sub-communicator,
/// depending on where it came from (the API says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rank(pub u32);

impl Rank {
    /// The rank as an index into per-rank tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u32> for Rank {
    fn from(rank: u32) -> Self {
        Rank(rank)
    }
}

/// A message tag. Users may use tags `>= 0`; negative tags are reserved for
/// the runtime (collectives, internal protocols).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tag(pub i32);

impl Tag {
    /// Whether a user may send with this tag (it is not negative).
    pub fn is_user(self) -> bool {
        self.0 >= 0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i32> for Tag {
    fn from(tag: i32) -> Self {
        Tag(tag)
    }
}

/// Identifies the matching space of a communicator: messages only match
/// receives posted with the same context id. Each communicator owns one
/// context for point-to-point traffic and one for collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ContextId(pub u32);

impl fmt::Display for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl ContextId {
    /// Point-to-point context of the world communicator.
    pub(crate) const WORLD_P2P: ContextId = ContextId(0);
    /// Collective context of the world communicator.
    pub(crate) const WORLD_COLL: ContextId = ContextId(1);
}
