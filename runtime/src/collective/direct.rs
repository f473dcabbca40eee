//! Large collectives of the world communicator copied straight between the
//! processes, when every rank shares this host and may read and write the
//! others' memory (`process_vm_readv`, `process_vm_writev`).
//!
//! Above the board limits an operand does not fit the boards
//! (`transport/shm/board.rs`), but a rank can still publish the *addresses*
//! of its buffers there. Its peers then copy what they need straight from
//! (or into) its memory, each in its own time:
//!
//! - broadcast: every rank copies the root's buffer, except one that the
//!   root writes into itself at 3 and 4 ranks (the rank sharing its core,
//!   see [`choose_pushed`]); the root leaves once all are done;
//! - gather: every rank writes its block into the root's receive buffer,
//!   then publishes its length; the root leaves once all have;
//! - all-to-all: every rank copies block `me` of every rank's send buffer;
//! - allreduce: every rank reduces one slice (`1/p` of the operand) from
//!   every rank's operand in rank order, so that any op gives the same
//!   result everywhere, into its own result buffer; it marks that slice
//!   ready (the board's *stage*), then copies the other slices from the
//!   other ranks' result buffers;
//! - reduce (from three ranks on): the ranks claim 64 KiB pieces of the
//!   operand in turn on the root's board, and reduce each from every
//!   rank's operand in rank order into the root's result buffer.
//!
//! With messages, the same collectives take `log p` to `2(p - 1)` steps,
//! each a hop that waits for its receiver to be scheduled: on a host with
//! more ranks than cores that is most of their time. Here a rank waits for
//! its peers at most twice (three times for allreduce) and copies each byte
//! once. An owner of exposed buffers leaves only when every peer is done
//! with the call (or gone): its buffers are never read or written after it
//! returns. The measurements that set `MPR_SHM_DIRECT_MIN` are beside its
//! default in `tuning.rs`.

use std::sync::atomic::Ordering;

use bytemuck::Pod;
use mpr_collectives::op::Op;

use super::board::{BoardOutcome, Mode, Spread};
use crate::comm::CommInner;
use crate::engine::ProtocolError;
use crate::error::Error;
use crate::transport::shm::board::{Boards, MAX_PIECES, POISONED, current_cpu};
use crate::{Rank, engine};

/// The bytes a rank publishes for the addresses of its buffers (at most
/// two), without allocating: every board call computes them.
pub(crate) fn addresses(buffers: &[*const u8]) -> smallvec::SmallVec<[u8; 16]> {
    buffers
        .iter()
        .flat_map(|&buffer| (buffer as u64).to_le_bytes())
        .collect()
}

/// Address `index` that `rank` published for call `k`.
fn published_address(boards: &Boards, rank: usize, k: u64, index: usize) -> u64 {
    let mut word = [0u8; 8];
    boards.read_at(rank, k, index * 8, &mut word);
    u64::from_le_bytes(word)
}

/// The error of a failed copy from or to `rank`'s memory.
fn memory_error(rank: usize, errno: i32) -> Error {
    let rank = Rank(rank as u32);
    if errno == nix::errno::Errno::ESRCH as i32 {
        Error::PeerFailed { rank }
    } else {
        Error::Protocol {
            rank,
            error: ProtocolError::PullFailed { peer: rank, errno },
        }
    }
}

