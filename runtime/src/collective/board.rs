//! Small collectives on the shared-memory boards (`transport/shm/board.rs`)
//! instead of messages: barrier, broadcast, allreduce and all-to-all of the
//! world communicator when every rank shares this host's memory.
//!
//! Each rank publishes its operand (or just its arrival) on its own board
//! and reads what it needs from the others' boards: a barrier is one
//! publication and one look per rank, an allreduce one publication and p
//! reads, combined in rank order (so any op, commutative or not, gives the
//! same result on every rank), a broadcast one publication by the root, a
//! gather one publication per rank (after the root's, which says what it
//! expects), an all-to-all one publication of the whole send buffer and
//! one read of a block from each board.
//! There is no matching, no ring and no copy to or from a queue. The
//! measurements that set the limit are beside `DEFAULT_SHM_BOARD_MAX` in
//! `tuning.rs`.
//!
//! Operands above `MPR_SHM_BOARD_MAX` bytes still go by messages, but every
//! call on a board communicator publishes its length, so that ranks can
//! tell what the others chose: a rank whose arguments are wrong publishes a
//! poisoned length and its peers fail the call with it
//! ([`Error::CountMismatch`]) instead of waiting; ranks whose counts
//! disagree fail the same way. Only the world communicator uses the boards,
//! and only while no algorithm is forced for the collective
//! (`MPR_COLL_<NAME>` or [`Comm::set_algorithm`](crate::Comm::set_algorithm)).

use std::sync::atomic::Ordering;

use bytemuck::Pod;
use mpr_collectives::Collective;
use mpr_collectives::op::Op;

use super::forced_by_env;
use crate::comm::CommInner;
use crate::error::{Argument, Error};
use crate::transport::shm::board::{Boards, ON_BOARD, POISONED};
use crate::types::ContextId;
use crate::{Rank, engine};

/// How a collective went on the boards.
pub(crate) enum BoardOutcome {
    /// Finished there (or failed there, for every rank alike).
    Done(Result<(), Error>),
    /// This call moves its data by messages: run the schedule.
    Messages,
    /// Another rank moves `count` elements by messages while this one
    /// cannot take part: play that schedule poisoned, then report `error`.
    Reject {
        /// The other rank's element count.
        count: usize,
        /// This rank's error.
        error: Error,
    },
}

impl CommInner {
    /// The boards, if this communicator runs `collective` on them.
    pub(crate) fn boards(&self, collective: Collective) -> Option<&Boards> {
        if self.coll != ContextId::WORLD_COLL {
            return None;
        }
        let forced = self
            .forced
            .get(collective)
            .or_else(|| forced_by_env(collective));
        if forced.is_some() {
            return None;
        }
        self.rt.boards()
    }

