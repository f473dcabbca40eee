//! Reduce on the collective boards (`board.rs`) of a communicator on one
//! host (measurements beside [`CommInner::board_reduce`]).
//!
//! The root publishes first, and the others follow it, as in a bcast:
//!
//! - an operand up to the board limit: each rank publishes its operand,
//!   and the root reads every one and combines them in rank order, so any
//!   op, commutative or not, gives the message schedule's result;
//! - a larger one, from three ranks on, where the direct range allows it
//!   (ranks bound to cores, `MPR_SHM_DIRECT_MIN`): the root publishes the
//!   addresses of its operand and result, every rank whose length agrees
//!   the address of its operand, and once all have published and agree,
//!   they reduce pieces of the operand straight between the processes
//!   ([`CommInner::direct_reduce`]); a rank whose length differs
//!   publishes it, and every rank fails the call;
//! - otherwise, every rank whose length agrees with the root's runs the
//!   message schedule at once. A rank whose length differs plays the
//!   root's schedule poisoned, so the ranks that wait on it fail instead
//!   of hanging.
//!
//! With two ranks, the one that is not the root does not wait for the
//! root when its own operand is above the limit: it publishes its length
//! and runs the message schedule at once. A root whose operand is on the
//! board reads that length and plays that rank's schedule poisoned
//! (`root_of_two_follows`); a root above the limit runs the same schedule,
//! whose receives fail if the lengths disagree. Two ranks never reduce
//! directly: their leaf could not tell a root that had (messages win
//! there anyway, see `DEFAULT_SHM_DIRECT_REDUCE_MIN` in `tuning.rs`).
//!
//! Each rank reducing one fixed slice of every operand lost to messages
//! (2026-11-26, medians of 5 alternating runs, µs, 4 ranks 128 KiB /
//! 256 KiB / 512 KiB 23.6 / 41.8 / 96.3 by messages against 29.9 / 47.1 /
//! 110): the slowest rank to be scheduled held everyone up. Pieces claimed
//! in turn let the ranks that hold a core do the work.

use bytemuck::Pod;
use mpr_collectives::Collective;
use mpr_collectives::op::Op;

use super::board::{BoardOutcome, Mode};
use super::direct::addresses;
use crate::Rank;
use crate::comm::CommInner;
use crate::error::Error;
use crate::transport::shm::board::Boards;

