//! `mprun`'s side of a multi-host fence, free of I/O: each host's daemon
//! sends one batch of its ranks' cards; when every rank's card is in, the
//! fence completes and its answer goes to every daemon.

use thiserror::Error;

/// Why a host's batch is refused (the host is then treated as lost).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum FenceError {
    /// The batch is for another fence than the one in progress.
    #[error("sent cards for fence {got} while fence {expected} is in progress")]
    Epoch {
        /// The fence in progress.
        expected: u32,
        /// The batch's fence.
        got: u32,
    },
    /// The batch holds a card of a rank that does not run on that host, or twice.
    #[error("sent a card for rank {0}, which is not one of its ranks or was sent twice")]
    Rank(u32),
}

/// A completed fence: its number and every rank's card, by world rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Completed {
    /// Fence number.
    pub(crate) epoch: u32,
    /// One card per world rank.
    pub(crate) cards: Vec<Vec<u8>>,
}

/// The fence in progress across hosts.
#[derive(Debug)]
pub(crate) struct Fences {
    epoch: u32,
    cards: Vec<Option<Vec<u8>>>,
    arrived: usize,
}

impl Fences {
    /// Fences of a job of `size` ranks.
    pub(crate) fn new(size: u32) -> Self {
        Fences {
            epoch: 0,
            cards: vec![None; size as usize],
            arrived: 0,
        }
    }

    /// A host's batch; `ours(rank)` says whether `rank` runs on that host.
    /// Returns the completed fence (its number and every card) once the
    /// last batch is in.
    pub(crate) fn add(
        &mut self,
        epoch: u32,
        batch: Vec<(u32, Vec<u8>)>,
        ours: impl Fn(u32) -> bool,
    ) -> Result<Option<Completed>, FenceError> {
        if epoch != self.epoch {
            return Err(FenceError::Epoch {
                expected: self.epoch,
                got: epoch,
            });
        }
        if let Some((rank, _)) = batch.iter().find(|(rank, _)| {
            !ours(*rank)
                || self
                    .cards
                    .get(*rank as usize)
                    .is_none_or(|card| card.is_some())
        }) {
            return Err(FenceError::Rank(*rank));
        }
        for (rank, card) in batch {
            if let Some(slot) = self.cards.get_mut(rank as usize) {
                if slot.replace(card).is_some() {
                    // Twice in one batch: the host is lost, the job stops.
                    return Err(FenceError::Rank(rank));
                }
                self.arrived += 1;
            }
        }
        if self.arrived < self.cards.len() {
            return Ok(None);
        }
        let cards = self
            .cards
            .iter_mut()
            .map(|card| card.take().unwrap_or_default())
            .collect();
        let done = self.epoch;
        self.epoch += 1;
        self.arrived = 0;
        Ok(Some(Completed { epoch: done, cards }))
    }

    /// Whether some rank waits at the fence in progress that `rank` has not
    /// reached.
    pub(crate) fn waits_for(&self, rank: u32) -> bool {
        self.arrived > 0 && self.cards.get(rank as usize).is_some_and(Option::is_none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_from_every_host_complete_the_fence_in_rank_order() {
        let mut fences = Fences::new(4);
        let host_a = |rank: u32| rank < 2;
        let host_b = |rank: u32| rank >= 2;
        assert_eq!(
            fences.add(0, vec![(3, vec![3]), (2, vec![2])], host_b),
            Ok(None)
        );
        assert!(fences.waits_for(0) && !fences.waits_for(2));
        let done = fences.add(0, vec![(0, vec![0]), (1, vec![1])], host_a);
        assert_eq!(
            done,
            Ok(Some(Completed {
                epoch: 0,
                cards: vec![vec![0], vec![1], vec![2], vec![3]]
            }))
        );
        assert!(!fences.waits_for(0));
        assert_eq!(
            fences.add(0, vec![], host_a),
            Err(FenceError::Epoch {
                expected: 1,
                got: 0
            })
        );
    }

    #[test]
    fn foreign_duplicate_and_out_of_range_ranks_are_refused() {
        let mut fences = Fences::new(2);
        assert_eq!(
            fences.add(0, vec![(1, vec![])], |rank| rank == 0),
            Err(FenceError::Rank(1))
        );
        assert_eq!(
            fences.add(0, vec![(0, vec![]), (0, vec![])], |_| true),
            Err(FenceError::Rank(0))
        );
        assert_eq!(
            fences.add(0, vec![(9, vec![])], |_| true),
            Err(FenceError::Rank(9))
        );
    }
}