    /// The number of the next call on the boards (the same on every rank).
    fn next_board_call(&self) -> u64 {
        self.board_calls.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Waits until `ready(rank)` holds for every rank in `ranks`; fails if
    /// a rank it still waits for is gone.
    fn board_wait(
        &self,
        ranks: std::ops::Range<usize>,
        ready: impl Fn(usize) -> bool,
    ) -> Result<(), Error> {
        if ranks.clone().all(&ready) {
            return Ok(());
        }
        self.rt
            .wait_until(|engine: &mut engine::Engine| {
                let mut all = true;
                for rank in ranks.clone() {
                    if ready(rank) {
                        continue;
                    }
                    all = false;
                    if let Some(error) = engine.peer_gone_error(Rank(rank as u32)) {
                        return Some(Err(error));
                    }
                }
                all.then_some(Ok(()))
            })
            .map_err(|error| Error::from_op(error, |rank| self.to_comm(rank)))
    }

    /// Ends call `k` on the boards with `error` (this rank is done with it).
    fn board_failed(&self, boards: &Boards, k: u64, error: Error) -> BoardOutcome {
        boards.done(k);
        BoardOutcome::Done(Err(self.error(error)))
    }

    /// A rooted call `k` off the root: waits for the root's publication and
    /// returns the length it announced on its board, or how this rank goes
    /// on when the root moves the data by messages (with it, or playing its
    /// schedule poisoned when `own` bytes disagree: `mismatch` of the
    /// root's length is the error).
    fn follow_root<T>(
        &self,
        boards: &Boards,
        k: u64,
        root: usize,
        own: usize,
        mismatch: impl Fn(usize) -> Error,
    ) -> Result<usize, BoardOutcome> {
        if let Err(error) = self.board_wait(root..root + 1, |rank| boards.arrived(rank, k)) {
            return Err(self.board_failed(boards, k, error));
        }
        let published = boards.length(root, k);
        let len = (published & !ON_BOARD) as usize;
        if published & ON_BOARD != 0 {
            return Ok(len);
        }
        boards.done(k);
        Err(if len == own {
            BoardOutcome::Messages
        } else {
            BoardOutcome::Reject {
                count: len / size_of::<T>().max(1),
                error: mismatch(len),
            }
        })
    }

    /// Barrier on the boards. Two ranks look at each other's arrival; from
    /// three on, rank 0 waits for every arrival and then releases the
    /// others, so it leaves first: a rooted collective that follows (a
    /// bcast from 0) finds its receivers still being released rather than
    /// waiting for its root, as with the messages' `linear_tree` barrier
    /// (see the selection table of `mpr-collectives`). Measured 2026-11-26,
    /// 4 ranks, µs: 8 B bcast after it 0.80 on the boards against 0.38 by
    /// messages when every rank left at once.
    pub(crate) fn board_barrier(&self, boards: &Boards) -> Result<(), Error> {
        let k = self.next_board_call();
        let size = boards.len();
        let result = if size <= 2 {
            boards.arrive(k);
            self.board_wait(0..size, |rank| boards.arrived(rank, k))
        } else if boards.me() == 0 {
            let result = self.board_wait(1..size, |rank| boards.arrived(rank, k));
            boards.release(k);
            result
        } else {
            boards.arrive(k);
            self.board_wait(0..1, |rank| boards.released(rank, k))
        };
        boards.done(k);
        result.map_err(|error| self.error(error))
    }

    /// Broadcast of `buf` from `root` on the boards.
    pub(crate) fn board_bcast<T: Pod>(
        &self,
        boards: &Boards,
        buf: &mut [T],
        root: u32,
        max: usize,
    ) -> BoardOutcome {
        let k = self.next_board_call();
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(buf);
        let root = root as usize;
        if boards.me() == root {
            if let Err(error) = self.board_wait(0..boards.len(), |_| boards.may_publish(k)) {
                return self.board_failed(boards, k, error);
            }
            let on_board = bytes.len() <= max;
            let data: &[u8] = if on_board { bytes } else { &[] };
            boards.publish(
                k,
                data,
                bytes.len() as u64 | if on_board { ON_BOARD } else { 0 },
            );
            boards.done(k);
            return if on_board {
                BoardOutcome::Done(Ok(()))
            } else {
                BoardOutcome::Messages
            };
        }
        let own = bytes.len();
        let mismatch = |len: usize| Error::CountMismatch {
            rank: Rank(root as u32),
            expected: own,
            actual: len,
        };
        let len = match self.follow_root::<T>(boards, k, root, own, mismatch) {
            Ok(len) => len,
            Err(outcome) => return outcome,
        };
        let result = if len == own {
            boards.read(root, k, bytes);
            Ok(())
        } else {
            Err(self.error(mismatch(len)))
        };
        boards.done(k);
        BoardOutcome::Done(result)
    }

    /// The part every rank plays alike in call `k` of a symmetric
    /// collective (allreduce, alltoall): publish `operand` (or its length
    /// only, above `max`; or a poisoned length if `local` failed), wait for
    /// every rank's publication, and decide from all of them, the same way
    /// on every rank. `Ok` when every rank put an operand of this length on
    /// its board: the caller reads them and then says it is done with `k`.
    /// `unit` is the bytes of one element of the schedule's count, for a
    /// rank that must play another rank's schedule poisoned.
    fn board_symmetric(
        &self,
        boards: &Boards,
        k: u64,
        operand: &[u8],
        local: Result<(), Error>,
        max: usize,
        unit: usize,
    ) -> Result<(), BoardOutcome> {
        let bytes = operand.len();
        let everyone = 0..boards.len();
        let failed = |error: Error| self.board_failed(boards, k, error);
        self.board_wait(everyone.clone(), |_| boards.may_publish(k))
            .map_err(failed)?;
        if local.is_err() {
            boards.publish(k, &[], POISONED);
        } else if bytes <= max {
            boards.publish(k, operand, bytes as u64 | ON_BOARD);
        } else {
            // By messages, at once: ranks whose counts agree all land here.
            boards.publish(k, &[], bytes as u64);
            boards.done(k);
            return Err(BoardOutcome::Messages);
        }
        self.board_wait(everyone.clone(), |rank| boards.arrived(rank, k))
            .map_err(failed)?;
        // A rank that moves its data by messages waits for ours there: join
        // it (a rank with wrong arguments plays poisoned there), or play its
        // schedule poisoned if our counts disagree.
        let by_messages = everyone
            .clone()
            .map(|rank| (rank, boards.length(rank, k)))
            .find(|&(_, len)| len != POISONED && len & ON_BOARD == 0);
        if let Some((rank, len)) = by_messages {
            boards.done(k);
            let len = len as usize;
            return Err(if local.is_err() || len == bytes {
                BoardOutcome::Messages
            } else {
                BoardOutcome::Reject {
                    count: len / unit.max(1),
                    error: Error::CountMismatch {
                        rank: Rank(rank as u32),
                        expected: bytes,
                        actual: len,
                    },
                }
            });
        }
        local.map_err(failed)?;
        let disagree = everyone.clone().find_map(|rank| {
            let len = boards.length(rank, k);
            let len = if len == POISONED {
                0
            } else {
                (len & !ON_BOARD) as usize
            };
            (len != bytes).then_some(Error::CountMismatch {
                rank: Rank(rank as u32),
                expected: bytes,
                actual: len,
            })
        });
        match disagree {
            Some(error) => Err(failed(error)),
            None => Ok(()),
        }
    }

    /// Allreduce on the boards: `recv = d_0 ∘ d_1 ∘ … ∘ d_{p-1}` where
    /// `d_r` is rank r's `send` (or, in place, its `recv`).
    pub(crate) fn board_allreduce<T: Pod>(
        &self,
        boards: &Boards,
        send: Option<&[T]>,
        recv: &mut [T],
        op: &dyn Op<T>,
        max: usize,
    ) -> BoardOutcome {
        let k = self.next_board_call();
        let local = match send {
            Some(send) if send.len() != recv.len() => Err(Error::BufferLength {
                argument: Argument::RecvBuffer,
                expected: send.len(),
                actual: recv.len(),
            }),
            _ => Ok(()),
        };
        let operand: &[T] = send.unwrap_or(recv);
        let shared = self.board_symmetric(
            boards,
            k,
            bytemuck::cast_slice(operand),
            local,
            max,
            size_of::<T>(),
        );
        if let Err(outcome) = shared {
            return outcome;
        }
        boards.read(0, k, bytemuck::cast_slice_mut(recv));
        let mut scratch = vec![T::zeroed(); recv.len()];
        for rank in 1..boards.len() {
            boards.read(rank, k, bytemuck::cast_slice_mut(&mut scratch));
            op.reduce(&scratch, recv, false);
        }
        boards.done(k);
        BoardOutcome::Done(Ok(()))
    }

    /// All-to-all on the boards: every rank publishes its whole `send`
    /// (`p` blocks) and reads block `me` of every board. `local` is this
    /// rank's own check of its arguments.
    pub(crate) fn board_alltoall<T: Pod>(
        &self,
        boards: &Boards,
        send: &[T],
        recv: &mut [T],
        local: Result<(), Error>,
        max: usize,
    ) -> BoardOutcome {
        let k = self.next_board_call();
        let size = boards.len();
        let unit = size_of::<T>() * size;
        let shared = self.board_symmetric(boards, k, bytemuck::cast_slice(send), local, max, unit);
        if let Err(outcome) = shared {
            return outcome;
        }
        let block = std::mem::size_of_val(send) / size.max(1);
        let out: &mut [u8] = bytemuck::cast_slice_mut(recv);
        for (rank, chunk) in out.chunks_exact_mut(block.max(1)).enumerate().take(size) {
            boards.read_at(rank, k, boards.me() * block, chunk);
        }
        boards.done(k);
        BoardOutcome::Done(Ok(()))
    }
}

impl CommInner {
    /// Gather to `root` on the boards. The root publishes the block length
    /// it expects (and whether its blocks come by board or by messages);
    /// every other rank waits for that, then publishes its block, and the
    /// root reads them all. `root_valid` is the root's own check of its
    /// receive buffer (others pass `Ok`).
    pub(crate) fn board_gather<T: Pod>(
        &self,
        boards: &Boards,
        send: &[T],
        recv: &mut [T],
        root: u32,
        root_valid: Result<(), Error>,
        max: usize,
    ) -> BoardOutcome {
        let k = self.next_board_call();
        let block = std::mem::size_of_val(send);
        let root = root as usize;
        let size = boards.len();
        if let Err(error) = self.board_wait(0..size, |_| boards.may_publish(k)) {
            return self.board_failed(boards, k, error);
        }
        if boards.me() == root {
            if block > max {
                boards.publish(k, &[], block as u64);
                boards.done(k);
                return BoardOutcome::Messages;
            }
            boards.publish(k, &[], block as u64 | ON_BOARD);
            if let Err(error) = root_valid {
                // The others still publish and complete, as by messages.
                return self.board_failed(boards, k, error);
            }
            let waited = self.board_wait(0..size, |rank| boards.arrived(rank, k));
            if let Err(error) = waited {
                return self.board_failed(boards, k, error);
            }
            let out: &mut [u8] = bytemuck::cast_slice_mut(recv);
            let mut result = Ok(());
            for rank in 0..size {
                let slot = &mut out[rank * block..(rank + 1) * block];
                if rank == root {
                    slot.copy_from_slice(bytemuck::cast_slice(send));
                    continue;
                }
                let len = boards.length(rank, k) & !ON_BOARD;
                if len as usize == block {
                    boards.read(rank, k, slot);
                } else if result.is_ok() {
                    result = Err(self.error(Error::CountMismatch {
                        rank: Rank(rank as u32),
                        expected: block,
                        actual: len as usize,
                    }));
                }
            }
            boards.done(k);
            return BoardOutcome::Done(result);
        }
        let mismatch = |expected: usize| Error::CountMismatch {
            rank: Rank(root as u32),
            expected,
            actual: block,
        };
        let expected = match self.follow_root::<T>(boards, k, root, block, mismatch) {
            Ok(expected) => expected,
            Err(outcome) => return outcome,
        };
        let result = if expected == block {
            boards.publish(k, bytemuck::cast_slice(send), block as u64 | ON_BOARD);
            Ok(())
        } else {
            // The root reads our length and fails too.
            boards.publish(k, &[], block as u64 | ON_BOARD);
            Err(self.error(mismatch(expected)))
        };
        boards.done(k);
        BoardOutcome::Done(result)
    }
}
