//! Gather on the collective boards (`board.rs`), for every size of a
//! communicator on one host.
//!
//! A rank whose block fits its board publishes it there at once, without
//! waiting for the root (*board-first*): a small gather costs each sender
//! one publication, and the root one look and one copy per rank. A rank
//! with a larger block follows the root's publication, which says how the
//! root wants the blocks:
//!
//! - *directly*: the root published the address of its receive buffer,
//!   and each rank writes its block there (`process_vm_writev`, see
//!   `direct.rs`) and publishes its length;
//! - *by messages*: each rank publishes its length and waits for the
//!   root's verdict (its *stage*): once every length agrees the schedule
//!   runs; otherwise nobody sends, the ranks whose length differs from the
//!   root's fail, and the others return (their send buffers are free, as
//!   after an eager send).
//!
//! The root waits for every rank's publication, so it fails on any length
//! that differs from its own, and nobody waits for a rank that went
//! another way. The board limit must be the same on every rank (otherwise
//! equal blocks may still fail the call).
//!
//! A reduce (`reduce.rs`) goes the same way with each rank's operand as
//! its block.

use bytemuck::Pod;

use super::board::{BoardOutcome, Mode};
use crate::Rank;
use crate::comm::CommInner;
use crate::error::Error;
use crate::transport::shm::board::Boards;
use mpr_collectives::Collective;

impl CommInner {
    /// Gather to `root` on the boards. `root_valid` is the root's own check
    /// of its receive buffer (others pass `Ok`); `max` the board limit.
    pub(crate) fn board_gather<T: Pod>(
        &self,
        boards: &Boards,
        send: &[T],
        recv: &mut [T],
        root: u32,
        root_valid: Result<(), Error>,
        max: usize,
    ) -> BoardOutcome {
        let k = self.next_board_call(boards);
        let block = size_of_val(send);
        let root = root as usize;
        if let Err(error) = self.board_wait(0..boards.len(), |_| boards.may_publish(k)) {
            return self.board_failed(boards, k, error);
        }
        if boards.me() != root {
            return self.gather_leaf(boards, k, bytemuck::cast_slice(send), root, max);
        }
        let mode = self.board_mode(boards, Collective::Gather, block, max);
        match (mode, root_valid) {
            (Mode::Board, root_valid) => {
                boards.publish(k, &[], mode.encode(block));
                if let Err(error) = root_valid {
                    // The others publish and complete as by messages.
                    return self.board_failed(boards, k, error);
                }
                let (send, out) = (bytemuck::cast_slice(send), bytemuck::cast_slice_mut(recv));
                BoardOutcome::Done(self.gather_root_collect(boards, k, send, out, false))
            }
            (Mode::Direct, Ok(())) => {
                let (send, out) = (bytemuck::cast_slice(send), bytemuck::cast_slice_mut(recv));
                BoardOutcome::Done(self.direct_gather_root(boards, k, send, out))
            }
            // Our buffer must not be written: by messages, where our part
            // is played poisoned if the others agree.
            (Mode::Direct | Mode::Messages, root_valid) => {
                self.gather_root_by_messages(boards, k, block, send.len(), root_valid)
            }
        }
    }

    /// The root's look at every other rank's publication of gather call
    /// `k`: copies each block published on a board (and, if `direct`,
    /// accepts those the others wrote into `recv` themselves), and fails
    /// on any length that differs from ours. Says it is done with `k`.
    pub(crate) fn gather_root_collect(
        &self,
        boards: &Boards,
        k: u64,
        send: &[u8],
        recv: &mut [u8],
        direct: bool,
    ) -> Result<(), Error> {
        let (me, size, block) = (boards.me(), boards.len(), send.len());
        let mut result = self.board_settle(0..size, |rank| boards.arrived(rank, k));
        recv[me * block..(me + 1) * block].copy_from_slice(send);
        for rank in (0..size).filter(|&rank| rank != me && boards.arrived(rank, k)) {
            let slot = &mut recv[rank * block..(rank + 1) * block];
            let error = match Mode::decode(boards.length(rank, k)) {
                Some((len, Mode::Board)) if len == block => {
                    boards.read(rank, k, slot);
                    continue;
                }
                Some((len, Mode::Direct)) if len == block && direct => continue,
                published => publication_error(published, rank, block),
            };
            result = result.and(Err(error));
        }
        boards.done(k);
        result.map_err(|error| self.error(error))
    }

