//! Communicators: a group of ranks and the contexts their messages use.

/// A communicator: the ranks that take part and the matching contexts of
/// their messages.
#[derive(Debug)]
pub struct Comm {
    rank: u32,
    size: u32,
}

impl Comm {
    pub(crate) fn world(rank: u32, size: u32) -> Comm {
        Comm { rank, size }
    }

    /// This process's rank in the communicator.
    pub fn rank(&self) -> u32 {
        self.rank
    }

    /// Number of ranks in the communicator.
    pub fn size(&self) -> u32 {
        self.size
    }
}