/// The rank a direct bcast's root writes into itself when [`PUSH_RANKS`]
/// hold the communicator (the others copy from the root): the root would
/// otherwise only wait while ranks take turns to copy. The root publishes
/// its choice beside its buffer's address, so every rank knows it.
///
/// The root picks a rank that last said it runs on the root's CPU
/// ([`Boards::note_cpu`]): where ranks outnumber cores, that rank could
/// not copy while the root runs anyway, and the ranks of the other cores
/// copy meanwhile. With none there, it picks `root + 2`, the rank that
/// shares the root's core when ranks run round robin on two cores (bound,
/// or as they were forked). Measured 2026-11-26, 4 ranks, medians of 5
/// alternating runs, µs, pushing `root - 1` against `root + 2`, 64 / 128
/// / 256 / 512 KiB / 1 MiB: unbound 9.82 / 18.2 / 40.0 / 67.2 / 147
/// against 5.91 / 9.05 / 15.6 / 28.6 / 77.7; bound round robin 10.2 /
/// 21.8 / 42.4 / 71.9 / 142 against 4.60 / 7.16 / 11.9 / 24.8 / 77.3.
/// Unbound, the kernel pairs the root with any of the three, and the
/// fixed `root + 2` was right in about one run of three. Measured
/// 2026-11-26, 4 ranks unbound, medians of 8 alternating runs, µs, fixed
/// `root + 2` against the rank on the root's CPU: 9.34 / 18.0 / 34.9 /
/// 75.3 / 143 against 6.82 / 10.3 / 16.9 / 33.8 / 97.3; bound 6.17 / 10.7
/// / 18.3 / 35.6 / 96.2 against 6.17 / 9.75 / 17.0 / 34.0 / 96.0.
fn choose_pushed(boards: &Boards, root: usize) -> usize {
    let size = boards.len();
    let here = Some(current_cpu());
    std::iter::once(2)
        .chain((1..size).filter(|&step| step != 2))
        .map(|step| (root + step) % size)
        .find(|&rank| boards.cpu(rank) == here)
        .unwrap_or((root + 2) % size)
}

/// The rank the root of direct bcast call `k` said it writes into
/// ([`choose_pushed`]), if any: read once its publication has arrived.
pub(crate) fn pushed_rank(boards: &Boards, root: usize, k: u64) -> Option<usize> {
    let pushed = published_address(boards, root, k, 1);
    usize::try_from(pushed)
        .ok()
        .filter(|&rank| rank < boards.len())
}

/// Communicator sizes whose direct bcast root writes into one rank itself
/// ([`choose_pushed`]). Measured 2026-11-26 (medians of 7-11 alternating
/// runs, µs, every rank pulling against the root writing one, 64 / 128 /
/// 256 / 512 KiB / 1 MiB): 3 ranks 10.1 / 21.8 / 44.8 / 86.2 / 176 against
/// 4.87 / 7.49 / 11.2 / 24.6 / 83.3; 4 ranks 6.12 / 13.3 / 31.6 / 70.8
/// against 5.71 / 8.29 / 16.0 / 40.4 (1 MiB from 158 against 116 to 164
/// against 194 across runs); 8 ranks 7.85 / 15.7 / 38.2 / 83.6 / 203
/// against 7.98 / 15.7 / 39.5 / 81.4 / 220: no gain once the root is one
/// of many ranks waiting for a core.
pub(crate) const PUSH_RANKS: std::ops::RangeInclusive<usize> = 3..=4;

/// Smallest receive buffer of a direct exchange whose copies run in reverse
/// order on every other call: the buffers a call touches last are still in
/// the core's cache when the next call starts with them, where a fixed
/// order finds them evicted whenever a call's buffers outgrow the cache.
/// Measured 2026-11-26, medians of alternating runs of two builds, µs,
/// fixed order against alternating, 512 KiB / 1 MiB blocks: 2 ranks (10
/// runs) alltoall 60.2 / 179 against 49.1 / 154, allgather 58.0 / 161
/// against 50.9 / 151 (the rank's own 1 MiB copy took 70 µs after the
/// peer's and half that after its own). 4 and 8 ranks on 2 cores (4-6
/// runs), 128 KiB-1 MiB blocks: 0.89-1.02 of the time, no worse than
/// the noise at first; in later tables and a 6-run A/B the 8-rank
/// alltoall of 1 MiB blocks was 3-10% slower alternating (5 019 against
/// 5 353 µs bound). Where ranks share a core, the others' calls evict
/// what this rank's call left in the cache, so only a host with a core
/// per rank alternates. A 2 MiB cache per core here.
const ALTERNATE_FROM: usize = 1 << 20;

/// Bytes of a piece of a direct reduce's operand (see
/// [`CommInner::direct_reduce`]).
const REDUCE_PIECE: usize = 64 << 10;

/// The pieces a direct reduce of `count` elements of `unit` bytes cuts its
/// operand into: [`REDUCE_PIECE`] bytes each, at most [`MAX_PIECES`].
/// Measured 2026-11-26, 4 ranks bound, medians of 6 alternating runs, µs,
/// 128 KiB / 256 KiB / 512 KiB / 1 MiB, pieces of 64 KiB against 32 KiB:
/// 33.1 / 53.9 / 128 / 283 against 32.4 / 61.8 / 146 / 320; 128 KiB and
/// 256 KiB pieces within ±4% of 64 KiB; at least one piece per rank (32
/// KiB pieces at 128 KiB) 34.0 against 28.9.
fn reduce_pieces(count: usize, unit: usize) -> usize {
    let pieces = (count * unit).div_ceil(REDUCE_PIECE);
    pieces.min(MAX_PIECES).min(count).max(1)
}

