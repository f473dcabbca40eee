//! Small collectives on the shared-memory boards (`transport/shm/board.rs`)
//! instead of messages: barrier, broadcast, scatter, gather
//! (`gather.rs`), reduce (`reduce.rs`), allreduce, allgather and
//! all-to-all, when every rank of a communicator shares this host's
//! memory.
//!
//! Each rank publishes its operand (or just its arrival) on its own board
//! and reads what it needs from the others' boards: a barrier is one
//! publication and one look per rank, an allreduce one publication and p
//! reads, combined in rank order (so any op, commutative or not, gives the
//! same result on every rank), a broadcast one publication by the root, a
//! gather one publication per rank (`gather.rs`), an all-to-all one
//! publication of the whole send buffer and one read of a block from each
//! board.
//! There is no matching, no ring and no copy to or from a queue. The
//! measurements that set the limit are beside `DEFAULT_SHM_BOARD_MAX` in
//! `tuning.rs`.
//!
//! Operands above `MPR_SHM_BOARD_MAX` bytes publish the addresses of their
//! buffers instead, and ranks copy straight between the processes
//! (`direct.rs`), or go by messages (`MPR_SHM_DIRECT_MIN`); every
//! call on a board communicator publishes its length, so that ranks can
//! tell what the others chose: a rank whose arguments are wrong publishes a
//! poisoned length and its peers fail the call with it
//! ([`Error::CountMismatch`]) instead of waiting; ranks whose counts
//! disagree fail the same way. The world communicator uses the boards, and
//! so do the communicators made from it while a board is free for them
//! (`board_number.rs`); none does while an algorithm is forced for the
//! collective (`MPR_COLL_<NAME>` or
//! [`Comm::set_algorithm`](crate::Comm::set_algorithm)).

use std::sync::atomic::Ordering;

use bytemuck::Pod;
use mpr_collectives::Collective;
use mpr_collectives::op::Op;

use super::forced_by_env;
use crate::comm::CommInner;
use crate::error::{Argument, Error};
use crate::transport::shm::board::{Boards, IN_MEMORY, ON_BOARD, POISONED};
use crate::types::ContextId;
use crate::{Rank, engine};

/// How a call on a board communicator moves its operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Its bytes are published on the boards.
    Board,
    /// The addresses of its buffers are published, and ranks copy straight
    /// from (or into) each other's memory (`direct.rs`).
    Direct,
    /// By messages, with the collective's schedule.
    Messages,
}

impl Mode {
    /// The length word a rank publishes for an operand of `bytes` bytes
    /// moved this way.
    pub(crate) fn encode(self, bytes: usize) -> u64 {
        bytes as u64
            | match self {
                Mode::Board => ON_BOARD,
                Mode::Direct => IN_MEMORY,
                Mode::Messages => 0,
            }
    }

    /// The bytes and mode of a published length word (`None`: poisoned).
    pub(crate) fn decode(published: u64) -> Option<(usize, Mode)> {
        if published == POISONED {
            return None;
        }
        let mode = if published & ON_BOARD != 0 {
            Mode::Board
        } else if published & IN_MEMORY != 0 {
            Mode::Direct
        } else {
            Mode::Messages
        };
        Some(((published & !(ON_BOARD | IN_MEMORY)) as usize, mode))
    }
}

/// Which part of every rank's send buffer each rank takes in a symmetric
/// exchange on the boards (all-to-all, allgather); it lands in block
/// `rank` of the taker's `recv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spread {
    /// All-to-all: `send` holds one block per rank, and rank `me` takes
    /// block `me`.
    Personal,
    /// Allgather: `send` is one block, which every rank takes.
    Same,
}

impl Spread {
    /// Bytes of one block of a `send` of `bytes` bytes on `size` ranks.
    #[inline]
    pub(crate) fn block(self, bytes: usize, size: usize) -> usize {
        match self {
            Spread::Personal => bytes / size.max(1),
            Spread::Same => bytes,
        }
    }