impl CommInner {
    /// Reduce to `root` on the boards: `recv = d_0 ∘ d_1 ∘ … ∘ d_{p-1}` at
    /// the root, where `d_r` is rank r's `send`. `root_valid` is the root's
    /// own check of its receive buffer (others pass `Ok`); `max` the board
    /// limit.
    ///
    /// Measured 2026-11-26 (medians of alternating runs, µs, 4 B / 512 B /
    /// 1 KiB, by messages against on the boards): with four ranks 1.37 /
    /// 1.61 / 1.79 against 0.68 / 1.10 / 1.37, and 7.14 against 4.22 at
    /// 8 KiB; with two (6 runs, after the reducing loop was vectorized)
    /// 0.45 / 0.79 / 0.98 against 0.36 / 0.43 / 0.62. Above the limit two
    /// ranks pay for the board's bookkeeping (with a 1 KiB limit: 2 KiB
    /// 1.01 against 1.17, 64 KiB 5.23 against 5.39, 1 MiB 80.4 against
    /// 81.6), so their reduce limit is 4 KiB (`tuning.rs`). (An earlier
    /// measurement with two ranks, 0.30 / 0.59 / 0.88 by messages against
    /// 0.33 / 0.57 / 0.90, had kept them off the boards.)
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn board_reduce<T: Pod>(
        &self,
        boards: &Boards,
        send: &[T],
        recv: &mut [T],
        op: &dyn Op<T>,
        root: u32,
        root_valid: Result<(), Error>,
        max: usize,
    ) -> BoardOutcome {
        let k = self.next_board_call(boards);
        let bytes = size_of_val(send);
        let root = root as usize;
        if let Err(error) = self.board_wait(0..boards.len(), |_| boards.may_publish(k)) {
            return self.board_failed(boards, k, error);
        }
        let two = boards.len() == 2;
        if boards.me() != root {
            if two && bytes > max {
                // This operand goes by messages whatever the root says: the
                // leaf leaves at once, and the root follows it (see
                // `root_of_two_follows`).
                boards.publish(k, &[], Mode::Messages.encode(bytes));
                boards.done(k);
                return BoardOutcome::Messages;
            }
            return self.reduce_leaf(boards, k, send, op, root);
        }
        let mode = if bytes <= max {
            Mode::Board
        } else if !two
            && root_valid.is_ok()
            && self.board_mode(boards, Collective::Reduce, bytes, max) == Mode::Direct
        {
            Mode::Direct
        } else {
            Mode::Messages
        };
        if mode == Mode::Direct {
            let published = addresses(&[send.as_ptr().cast(), recv.as_ptr().cast()]);
            boards.publish(k, &published, mode.encode(bytes));
            return self.reduce_direct_agreed(boards, k, bytes).map_or_else(
                |outcome| outcome,
                |()| BoardOutcome::Done(self.direct_reduce(boards, k, root, send, recv, op)),
            );
        }
        boards.publish(k, &[], mode.encode(bytes));
        let root_valid = if two && mode == Mode::Board {
            match self.root_of_two_follows::<T>(boards, k, bytes, max, root_valid) {
                Ok(root_valid) => root_valid,
                Err(outcome) => return outcome,
            }
        } else {
            root_valid
        };
        match (mode, root_valid) {
            // The others publish their operands and complete.
            (Mode::Board, Err(error)) => self.board_failed(boards, k, error),
            (Mode::Board, Ok(())) => {
                BoardOutcome::Done(self.reduce_root_collect(boards, k, send, recv, op))
            }
            (_, root_valid) => {
                boards.done(k);
                match root_valid {
                    Ok(()) => BoardOutcome::Messages,
                    Err(error) => BoardOutcome::Reject {
                        count: send.len(),
                        error,
                    },
                }
            }
        }
    }

    /// The root of a reduce call `k` of two ranks that publishes its
    /// operand on the board: the other rank leaves at once when its own
    /// operand is above the board limit `max` (it runs the message schedule
    /// of its own length), so the root waits for its publication and, if it
    /// did, plays that schedule poisoned. `Ok` hands `root_valid` back when
    /// the other rank follows the root instead. (A root above the limit
    /// goes by messages without waiting: a rank that follows it plays its
    /// schedule, and one that left runs the same schedule, where lengths
    /// that disagree fail the receives.)
    fn root_of_two_follows<T>(
        &self,
        boards: &Boards,
        k: u64,
        bytes: usize,
        max: usize,
        root_valid: Result<(), Error>,
    ) -> Result<Result<(), Error>, BoardOutcome> {
        let other = 1 - boards.me();
        if let Err(error) = self.board_wait(other..other + 1, |rank| boards.arrived(rank, k)) {
            return Err(self.board_failed(boards, k, error));
        }
        let Some((len, Mode::Messages)) = Mode::decode(boards.length(other, k)) else {
            return Ok(root_valid);
        };
        if len <= max {
            // It followed our publication.
            return Ok(root_valid);
        }
        boards.done(k);
        let count = len / size_of::<T>().max(1);
        let mismatch = Error::CountMismatch {
            rank: Rank(other as u32),
            expected: bytes,
            actual: len,
        };
        Err(BoardOutcome::Reject {
            count,
            error: root_valid.err().unwrap_or(mismatch),
        })
    }