/// Slice `rank` of `count` elements split over `size` ranks.
fn slice(rank: usize, size: usize, count: usize) -> std::ops::Range<usize> {
    rank * count / size..(rank + 1) * count / size
}

impl CommInner {
    /// Runs `act(rank)` for every rank of `pending` as soon as
    /// `ready(rank)` holds, in whatever order they become ready; the error
    /// is the first of `act`, or that a rank still pending is gone.
    fn board_each(
        &self,
        mut pending: Vec<usize>,
        ready: impl Fn(usize) -> bool,
        mut act: impl FnMut(usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut result = Ok(());
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|&rank| {
                if !ready(rank) {
                    return true;
                }
                let acted = act(rank);
                result = std::mem::replace(&mut result, Ok(())).and(acted);
                false
            });
            if pending.len() < before {
                continue;
            }
            let waited = self.rt.wait_until(|engine: &mut engine::Engine| {
                if pending.iter().any(|&rank| ready(rank)) {
                    return Some(Ok(()));
                }
                let mut gone = pending
                    .iter()
                    .filter_map(|&rank| engine.peer_gone_error(self.group.members()[rank]));
                gone.next().map(Err)
            });
            if let Err(error) = waited {
                let error = Error::from_op(error, |rank| self.to_comm(rank));
                return result.and(Err(error));
            }
        }
        result
    }

    /// Bcast (or scatter) call `k` from this rank, the root, directly
    /// from `bytes`: publish its address, write `bytes` into the buffer of
    /// the rank [`choose_pushed`] names if `push` (a bcast), and leave
    /// once every rank has copied it.
    pub(crate) fn direct_bcast_root(
        &self,
        boards: &Boards,
        k: u64,
        bytes: &[u8],
        push: bool,
    ) -> Result<(), Error> {
        let me = boards.me();
        let target = push.then(|| choose_pushed(boards, me));
        let mut published = addresses(&[bytes.as_ptr()]);
        published.extend_from_slice(&target.map_or(u64::MAX, |rank| rank as u64).to_le_bytes());
        boards.publish(k, &published, Mode::Direct.encode(bytes.len()));
        let mut pushed = Ok(());
        if let Some(target) = target {
            pushed = self.direct_bcast_push(boards, k, target, bytes);
            boards.stage(k, pushed.is_err());
        }
        let result = self.board_settle(0..boards.len(), |rank| {
            rank == me || boards.is_done(rank, k)
        });
        boards.done(k);
        pushed.and(result).map_err(|error| self.error(error))
    }

    /// The root's write of bcast call `k` into the buffer of `target`,
    /// once it has exposed it; nothing if that rank failed first (it
    /// reports its own error).
    fn direct_bcast_push(
        &self,
        boards: &Boards,
        k: u64,
        target: usize,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let exposed = |rank: usize| boards.arrived(rank, k) || boards.is_done(rank, k);
        self.board_wait(target..target + 1, exposed)?;
        let length = Mode::Direct.encode(bytes.len());
        if !boards.arrived(target, k) || boards.length(target, k) != length {
            return Ok(());
        }
        let address = published_address(boards, target, k, 0);
        boards
            .copy_to(target, address, bytes)
            .map_err(|errno| memory_error(target, errno))
    }

    /// Bcast call `k` on the rank the root writes into (see
    /// [`choose_pushed`]): expose `bytes` and wait until the root has
    /// written them.
    pub(crate) fn direct_bcast_pushed(
        &self,
        boards: &Boards,
        k: u64,
        root: usize,
        bytes: &mut [u8],
    ) -> Result<(), Error> {
        let result = self
            .board_wait(0..boards.len(), |_| boards.may_publish(k))
            .and_then(|()| {
                let length = Mode::Direct.encode(bytes.len());
                boards.publish(k, &addresses(&[bytes.as_ptr()]), length);
                self.board_wait(root..root + 1, |rank| boards.staged(rank, k).is_some())
            })
            .and_then(|()| match boards.staged(root, k) {
                Some(true) => Err(Error::PeerAborted {
                    rank: Rank(root as u32),
                }),
                _ => Ok(()),
            });
        boards.done(k);
        result.map_err(|error| self.error(error))
    }

    /// Bcast (or scatter) call `k` off the root: copy the root's buffer
    /// from `offset` into `bytes` (which the root's length covers).
    pub(crate) fn direct_bcast_leaf(
        &self,
        boards: &Boards,
        k: u64,
        (root, offset): (usize, usize),
        bytes: &mut [u8],
    ) -> Result<(), Error> {
        let address = published_address(boards, root, k, 0).wrapping_add(offset as u64);
        let result = boards
            .copy_from(root, address, bytes)
            .map_err(|errno| memory_error(root, errno));
        boards.done(k);
        result.map_err(|error| self.error(error))
    }

    /// Gather call `k` to this rank, the root, directly into `recv`:
    /// publish its address, wait until every rank has written its block
    /// (and published its length), and check the lengths.
    pub(crate) fn direct_gather_root(
        &self,
        boards: &Boards,
        k: u64,
        send: &[u8],
        recv: &mut [u8],
    ) -> Result<(), Error> {
        let length = Mode::Direct.encode(send.len());
        boards.publish(k, &addresses(&[recv.as_ptr()]), length);
        self.gather_root_collect(boards, k, send, recv, true)
    }

    /// Gather call `k` off the root: write `send` into the root's receive
    /// buffer, then publish its length (poisoned if the write failed). The
    /// caller says it is done with `k`.
    pub(crate) fn direct_gather_leaf(
        &self,
        boards: &Boards,
        k: u64,
        root: usize,
        send: &[u8],
    ) -> Result<(), Error> {
        let offset = (boards.me() * send.len()) as u64;
        let address = published_address(boards, root, k, 0).wrapping_add(offset);
        let result = boards
            .copy_to(root, address, send)
            .map_err(|errno| memory_error(root, errno));
        let length = match result {
            Ok(()) => Mode::Direct.encode(send.len()),
            Err(_) => POISONED,
        };
        boards.publish(k, &[], length);
        result.map_err(|error| self.error(error))
    }

    /// All-to-all or allgather call `k` (`spread`) of `send` into `recv`,
    /// which this rank moves directly (its arguments are right): publish
    /// the address of `send`, then copy this rank's block (all-to-all:
    /// block `me`; allgather: the whole) of each rank's send buffer as soon
    /// as that rank has published the same length to move directly
    /// (starting with its own, then the next rank, so that the ranks spread
    /// over the buffers; on a host with a core per rank, every other call
    /// of [`ALTERNATE_FROM`] bytes or more goes the other way round and
    /// copies its own last), and decide
    /// the call once every rank has published, as for any symmetric call
    /// ([`board_decide`](CommInner::board_decide)): copies made before a
    /// call falls back to messages are overwritten there, and are
    /// discarded with a failed one. A rank leaves once every rank has
    /// copied its block (each says so for each owner), not when all are
    /// done with everything. `unit` is the bytes of one element of the
    /// schedule's count.
    pub(crate) fn direct_exchange(
        &self,
        boards: &Boards,
        k: u64,
        spread: Spread,
        send: &[u8],
        recv: &mut [u8],
        unit: usize,
    ) -> BoardOutcome {
        let (me, size) = (boards.me(), boards.len());
        let block = spread.block(send.len(), size);
        // Where this rank's block lies in every rank's `send`.
        let taken = spread.offset(me, block);
        if let Err(error) = self.board_wait(0..size, |_| boards.may_publish(k)) {
            return self.board_failed(boards, k, error);
        }
        let length = Mode::Direct.encode(send.len());
        boards.publish(k, &addresses(&[send.as_ptr()]), length);
        let reversed = recv.len() >= ALTERNATE_FROM
            && !self.rt.tuning().oversubscribed
            && self.direct_exchanges.fetch_add(1, Ordering::Relaxed) % 2 == 1;
        let own = (me * block..(me + 1) * block, taken..taken + block);
        if !reversed {
            recv[own.0.clone()].copy_from_slice(&send[own.1.clone()]);
        }
        let mut others: Vec<usize> = (1..size).map(|step| (me + step) % size).collect();
        if reversed {
            others.reverse();
        }
        let mut copied = Ok(());
        let arrived = self.board_each(
            others,
            |rank| boards.arrived(rank, k),
            |rank| {
                if boards.length(rank, k) != length {
                    return Ok(()); // The decision below fails or falls back.
                }
                let address = published_address(boards, rank, k, 0).wrapping_add(taken as u64);
                let chunk = &mut recv[rank * block..(rank + 1) * block];
                if let Err(errno) = boards.copy_from(rank, address, chunk) {
                    copied =
                        std::mem::replace(&mut copied, Ok(())).and(Err(memory_error(rank, errno)));
                }
                boards.copied_from(rank, k);
                Ok(())
            },
        );
        if reversed {
            recv[own.0].copy_from_slice(&send[own.1]);
        }
        if let Err(error) = arrived {
            return self.board_failed(boards, k, error);
        }
        let unit = unit.max(1);
        if let Err(outcome) = self.board_decide(boards, k, send.len(), Mode::Direct, Ok(()), unit) {
            return outcome;
        }
        boards.done(k);
        let settled = self.board_settle(0..size, |rank| rank == me || boards.has_copied(rank, k));
        BoardOutcome::Done(copied.and(settled).map_err(|error| self.error(error)))
    }

    /// Allreduce call `k`, agreed direct by every rank (each published the
    /// addresses of its operand and of its `recv`): reduce this rank's
    /// slice, mark it ready, copy the others' slices from their `recv` as
    /// they become ready, and leave once every rank is done with ours.
    pub(crate) fn direct_allreduce<T: Pod>(
        &self,
        boards: &Boards,
        k: u64,
        send: Option<&[T]>,
        recv: &mut [T],
        op: &dyn Op<T>,
    ) -> Result<(), Error> {
        let (me, size, count) = (boards.me(), boards.len(), recv.len());
        let unit = size_of::<T>();
        let mut result = self.direct_reduce_slice(boards, k, send, recv, op);
        boards.stage(k, result.is_err());
        if result.is_ok() {
            let others = (1..size).map(|step| (me + step) % size).collect();
            let ready = |rank: usize| boards.staged(rank, k).is_some();
            result = self.board_each(others, ready, |rank| {
                if boards.staged(rank, k) == Some(true) {
                    return Err(Error::PeerAborted {
                        rank: Rank(rank as u32),
                    });
                }
                let range = slice(rank, size, count);
                let offset = (range.start * unit) as u64;
                let address = published_address(boards, rank, k, 1).wrapping_add(offset);
                boards
                    .copy_from(rank, address, bytemuck::cast_slice_mut(&mut recv[range]))
                    .map_err(|errno| memory_error(rank, errno))
            });
        }
        boards.done(k);
        let settled = self.board_settle(0..size, |rank| boards.is_done(rank, k));
        result.and(settled).map_err(|error| self.error(error))
    }

    /// This rank's slice of a direct allreduce: `recv[slice] = d_0 ∘ … ∘
    /// d_{p-1}` over that slice of every rank's operand, in rank order.
    fn direct_reduce_slice<T: Pod>(
        &self,
        boards: &Boards,
        k: u64,
        send: Option<&[T]>,
        recv: &mut [T],
        op: &dyn Op<T>,
    ) -> Result<(), Error> {
        let (me, size) = (boards.me(), boards.len());
        let range = slice(me, size, recv.len());
        // In place, the accumulator overwrites our own operand's slice
        // unless rank 0's comes from here.
        let saved: Option<Vec<T>> = match send {
            None if me != 0 => Some(recv[range.clone()].to_vec()),
            _ => None,
        };
        let own: Option<&[T]> = match (send, &saved) {
            (Some(send), _) => Some(&send[range.clone()]),
            (None, Some(saved)) => Some(saved),
            (None, None) => None,
        };
        let start = range.start;
        mpr_collectives::with_scratch(range.len(), |scratch| {
            self.direct_fold(boards, k, own, &mut recv[range], scratch, start, op)
        })
    }

    /// `acc = d_0 ∘ … ∘ d_{p-1}` over the elements from `start` of every
    /// rank's operand (published as its first address), in rank order:
    /// this rank's part is `own`, or, with `None` on rank 0 only, already
    /// in `acc`. `scratch` holds as many elements as `acc`.
    #[allow(clippy::too_many_arguments)]
    fn direct_fold<T: Pod>(
        &self,
        boards: &Boards,
        k: u64,
        own: Option<&[T]>,
        acc: &mut [T],
        scratch: &mut [T],
        start: usize,
        op: &dyn Op<T>,
    ) -> Result<(), Error> {
        let (me, size) = (boards.me(), boards.len());
        debug_assert!(own.is_some() || me == 0, "only rank 0 folds in place");
        let offset = (start * size_of::<T>()) as u64;
        for rank in 0..size {
            if rank == me {
                match (rank, own) {
                    (_, None) => {}
                    (0, Some(own)) => acc.copy_from_slice(own),
                    (_, Some(own)) => op.reduce(own, acc, false),
                }
                continue;
            }
            let into: &mut [T] = if rank == 0 { &mut *acc } else { &mut *scratch };
            let address = published_address(boards, rank, k, 0).wrapping_add(offset);
            boards
                .copy_from(rank, address, bytemuck::cast_slice_mut(into))
                .map_err(|errno| memory_error(rank, errno))?;
            if rank != 0 {
                op.reduce(scratch, acc, false);
            }
        }
        Ok(())
    }

    /// Reduce call `k` to `root`, agreed direct by every rank (the root
    /// published the addresses of its operand and of its `recv`, the
    /// others of their operands). The operand is cut into pieces
    /// ([`reduce_pieces`]) that the ranks claim from the root's board one
    /// at a time: a rank reduces its piece of every operand, in rank
    /// order, into the root's `recv` (the root in place, the others by
    /// writing it there), and claims the next. Ranks that hold a core do
    /// the work while the others wait for one: an operand is read where
    /// it lies, whether its owner runs or not. Every rank leaves once all
    /// pieces are finished (or, if one failed, once every rank is done).
    /// `recv` is the root's only.
    pub(crate) fn direct_reduce<T: Pod>(
        &self,
        boards: &Boards,
        k: u64,
        root: usize,
        send: &[T],
        recv: &mut [T],
        op: &dyn Op<T>,
    ) -> Result<(), Error> {
        let (me, size, count) = (boards.me(), boards.len(), send.len());
        let pieces = reduce_pieces(count, size_of::<T>());
        let longest = count.div_ceil(pieces);
        let mut result = mpr_collectives::with_scratch(2 * longest, |scratch: &mut [T]| {
            let (acc, scratch) = scratch.split_at_mut(longest);
            while let Some(piece) = boards.claim(root, k, pieces) {
                let range = slice(piece, pieces, count);
                let (start, len) = (range.start, range.len());
                let own = Some(&send[range.clone()]);
                if me == root {
                    let into = &mut recv[range];
                    self.direct_fold(boards, k, own, into, &mut scratch[..len], start, op)?;
                } else {
                    let acc = &mut acc[..len];
                    self.direct_fold(boards, k, own, acc, &mut scratch[..len], start, op)?;
                    let offset = (start * size_of::<T>()) as u64;
                    let address = published_address(boards, root, k, 1).wrapping_add(offset);
                    boards
                        .copy_to(root, address, bytemuck::cast_slice(acc))
                        .map_err(|errno| memory_error(root, errno))?;
                }
                boards.finish(root, k, pieces);
            }
            Ok(())
        });
        let failed = |rank: usize| boards.staged(rank, k) == Some(true);
        let all_finished = || boards.finished(root, k) >= pieces;
        if result.is_err() {
            boards.stage(k, true);
        } else {
            let over = |_| all_finished() || (0..size).any(failed);
            result = self.board_wait(0..size, over).and_then(|()| {
                match (0..size).find(|&rank| failed(rank)) {
                    Some(rank) if !all_finished() => Err(Error::PeerAborted {
                        rank: Rank(rank as u32),
                    }),
                    _ => Ok(()),
                }
            });
        }
        boards.done(k);
        // Unfinished, a rank may still read our operand or write into the
        // root's `recv`.
        let mut settled = Ok(());
        if !all_finished() {
            settled = self.board_settle(0..size, |rank| boards.is_done(rank, k));
        }
        result.and(settled).map_err(|error| self.error(error))
    }
}