    /// Where rank `me`'s block of `block` bytes lies in a `send`.
    #[inline]
    pub(crate) fn offset(self, me: usize, block: usize) -> usize {
        match self {
            Spread::Personal => me * block,
            Spread::Same => 0,
        }
    }
}

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
        let forced = self
            .forced
            .get(collective)
            .or_else(|| forced_by_env(collective));
        if forced.is_some() {
            return None;
        }
        if self.coll == ContextId::WORLD_COLL {
            self.rt.boards()
        } else {
            self.boards.as_ref()
        }
    }

    /// How an operand of `bytes` bytes of `collective` moves on the boards
    /// `boards`, with `max` the board limit of the collective.
    pub(crate) fn board_mode(
        &self,
        boards: &Boards,
        collective: Collective,
        bytes: usize,
        max: usize,
    ) -> Mode {
        if bytes <= max {
            Mode::Board
        } else if boards.direct() && self.rt.tuning().shm_direct.contains(collective, bytes) {
            Mode::Direct
        } else {
            Mode::Messages
        }
    }

    /// The number of the next call on the boards (the same on every rank).
    pub(crate) fn next_board_call(&self, boards: &Boards) -> u64 {
        boards.base() + self.board_calls.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Waits until `ready(rank)` holds for every rank in `ranks`; fails if
    /// a rank it still waits for is gone.
    pub(crate) fn board_wait(
        &self,
        ranks: std::ops::Range<usize>,
        ready: impl Fn(usize) -> bool,
    ) -> Result<(), Error> {
        self.board_wait_until(ranks, ready, false)
    }

    /// Waits until `ready(rank)` holds or `rank` is gone, for every rank
    /// in `ranks`; the error names the first rank gone. Unlike
    /// [`board_wait`](Self::board_wait) it does not give up at the first
    /// rank gone: an owner of exposed buffers (`direct.rs`) must not leave
    /// while a live peer still copies.
    pub(crate) fn board_settle(
        &self,
        ranks: std::ops::Range<usize>,
        ready: impl Fn(usize) -> bool,
    ) -> Result<(), Error> {
        self.board_wait_until(ranks, ready, true)
    }

    /// [`board_wait`](Self::board_wait), or with `settle`
    /// [`board_settle`](Self::board_settle).
    fn board_wait_until(
        &self,
        ranks: std::ops::Range<usize>,
        ready: impl Fn(usize) -> bool,
        settle: bool,
    ) -> Result<(), Error> {
        if ranks.clone().all(&ready) {
            return Ok(());
        }
        self.rt
            .wait_until(|engine: &mut engine::Engine| {
                // The spin stays small (and inlined): liveness is looked
                // at out of line.
                if ranks.clone().all(&ready) {
                    return Some(Ok(()));
                }
                self.board_peers_gone(engine, ranks.clone(), &ready, settle)
            })
            .map_err(|error| Error::from_op(error, |rank| self.to_comm(rank)))
    }

    /// The liveness look of [`board_wait_until`](Self::board_wait_until)
    /// while some rank of `ranks` is not `ready`: the error of the first
    /// such rank gone (unless `settle`), or, with `settle`, the first
    /// error once every rank not ready is gone; `None` while one lives.
    #[inline(never)]
    fn board_peers_gone(
        &self,
        engine: &mut engine::Engine,
        ranks: std::ops::Range<usize>,
        ready: &impl Fn(usize) -> bool,
        settle: bool,
    ) -> Option<Result<(), engine::OpError>> {
        let (mut gone, mut awaited) = (None, false);
        for rank in ranks.filter(|&rank| !ready(rank)) {
            match engine.peer_gone_error(self.group.members()[rank]) {
                Some(error) if !settle => return Some(Err(error)),
                Some(error) => {
                    gone.get_or_insert(error);
                }
                None => awaited = true,
            }
        }
        (!awaited).then(|| gone.map_or(Ok(()), Err))
    }

    /// Ends call `k` on the boards with `error` (this rank is done with it).
    pub(crate) fn board_failed(&self, boards: &Boards, k: u64, error: Error) -> BoardOutcome {
        boards.done(k);
        BoardOutcome::Done(Err(self.error(error)))
    }

    /// A rooted call `k` off the root: waits for the root's publication and
    /// returns the length it announced on its board with how the root
    /// moves it (on the board or directly), or how this rank goes on when
    /// the root moves the data by messages (with it, or playing its
    /// schedule poisoned when `own` bytes disagree: `mismatch` of the
    /// root's length is the error).
    fn follow_root<T>(
        &self,
        boards: &Boards,
        k: u64,
        root: usize,
        own: usize,
        mismatch: impl Fn(usize) -> Error,
    ) -> Result<(usize, Mode), BoardOutcome> {
        if let Err(error) = self.board_wait(root..root + 1, |rank| boards.arrived(rank, k)) {
            return Err(self.board_failed(boards, k, error));
        }
        // A root publishes no poisoned length.
        let (len, mode) = Mode::decode(boards.length(root, k)).unwrap_or((0, Mode::Board));
        if mode != Mode::Messages {
            return Ok((len, mode));
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
        let k = self.next_board_call(boards);
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

    /// Broadcast of `buf` from `root` on the boards: its bytes up to `max`,
    /// above that straight from the root's memory (`direct.rs`) or by
    /// messages.
    pub(crate) fn board_bcast<T: Pod>(
        &self,
        boards: &Boards,
        buf: &mut [T],
        root: u32,
        max: usize,
    ) -> BoardOutcome {
        let k = self.next_board_call(boards);
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(buf);
        let root = root as usize;
        if boards.me() == root {
            if let Err(error) = self.board_wait(0..boards.len(), |_| boards.may_publish(k)) {
                return self.board_failed(boards, k, error);
            }
            let mode = self.board_mode(boards, Collective::Bcast, bytes.len(), max);
            let length = mode.encode(bytes.len());
            return match mode {
                Mode::Board => {
                    boards.publish(k, bytes, length);
                    boards.done(k);
                    BoardOutcome::Done(Ok(()))
                }
                Mode::Direct => {
                    let push = super::direct::PUSH_RANKS.contains(&boards.len());
                    BoardOutcome::Done(self.direct_bcast_root(boards, k, bytes, push))
                }
                Mode::Messages => {
                    boards.publish(k, &[], length);
                    boards.done(k);
                    BoardOutcome::Messages
                }
            };
        }
        let own = bytes.len();
        if own > max && super::direct::PUSH_RANKS.contains(&boards.len()) {
            // The root may write into the rank that shares its core.
            boards.note_cpu();
        }
        let mismatch = |len: usize| Error::CountMismatch {
            rank: Rank(root as u32),
            expected: own,
            actual: len,
        };
        let (len, mode) = match self.follow_root::<T>(boards, k, root, own, mismatch) {
            Ok(published) => published,
            Err(outcome) => return outcome,
        };
        if len != own {
            return self.board_failed(boards, k, mismatch(len));
        }
        if mode == Mode::Direct {
            if super::direct::pushed_rank(boards, root, k) == Some(boards.me()) {
                return BoardOutcome::Done(self.direct_bcast_pushed(boards, k, root, bytes));
            }
            return BoardOutcome::Done(self.direct_bcast_leaf(boards, k, (root, 0), bytes));
        }
        boards.read(root, k, bytes);
        boards.done(k);
        BoardOutcome::Done(Ok(()))
    }

    /// Scatter of the root's `send` (one block per rank) on the boards:
    /// the root publishes it (up to `max` bytes; above, the address of
    /// `send`, and every rank copies its block straight from the root's
    /// memory, or all go by messages) and each rank reads block `me`.
    /// `local` is the root's own check of its arguments (a root that fails
    /// it poisons the call, which its peers then fail too).
    pub(crate) fn board_scatter<T: Pod>(
        &self,
        boards: &Boards,
        (send, recv): (&[T], &mut [T]),
        root: u32,
        local: Result<(), Error>,
        max: usize,
    ) -> BoardOutcome {
        let k = self.next_board_call(boards);
        let (root, size) = (root as usize, boards.len());
        let out: &mut [u8] = bytemuck::cast_slice_mut(recv);
        let block = out.len();
        if boards.me() == root {
            if let Err(error) = self.board_wait(0..size, |_| boards.may_publish(k)) {
                return self.board_failed(boards, k, error);
            }
            if let Err(error) = local {
                boards.publish(k, &[], POISONED);
                return self.board_failed(boards, k, error);
            }
            let bytes: &[u8] = bytemuck::cast_slice(send);
            let mode = self.board_mode(boards, Collective::Scatter, bytes.len(), max);
            let length = mode.encode(bytes.len());
            return match mode {
                Mode::Board => {
                    boards.publish(k, bytes, length);
                    out.copy_from_slice(&bytes[root * block..(root + 1) * block]);
                    boards.done(k);
                    BoardOutcome::Done(Ok(()))
                }
                Mode::Direct => {
                    out.copy_from_slice(&bytes[root * block..(root + 1) * block]);
                    BoardOutcome::Done(self.direct_bcast_root(boards, k, bytes, false))
                }
                Mode::Messages => {
                    boards.publish(k, &[], length);
                    boards.done(k);
                    BoardOutcome::Messages
                }
            };
        }
        if let Err(error) = self.board_wait(root..root + 1, |rank| boards.arrived(rank, k)) {
            return self.board_failed(boards, k, error);
        }
        let Some((len, mode)) = Mode::decode(boards.length(root, k)) else {
            let aborted = Error::PeerAborted {
                rank: Rank(root as u32),
            };
            return self.board_failed(boards, k, aborted);
        };
        let own = block * size;
        let mismatch = Error::CountMismatch {
            rank: Rank(root as u32),
            expected: own,
            actual: len,
        };
        match mode {
            _ if len != own && mode == Mode::Messages => {
                boards.done(k);
                BoardOutcome::Reject {
                    count: len / size / size_of::<T>().max(1),
                    error: mismatch,
                }
            }
            _ if len != own => self.board_failed(boards, k, mismatch),
            Mode::Messages => {
                boards.done(k);
                BoardOutcome::Messages
            }
            Mode::Direct => {
                let leaf = self.direct_bcast_leaf(boards, k, (root, boards.me() * block), out);
                BoardOutcome::Done(leaf)
            }
            Mode::Board => {
                boards.read_at(root, k, boards.me() * block, out);
                boards.done(k);
                BoardOutcome::Done(Ok(()))
            }
        }
    }

    /// The part every rank plays alike in call `k` of a symmetric
    /// collective (allreduce, alltoall) on an operand of `bytes` bytes
    /// that moves by `mode`: publish `data` (the operand on the board, the
    /// addresses of its buffers if direct, nothing by messages; a poisoned
    /// length if `local` failed), wait for every rank's publication, and
    /// decide from all of them ([`board_decide`](Self::board_decide)).
    #[allow(clippy::too_many_arguments)]
    fn board_symmetric(
        &self,
        boards: &Boards,
        k: u64,
        bytes: usize,
        data: &[u8],
        mode: Mode,
        local: Result<(), Error>,
        unit: usize,
    ) -> Result<Mode, BoardOutcome> {
        let everyone = 0..boards.len();
        let failed = |error: Error| self.board_failed(boards, k, error);
        self.board_wait(everyone.clone(), |_| boards.may_publish(k))
            .map_err(failed)?;
        if local.is_err() {
            boards.publish(k, &[], POISONED);
        } else if mode == Mode::Messages {
            // By messages, at once: ranks whose counts agree all land here.
            boards.publish(k, &[], mode.encode(bytes));
            boards.done(k);
            return Err(BoardOutcome::Messages);
        } else {
            boards.publish(k, data, mode.encode(bytes));
        }
        self.board_wait(everyone, |rank| boards.arrived(rank, k))
            .map_err(failed)?;
        self.board_decide(boards, k, bytes, mode, local, unit)
    }

    /// Decides call `k` of a symmetric collective once every rank has
    /// published, the same way on every rank. `Ok` with the mode when
    /// every rank published an operand of `bytes` bytes to move the same
    /// way, on the board or directly: the caller then reads and says it is
    /// done with `k`. Ranks whose modes differ (their limits do) all go by
    /// messages; a rank that moves its data by messages is joined there,
    /// or its schedule played poisoned (counts that disagree, `unit` bytes
    /// per element of its count); other disagreements fail the call.
    pub(crate) fn board_decide(
        &self,
        boards: &Boards,
        k: u64,
        bytes: usize,
        mode: Mode,
        local: Result<(), Error>,
        unit: usize,
    ) -> Result<Mode, BoardOutcome> {
        let failed = |error: Error| self.board_failed(boards, k, error);
        // Decoded again at each look: no allocation on the small path.
        let published = || (0..boards.len()).map(|rank| Mode::decode(boards.length(rank, k)));
        // A rank that moves its data by messages waits for ours there: join
        // it (a rank with wrong arguments plays poisoned there), or play its
        // schedule poisoned if our counts disagree.
        let by_messages = published().enumerate().find_map(|(rank, p)| match p {
            Some((len, Mode::Messages)) => Some((rank, len)),
            _ => None,
        });
        if let Some((rank, len)) = by_messages {
            boards.done(k);
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
        let disagree = published().enumerate().find_map(|(rank, p)| {
            let len = p.map_or(0, |(len, _)| len);
            (len != bytes).then_some(Error::CountMismatch {
                rank: Rank(rank as u32),
                expected: bytes,
                actual: len,
            })
        });
        if let Some(error) = disagree {
            return Err(failed(error));
        }
        if published().any(|p| p.map(|(_, m)| m) != Some(mode)) {
            boards.done(k);
            return Err(BoardOutcome::Messages);
        }
        Ok(mode)
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
        let k = self.next_board_call(boards);
        let local = match send {
            Some(send) if send.len() != recv.len() => Err(Error::BufferLength {
                argument: Argument::RecvBuffer,
                expected: send.len(),
                actual: recv.len(),
            }),
            _ => Ok(()),
        };
        let operand: &[T] = send.unwrap_or(recv);
        let bytes = size_of_val(operand);
        let mode = self.board_mode(boards, Collective::Allreduce, bytes, max);
        let addresses = super::direct::addresses(&[operand.as_ptr().cast(), recv.as_ptr().cast()]);
        let data: &[u8] = match mode {
            Mode::Board => bytemuck::cast_slice(operand),
            Mode::Direct => &addresses,
            Mode::Messages => &[],
        };
        match self.board_symmetric(boards, k, bytes, data, mode, local, size_of::<T>()) {
            Err(outcome) => return outcome,
            Ok(Mode::Direct) => {
                return BoardOutcome::Done(self.direct_allreduce(boards, k, send, recv, op));
            }
            Ok(_) => {}
        }
        boards.read(0, k, bytemuck::cast_slice_mut(recv));
        // On the stack for small operands: this is the latency path.
        let mut scratch: smallvec::SmallVec<[T; 16]> = smallvec::smallvec![T::zeroed(); recv.len()];
        for rank in 1..boards.len() {
            boards.read(rank, k, bytemuck::cast_slice_mut(&mut scratch));
            op.reduce(&scratch, recv, false);
        }
        boards.done(k);
        BoardOutcome::Done(Ok(()))
    }

    /// All-to-all or allgather on the boards (`spread`): every rank
    /// publishes its whole `send` and reads its block (all-to-all: block
    /// `me`; allgather: the whole) of every board, or, above `max`, of
    /// every rank's `send` in its memory. `local` is this rank's own check
    /// of its arguments.
    #[inline]
    pub(crate) fn board_exchange<T: Pod>(
        &self,
        boards: &Boards,
        spread: Spread,
        send: &[T],
        recv: &mut [T],
        local: Result<(), Error>,
        max: usize,
    ) -> BoardOutcome {
        let k = self.next_board_call(boards);
        let size = boards.len();
        let bytes = size_of_val(send);
        // Bytes per element of the count a schedule is built for.
        let (collective, unit) = match spread {
            Spread::Personal => (Collective::Alltoall, size_of::<T>() * size),
            Spread::Same => (Collective::Allgather, size_of::<T>()),
        };
        let mode = self.board_mode(boards, collective, bytes, max);
        let addresses = super::direct::addresses(&[send.as_ptr().cast()]);
        let data: &[u8] = match mode {
            Mode::Board => bytemuck::cast_slice(send),
            Mode::Direct => &addresses,
            Mode::Messages => &[],
        };
        let out: &mut [u8] = bytemuck::cast_slice_mut(recv);
        if mode == Mode::Direct && local.is_ok() {
            let send = bytemuck::cast_slice(send);
            return self.direct_exchange(boards, k, spread, send, out, unit);
        }
        if let Err(outcome) = self.board_symmetric(boards, k, bytes, data, mode, local, unit) {
            return outcome;
        }
        let block = spread.block(bytes, size);
        let taken = spread.offset(boards.me(), block);
        for (rank, chunk) in out.chunks_exact_mut(block.max(1)).enumerate().take(size) {
            boards.read_at(rank, k, taken, chunk);
        }
        boards.done(k);
        BoardOutcome::Done(Ok(()))
    }
}