    /// A reduce call `k` off the root: follow the root's publication.
    fn reduce_leaf<T: Pod>(
        &self,
        boards: &Boards,
        k: u64,
        send: &[T],
        op: &dyn Op<T>,
        root: usize,
    ) -> BoardOutcome {
        let bytes = size_of_val(send);
        if let Err(error) = self.board_wait(root..root + 1, |rank| boards.arrived(rank, k)) {
            return self.board_failed(boards, k, error);
        }
        let mismatch = |expected: usize| Error::CountMismatch {
            rank: Rank(root as u32),
            expected,
            actual: bytes,
        };
        // A root publishes no poisoned length.
        let (expected, mode) = Mode::decode(boards.length(root, k)).unwrap_or((0, Mode::Board));
        match mode {
            Mode::Board if expected == bytes => {
                boards.publish(k, bytemuck::cast_slice(send), mode.encode(bytes));
                boards.done(k);
                BoardOutcome::Done(Ok(()))
            }
            Mode::Direct if expected == bytes => {
                let published = addresses(&[send.as_ptr().cast()]);
                boards.publish(k, &published, mode.encode(bytes));
                match self.reduce_direct_agreed(boards, k, bytes) {
                    Ok(()) => {
                        BoardOutcome::Done(self.direct_reduce(boards, k, root, send, &mut [], op))
                    }
                    Err(outcome) => outcome,
                }
            }
            // The root (and, directly, every rank) reads our length and
            // fails too.
            Mode::Board | Mode::Direct => {
                boards.publish(k, &[], Mode::Messages.encode(bytes));
                self.board_failed(boards, k, mismatch(expected))
            }
            Mode::Messages => {
                boards.publish(k, &[], mode.encode(bytes));
                boards.done(k);
                if expected == bytes {
                    BoardOutcome::Messages
                } else {
                    BoardOutcome::Reject {
                        count: expected / size_of::<T>().max(1),
                        error: mismatch(expected),
                    }
                }
            }
        }
    }

    /// Whether every rank published an operand of `bytes` bytes to reduce
    /// directly in call `k` (from three ranks on; a rank whose count
    /// disagrees publishes it to move by messages, and fails), which every
    /// rank decides alike once all have published: a rank copies nothing
    /// before, and fails the call if any disagrees.
    fn reduce_direct_agreed(
        &self,
        boards: &Boards,
        k: u64,
        bytes: usize,
    ) -> Result<(), BoardOutcome> {
        let size = boards.len();
        if let Err(error) = self.board_wait(0..size, |rank| boards.arrived(rank, k)) {
            return Err(self.board_failed(boards, k, error));
        }
        let disagree = (0..size).find_map(|rank| match Mode::decode(boards.length(rank, k)) {
            Some((len, Mode::Direct)) if len == bytes => None,
            published => Some(super::gather::publication_error(published, rank, bytes)),
        });
        match disagree {
            Some(error) => Err(self.board_failed(boards, k, error)),
            None => Ok(()),
        }
    }

    /// The root of reduce call `k` on the boards: waits for every operand,
    /// checks their lengths against `send`'s, and combines them in rank
    /// order into `recv`. Says it is done with `k`.
    fn reduce_root_collect<T: Pod>(
        &self,
        boards: &Boards,
        k: u64,
        send: &[T],
        recv: &mut [T],
        op: &dyn Op<T>,
    ) -> Result<(), Error> {
        let (me, size, bytes) = (boards.me(), boards.len(), size_of_val(send));
        let mut result = self.board_settle(0..size, |rank| boards.arrived(rank, k));
        for rank in (0..size).filter(|&rank| rank != me && boards.arrived(rank, k)) {
            let error = match Mode::decode(boards.length(rank, k)) {
                Some((len, Mode::Board)) if len == bytes => continue,
                published => super::gather::publication_error(published, rank, bytes),
            };
            result = result.and(Err(error));
        }
        if result.is_ok() {
            // On the stack for small operands: this is the latency path.
            let mut scratch: smallvec::SmallVec<[T; 16]> =
                smallvec::smallvec![T::zeroed(); recv.len()];
            for rank in 0..size {
                let operand: &[T] = if rank == me {
                    send
                } else {
                    boards.read(rank, k, bytemuck::cast_slice_mut(&mut scratch));
                    &scratch
                };
                if rank == 0 {
                    recv.copy_from_slice(operand);
                } else {
                    op.reduce(operand, recv, false);
                }
            }
        }
        boards.done(k);
        result.map_err(|error| self.error(error))
    }
}