    /// The root of gather call `k` (blocks of `block` bytes, `count`
    /// elements) by messages: announce it, wait for every rank's length,
    /// and give the verdict. With every length agreeing the schedule runs
    /// (played poisoned if `root_valid` failed); otherwise nobody sends
    /// and the call fails here.
    fn gather_root_by_messages(
        &self,
        boards: &Boards,
        k: u64,
        block: usize,
        count: usize,
        root_valid: Result<(), Error>,
    ) -> BoardOutcome {
        let (me, size) = (boards.me(), boards.len());
        boards.publish(k, &[], Mode::Messages.encode(block));
        if let Err(error) = self.board_settle(0..size, |rank| boards.arrived(rank, k)) {
            boards.stage(k, true);
            return self.board_failed(boards, k, error);
        }
        let disagree = (0..size).filter(|&rank| rank != me).find_map(|rank| {
            match Mode::decode(boards.length(rank, k)) {
                Some((len, Mode::Messages)) if len == block => None,
                published => Some(publication_error(published, rank, block)),
            }
        });
        boards.stage(k, disagree.is_some());
        if let Some(error) = disagree {
            return self.board_failed(boards, k, error);
        }
        boards.done(k);
        match root_valid {
            Ok(()) => BoardOutcome::Messages,
            Err(error) => BoardOutcome::Reject { count, error },
        }
    }

    /// A gather call `k` off the root: publish `send` on the board at once
    /// if it fits (`max`), else follow the root's publication.
    fn gather_leaf(
        &self,
        boards: &Boards,
        k: u64,
        send: &[u8],
        root: usize,
        max: usize,
    ) -> BoardOutcome {
        let block = send.len();
        if block <= max {
            boards.publish(k, send, Mode::Board.encode(block));
            boards.done(k);
            return BoardOutcome::Done(Ok(()));
        }
        if let Err(error) = self.board_wait(root..root + 1, |rank| boards.arrived(rank, k)) {
            return self.board_failed(boards, k, error);
        }
        let mismatch = |expected: usize| Error::CountMismatch {
            rank: Rank(root as u32),
            expected,
            actual: block,
        };
        let (expected, mode) = Mode::decode(boards.length(root, k)).unwrap_or((0, Mode::Board));
        let result = match mode {
            Mode::Board if expected == block => {
                // The root's limit is higher than ours: it reads boards.
                boards.publish(k, send, mode.encode(block));
                Ok(())
            }
            Mode::Direct if expected == block => self.direct_gather_leaf(boards, k, root, send),
            Mode::Messages => {
                boards.publish(k, &[], mode.encode(block));
                return self.gather_leaf_by_messages(boards, k, root, expected == block, mismatch);
            }
            // The root reads our length and fails too.
            _ => {
                boards.publish(k, &[], mode.encode(block));
                Err(self.error(mismatch(expected)))
            }
        };
        boards.done(k);
        BoardOutcome::Done(result)
    }

    /// A rank off the root of gather call `k` by messages, its length
    /// published: waits for the root's verdict and sends by messages if
    /// every length agreed. Otherwise nothing is sent: the call fails here
    /// if our length differs from the root's (`mismatch` of the root's),
    /// and returns if it agrees (our send buffer is free).
    fn gather_leaf_by_messages(
        &self,
        boards: &Boards,
        k: u64,
        root: usize,
        agrees: bool,
        mismatch: impl Fn(usize) -> Error,
    ) -> BoardOutcome {
        let verdict = self.board_wait(root..root + 1, |rank| boards.staged(rank, k).is_some());
        boards.done(k);
        if let Err(error) = verdict {
            return BoardOutcome::Done(Err(self.error(error)));
        }
        match (boards.staged(root, k), agrees) {
            (Some(false), true) => BoardOutcome::Messages,
            (_, true) => BoardOutcome::Done(Ok(())),
            (_, false) => {
                let expected = Mode::decode(boards.length(root, k)).map_or(0, |(len, _)| len);
                BoardOutcome::Done(Err(self.error(mismatch(expected))))
            }
        }
    }
}

/// The error of a rank that published `published` (decoded; `None`:
/// poisoned) where `expected` bytes were due: it aborted the call, or its
/// count disagrees.
pub(super) fn publication_error(
    published: Option<(usize, Mode)>,
    rank: usize,
    expected: usize,
) -> Error {
    let rank = Rank(rank as u32);
    match published {
        None => Error::PeerAborted { rank },
        Some((actual, _)) => Error::CountMismatch {
            rank,
            expected,
            actual,
        },
    }
}
