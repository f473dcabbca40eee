//! The collective board: a page of counters and two small buffers in each
//! rank's segment, which only the owner writes and every local peer reads.
//! Small collectives of a communicator whose ranks all share memory run on
//! the boards instead of messages (`collective/board.rs`): no matching, no
//! rings, one store to publish and one load per peer to look.
//!
//! Every call on the boards has a number `k` (1, 2, ...), the same on every
//! rank since collectives are called in the same order. A rank publishes
//! call `k` by writing its bytes into buffer `k % 2` and their length into
//! length word `k % 2`, then storing `k` into its *arrived* counter
//! (release); a reader that loads *arrived* `>= k` (acquire) may read them.
//! When a rank has read everything it needs of call `k`, it stores `k`
//! into its *done* counter. An owner writes buffer `k % 2` again (call
//! `k + 2`) only once every peer's *done* is `>= k`: two buffers let a rank
//! run one call ahead of the slowest reader without waiting.
//!
//! A rank that has started call `k` (published, arrived at or released
//! it) has returned from every call before it, so it reads nothing of
//! them any more: each rank keeps, per peer, the latest call it knows the
//! peer done with from what it saw of the peer's counters, and looks at
//! the peer's *done* only when that is not enough. The peer's *done* line
//! is then rarely loaded while the peer writes it: measured 2026-11-26
//! (2 ranks, medians of 5 alternating runs, µs, 4 B), gather 0.27 → 0.23,
//! bcast 0.27 → 0.23, alltoall 0.38 → 0.29, allgather 0.40 → 0.29,
//! scatter 0.27 → 0.20, allreduce 0.36 → 0.33; the barrier, which never
//! looks at *done*, 0.19 → 0.21 (15 alternations).
//!
//! Each segment holds several boards (`segment::BOARDS`): board 0 serves
//! the world communicator, the others the communicators made from it
//! (`collective/board_number.rs` hands them out). A communicator's first
//! call is numbered past every call its members ever made on that board
//! (its *base*), so every counter only grows and no stale value from an
//! earlier communicator can pass for a new call.
//!
//! Operands too large for a buffer can still skip messages when every rank
//! can read and write the others' memory (`process_vm_readv`): a rank then
//! publishes the *addresses* of its buffers instead of their bytes
//! ([`IN_MEMORY`]), and its peers copy straight between the processes (see
//! `collective/direct.rs`). Such a call's owner leaves only once every
//! peer is done with it, since its peers read its buffers, not the board.

use std::os::unix::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::PeerMemory;

use super::doorbell::Ringer;
use super::fences;
use super::segment::{BOARD_BYTES, BOARD_INLINE_BYTES, BOARD_PEERS, Mapping};

/// Counter indexes in a board's counter page.
const ARRIVED: usize = 0;
const DONE: usize = 1;
/// The lengths of the two buffers (calls of even and odd numbers) share
/// the line of [`ARRIVED`], as words 1 and 2: a peer that sees a call
/// arrive has its length in the same transfer, one cache miss instead of
/// two. Measured 2026-11-26, medians of 10 alternating runs of two builds,
/// µs, lengths on lines of their own against beside the arrival: 2 ranks,
/// alltoall of 4 / 32 / 128 B 0.46 / 0.48 / 0.49 against 0.44 / 0.44 /
/// 0.45, allreduce of 4 / 256 B 0.48 / 0.58 against 0.43 / 0.52, gather
/// and bcast alike; 4 ranks bound (8 runs), allreduce of 4 B-1 KiB
/// 0.95-0.99 of the time, alltoall within ±3%.
const LENGTH_WORD: usize = 1;
const RELEASED: usize = 4;
/// A direct call's midpoint (an allreduce's reduced slice is ready).
const STAGE: usize = 5;
/// The CPU the owner last said it ran on, plus one (0: never said; see
/// [`Boards::note_cpu`]).
const CPU: usize = 6;
/// The pieces of a shared piece of work that ranks have claimed, and
/// finished, in the owner's call (see [`Boards::claim`]).
const CLAIMED: usize = 7;
const FINISHED: usize = 8;

/// Bits of a [`CLAIMED`] or [`FINISHED`] value that count pieces; the
/// call's number fills the others, so a new call starts from zero.
const PIECE_BITS: u32 = 16;
/// Most pieces a shared piece of work is cut into.
pub(crate) const MAX_PIECES: usize = (1 << PIECE_BITS) - 1;

/// Set in a [`STAGE`] value when the owner failed its part of the call.
const STAGE_FAILED: u64 = 1 << 63;

/// The length a rank publishes when its own arguments were wrong: its
/// peers fail the call instead of waiting for it.
pub(crate) const POISONED: u64 = u64::MAX;

/// Set in a published length when the bytes are on the board (clear: the
/// rank moves them by messages).
pub(crate) const ON_BOARD: u64 = 1 << 62;

/// Set in a published length when the board holds the addresses of the
/// rank's buffers, which its peers copy from (or into) directly.
pub(crate) const IN_MEMORY: u64 = 1 << 61;

/// Set in a stored length (never in one [`Boards::length`] returns) when
/// the payload of at most [`BOARD_INLINE_BYTES`] lies in the line of
/// [`ARRIVED`] rather than in the buffer: a peer that sees the call arrive
/// has the payload in the same transfer, one cache miss instead of two.
/// Measured 2026-11-26, 2 ranks, medians of 10 alternating runs of two
/// builds, µs, payload in the buffer against inline: alltoall of 4 / 8 B
/// blocks 0.44 / 0.45 against 0.38 / 0.38 (and 0.43 / 0.46 against 0.37
/// / 0.36), allreduce of 4 / 8 / 16 B 0.41 / 0.42 / 0.43 against 0.37 /
/// 0.37 / 0.39; larger payloads, and 4 ranks bound, within the noise
/// (±5%). Copying the front of every payload there as well, or keeping
/// a flags word beside the inline payloads, looked 5-40% slower for
/// 32-128 B payloads in two batches each, which this rule does not touch.
const INLINE: u64 = 1 << 60;

/// Largest payload a board buffer holds.
pub(crate) const CAPACITY: usize = BOARD_BYTES;

/// The CPU the calling thread runs on now (a hint: it may move at any
/// time).
pub(crate) fn current_cpu() -> usize {
    rustix::thread::sched_getcpu()
}

/// The boards of one communicator's ranks, as one rank sees them (see
/// [`HostBoards::view`]).
#[derive(Debug)]
pub(crate) struct Boards {
    /// This rank's index in `boards` (its rank in the communicator).
    me: usize,
    /// Which board of each segment the communicator uses (0: the world).
    number: usize,
    /// Calls numbered up to `base` were made on this board number before
    /// the communicator existed: its calls are `base + 1`, `base + 2`, ...
    base: u64,
    /// Every rank's segment, by communicator rank (this rank's own
    /// included).
    boards: Vec<Arc<Mapping>>,
    /// Every peer's doorbell, rung after a publication if the peer said it
    /// sleeps (the handshake of `mod.rs`: it looks at the boards again
    /// after raising its flag).
    doorbells: Vec<Option<SocketAddr>>,
    ringer: Arc<Ringer>,
    /// Every rank's memory, by communicator rank, if this rank can read
    /// and write all of it.
    memory: Option<Vec<PeerMemory>>,
    /// Whether every rank can read and write every rank's memory: set by
    /// [`agreed`](Self::agreed).
    direct: std::sync::OnceLock<bool>,
    /// By rank: the latest call this rank knows that rank to be done
    /// with, from what it saw of that rank's counters (see
    /// [`is_done`](Self::is_done)). Local memory: a check it answers
    /// costs no load of a line the peer keeps writing.
    known_done: Vec<AtomicU64>,
}

/// The boards of every rank this rank mapped (its local peers and
/// itself), by world rank: what the boards of any communicator of local
/// ranks are made from ([`view`](Self::view)).
#[derive(Debug)]
pub(crate) struct HostBoards {
    /// This rank's world rank.
    me: usize,
    /// Every world rank's segment, if this rank mapped it.
    segments: Vec<Option<Arc<Mapping>>>,
    /// Every world rank's doorbell, if it has one.
    doorbells: Vec<Option<SocketAddr>>,
    ringer: Arc<Ringer>,
    /// Every world rank's memory, if this rank can read and write it.
    memory: Vec<Option<PeerMemory>>,
}

impl HostBoards {
    /// The boards of the world ranks whose `segments` this rank (`me`)
    /// mapped.
    pub(crate) fn new(
        me: usize,
        segments: Vec<Option<Arc<Mapping>>>,
        doorbells: Vec<Option<SocketAddr>>,
        ringer: Ringer,
        memory: Vec<Option<PeerMemory>>,
    ) -> HostBoards {
        assert!(segments.get(me).is_some_and(Option::is_some));
        assert!(doorbells.len() == segments.len() && memory.len() == segments.len());
        HostBoards {
            me,
            segments,
            doorbells,
            ringer: Arc::new(ringer),
            memory,
        }
    }

    /// Whether this rank mapped the boards of all these world ranks.
    pub(crate) fn maps_all(&self, members: &[usize]) -> bool {
        members
            .iter()
            .all(|&rank| self.segments.get(rank).is_some_and(Option::is_some))
    }

    /// Whether this rank can read and write the memory of all these world
    /// ranks.
    pub(crate) fn reads_all(&self, members: &[usize]) -> bool {
        members
            .iter()
            .all(|&rank| self.memory.get(rank).is_some_and(Option::is_some))
    }

    /// The boards of a communicator of the world ranks `members` (in
    /// communicator order, this rank among them), on board `number`, whose
    /// calls up to `base` every member made before; `direct` says whether
    /// every member can read and write every member's memory (`None`: not
    /// known yet, see [`Boards::agreed`]). `None` unless this rank mapped
    /// every member's segment.
    pub(crate) fn view(
        &self,
        members: &[usize],
        number: usize,
        base: u64,
        direct: Option<bool>,
    ) -> Option<Boards> {
        assert!(number < super::segment::BOARDS);
        let me = members.iter().position(|&rank| rank == self.me)?;
        let boards = members
            .iter()
            .map(|&rank| self.segments.get(rank).cloned().flatten())
            .collect::<Option<Vec<_>>>()?;
        let memory = members
            .iter()
            .map(|&rank| self.memory.get(rank).copied().flatten())
            .collect::<Option<Vec<_>>>();
        let agreed = std::sync::OnceLock::new();
        if let Some(direct) = direct {
            let _ = agreed.set(direct && memory.is_some());
        }
        Some(Boards {
            me,
            number,
            base,
            boards,
            doorbells: members
                .iter()
                .map(|&rank| self.doorbells[rank].clone())
                .collect(),
            ringer: Arc::clone(&self.ringer),
            memory,
            direct: agreed,
            known_done: members.iter().map(|_| AtomicU64::new(base)).collect(),
        })
    }
}

impl Boards {
    /// Which board of each segment these boards use (0: the world's).
    #[inline]
    pub(crate) fn number(&self) -> usize {
        self.number
    }

    /// The number of the call before this communicator's first.
    #[inline]
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Whether every peer is done with call `k` (or a later one): nobody
    /// reads this rank's board for call `k` or before any more.
    pub(crate) fn all_done(&self, k: u64) -> bool {
        (0..self.boards.len()).all(|rank| rank == self.me || self.is_done(rank, k))
    }

    /// Counter `index` of `rank`'s board.
    #[inline]
    fn counter(&self, rank: usize, index: usize) -> &std::sync::atomic::AtomicU64 {
        self.boards[rank].board_counter(self.number, index)
    }

    /// Whether every rank mapped every board: `None` while some rank is
    /// still wiring up, then the same answer on every rank. A rank that
    /// could not map a peer's segment has no boards and says so on its own
    /// board, which the others can read: they then use messages too.
    /// Once every rank has said, also settles [`direct`](Self::direct).
    pub(crate) fn agreed(&self) -> Option<bool> {
        let mut all = true;
        let mut direct = true;
        for board in &self.boards {
            match board.board_state().load(Ordering::Acquire) {
                super::segment::BOARDS_DIRECT => {}
                super::segment::BOARDS_COMPLETE => direct = false,
                super::segment::BOARDS_INCOMPLETE => all = false,
                _ => return None,
            }
        }
        let _ = self.direct.set(all && direct && self.memory.is_some());
        Some(all)
    }

    /// Whether every rank can read and write every rank's memory, so that
    /// large operands may be copied directly between the processes (false
    /// until [`agreed`](Self::agreed) has answered).
    #[inline]
    pub(crate) fn direct(&self) -> bool {
        self.direct.get() == Some(&true)
    }

    /// Copies `dst.len()` bytes at `address` of `rank`'s memory into
    /// `dst`; the error is an `errno` (`ESRCH`: the process is gone;
    /// `EPERM` if this rank cannot read the others' memory).
    pub(crate) fn copy_from(&self, rank: usize, address: u64, dst: &mut [u8]) -> Result<(), i32> {
        match &self.memory {
            Some(memory) => memory[rank].read(address, dst),
            None => Err(nix::errno::Errno::EPERM as i32),
        }
    }

    /// Copies `src` to `address` of `rank`'s memory, with the errors of
    /// [`copy_from`](Self::copy_from).
    pub(crate) fn copy_to(&self, rank: usize, address: u64, src: &[u8]) -> Result<(), i32> {
        match &self.memory {
            Some(memory) => memory[rank].write(address, src),
            None => Err(nix::errno::Errno::EPERM as i32),
        }
    }

    /// Ranks on the boards.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.boards.len()
    }

    /// Whether this rank may write its buffer for call `k`: every peer is
    /// done with call `k - 2`, the last one that used the same buffer.
    #[inline]
    pub(crate) fn may_publish(&self, k: u64) -> bool {
        // Calls up to `base` belong to earlier communicators, whose
        // readers are done (`board_number.rs`).
        let Some(before) = k.checked_sub(2).filter(|&before| before > self.base) else {
            return true;
        };
        (0..self.boards.len()).all(|rank| rank == self.me || self.is_done(rank, before))
    }

    /// Publishes call `k`: `data` (at most [`CAPACITY`] bytes) and the
    /// length `len` (the bytes of the call's operand, which may be more
    /// than `data` holds, or [`POISONED`]). Call only when
    /// [`may_publish`](Self::may_publish) said so.
    pub(crate) fn publish(&self, k: u64, data: &[u8], len: u64) {
        let own = &self.boards[self.me];
        let buffer = (k % 2) as usize;
        let inline = len != POISONED && data.len() <= BOARD_INLINE_BYTES;
        // SAFETY: this rank owns its board, and `may_publish(k)` held: every
        // peer is done with call k - 2, the last reader of this buffer (and
        // of its inline place), and none reads call k before the release
        // store below.
        unsafe {
            if inline {
                own.board_write_inline(self.number, buffer, data);
            } else {
                own.board_write(self.number, buffer, data);
            }
        }
        let stored = if inline { len | INLINE } else { len };
        own.board_counter_word(self.number, ARRIVED, LENGTH_WORD + buffer)
            .store(stored, Ordering::Relaxed);
        own.board_counter(self.number, ARRIVED)
            .store(k, Ordering::Release);
        self.wake_sleepers();
    }

    /// Rings the doorbell of every peer that said it sleeps.
    fn wake_sleepers(&self) {
        fences::light();
        for (board, doorbell) in self.boards.iter().zip(&self.doorbells) {
            if let Some(address) = doorbell {
                super::wake_if_sleeping(board, &self.ringer, address);
            }
        }
    }

    /// Publishes call `k` without bytes (a barrier): no buffer is written,
    /// so no wait for readers is needed first.
    pub(crate) fn arrive(&self, k: u64) {
        self.counter(self.me, ARRIVED).store(k, Ordering::Release);
        self.wake_sleepers();
    }

    /// Says that everyone arrived at call `k` (a barrier's root).
    pub(crate) fn release(&self, k: u64) {
        self.counter(self.me, RELEASED).store(k, Ordering::Release);
        self.wake_sleepers();
    }

    /// Whether `rank` has released call `k` (or a later one).
    #[inline]
    pub(crate) fn released(&self, rank: usize, k: u64) -> bool {
        let released = self.counter(rank, RELEASED).load(Ordering::Acquire);
        self.saw_start(rank, released);
        released >= k
    }

    /// Notes that `rank` started call `call` (it published, arrived or
    /// released it): it returned from every earlier call, so it reads
    /// nothing of them any more. Calls end before they return (a direct
    /// call's owner waits for its readers), and each rank makes the calls
    /// of a communicator one after the other.
    #[inline(always)]
    fn saw_start(&self, rank: usize, call: u64) {
        self.saw_done(rank, call.saturating_sub(1));
    }

    /// Notes that `rank` is done with call `call`.
    #[inline(always)]
    fn saw_done(&self, rank: usize, call: u64) {
        // One thread at a time makes a communicator's calls; a lost update
        // between racing threads would only keep a lower bound, still true.
        let known = &self.known_done[rank];
        if call > known.load(Ordering::Relaxed) && rank != self.me {
            known.store(call, Ordering::Relaxed);
        }
    }

    /// This rank's index.
    #[inline]
    pub(crate) fn me(&self) -> usize {
        self.me
    }

    /// Whether `rank` has published call `k` (or a later one).
    #[inline]
    pub(crate) fn arrived(&self, rank: usize, k: u64) -> bool {
        let arrived = self.counter(rank, ARRIVED).load(Ordering::Acquire);
        self.saw_start(rank, arrived);
        arrived >= k
    }

    /// The length `rank` published for call `k`. Call only once
    /// [`arrived`](Self::arrived) said so.
    #[inline]
    pub(crate) fn length(&self, rank: usize, k: u64) -> u64 {
        match self.stored_length(rank, k) {
            POISONED => POISONED,
            stored => stored & !INLINE,
        }
    }

    /// The length word `rank` stored for call `k`, with its [`INLINE`] bit.
    #[inline]
    fn stored_length(&self, rank: usize, k: u64) -> u64 {
        self.boards[rank]
            .board_counter_word(self.number, ARRIVED, LENGTH_WORD + (k % 2) as usize)
            .load(Ordering::Relaxed)
    }

    /// Copies the first `dst.len()` bytes `rank` published for call `k`.
    /// Call only once [`arrived`](Self::arrived) said so, and before this
    /// rank says it is [`done`](Self::done) with `k`.
    #[inline]
    pub(crate) fn read(&self, rank: usize, k: u64, dst: &mut [u8]) {
        self.read_at(rank, k, 0, dst);
    }

    /// Copies `dst.len()` bytes from `offset` of what `rank` published for
    /// call `k`, under the same rules as [`read`](Self::read).
    #[inline]
    pub(crate) fn read_at(&self, rank: usize, k: u64, offset: usize, dst: &mut [u8]) {
        assert!(offset <= CAPACITY && dst.len() <= CAPACITY - offset);
        let stored = self.stored_length(rank, k);
        let inline =
            stored != POISONED && stored & INLINE != 0 && offset + dst.len() <= BOARD_INLINE_BYTES;
        let buffer = (k % 2) as usize;
        // SAFETY: `rank` published call k (acquired by `arrived`), and it
        // writes this buffer (and its inline place) again only for call
        // k + 2, after this rank has said it is done with k.
        unsafe {
            if inline {
                self.boards[rank].board_read_inline(self.number, buffer, offset, dst);
            } else {
                self.boards[rank].board_read(self.number, buffer, offset, dst);
            }
        }
    }

    /// Says this rank has passed the midpoint of direct call `k` (its part
    /// is ready to be read), or `failed` it.
    pub(crate) fn stage(&self, k: u64, failed: bool) {
        let value = if failed { k | STAGE_FAILED } else { k };
        self.counter(self.me, STAGE).store(value, Ordering::Release);
        self.wake_sleepers();
    }

    /// Whether `rank` has passed the midpoint of call `k` (or a later
    /// one): `None` not yet, `Some(false)` with its part ready,
    /// `Some(true)` if it failed call `k`.
    #[inline]
    pub(crate) fn staged(&self, rank: usize, k: u64) -> Option<bool> {
        let value = self.counter(rank, STAGE).load(Ordering::Acquire);
        let call = value & !STAGE_FAILED;
        (call >= k).then_some(call == k && value & STAGE_FAILED != 0)
    }

    /// Claims the next of the `pieces` (at most [`MAX_PIECES`]) of the
    /// work that `owner`'s call `k` shares among the ranks: each piece
    /// goes to exactly one caller, in order; `None` once all are claimed.
    pub(crate) fn claim(&self, owner: usize, k: u64, pieces: usize) -> Option<usize> {
        let counter = self.counter(owner, CLAIMED);
        let mut value = counter.load(Ordering::Relaxed);
        loop {
            let next = pieces_of(value, k);
            if next >= pieces {
                return None;
            }
            let claimed = (k << PIECE_BITS) | (next as u64 + 1);
            match counter.compare_exchange_weak(value, claimed, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(next),
                Err(now) => value = now,
            }
        }
    }

    /// Says this rank has finished a piece it claimed of `owner`'s call
    /// `k` (everything it wrote for it is in place); wakes the waiting
    /// ranks with the last of `pieces`.
    pub(crate) fn finish(&self, owner: usize, k: u64, pieces: usize) {
        let counter = self.counter(owner, FINISHED);
        let mut value = counter.load(Ordering::Relaxed);
        loop {
            // Below `pieces` (a rank finishes only pieces of call `k` it
            // claimed); the bound only keeps a misuse from overflowing.
            let before = pieces_of(value, k).min(MAX_PIECES - 1);
            let finished = (k << PIECE_BITS) | (before as u64 + 1);
            match counter.compare_exchange_weak(
                value,
                finished,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) if finished & MAX_PIECES as u64 == pieces as u64 => {
                    return self.wake_sleepers();
                }
                Ok(_) => return,
                Err(now) => value = now,
            }
        }
    }

    /// How many pieces of `owner`'s call `k` are finished.
    #[inline]
    pub(crate) fn finished(&self, owner: usize, k: u64) -> usize {
        pieces_of(self.counter(owner, FINISHED).load(Ordering::Acquire), k)
    }

    /// Says this rank has copied everything it needs of `owner`'s buffers
    /// in direct call `k` (with more ranks than per-peer counters, only
    /// [`done`](Self::done) says it).
    pub(crate) fn copied_from(&self, owner: usize, k: u64) {
        if self.boards.len() <= BOARD_PEERS {
            self.boards[self.me]
                .board_peer_counter(self.number, owner)
                .store(k, Ordering::Release);
            // The owner may sleep until its buffers are free.
            fences::light();
            if let Some(address) = &self.doorbells[owner] {
                super::wake_if_sleeping(&self.boards[owner], &self.ringer, address);
            }
        }
    }

    /// Whether `reader` has copied everything it needs of this rank's
    /// buffers in direct call `k` (see [`copied_from`](Self::copied_from);
    /// a reader that is [`done`](Self::done) has too).
    #[inline]
    pub(crate) fn has_copied(&self, reader: usize, k: u64) -> bool {
        self.is_done(reader, k)
            || (self.boards.len() <= BOARD_PEERS
                && self.boards[reader]
                    .board_peer_counter(self.number, self.me)
                    .load(Ordering::Acquire)
                    >= k)
    }

    /// Whether `rank` is done with call `k` (or a later one). Answered
    /// from what this rank already saw of `rank` when that says so, else
    /// from `rank`'s *done* counter.
    #[inline]
    pub(crate) fn is_done(&self, rank: usize, k: u64) -> bool {
        if self.known_done[rank].load(Ordering::Relaxed) >= k {
            return true;
        }
        let done = self.counter(rank, DONE).load(Ordering::Acquire);
        self.saw_done(rank, done);
        done >= k
    }

    /// Records on this rank's board the CPU it runs on now, for a peer
    /// that wants to know which ranks share its core
    /// ([`cpu`](Self::cpu)). Stores only a change, so a peer's cached
    /// copy of the line stays valid while the rank stays put.
    pub(crate) fn note_cpu(&self) {
        let cpu = current_cpu() as u64 + 1;
        let counter = self.counter(self.me, CPU);
        if counter.load(Ordering::Relaxed) != cpu {
            counter.store(cpu, Ordering::Relaxed);
        }
    }

    /// The CPU `rank` last recorded with [`note_cpu`](Self::note_cpu), if
    /// it ever did. A hint: the rank may have moved since.
    #[inline]
    pub(crate) fn cpu(&self, rank: usize) -> Option<usize> {
        let cpu = self.counter(rank, CPU).load(Ordering::Relaxed);
        cpu.checked_sub(1).map(|cpu| cpu as usize)
    }

    /// Says this rank has read everything it needs of call `k`.
    pub(crate) fn done(&self, k: u64) {
        self.counter(self.me, DONE).store(k, Ordering::Release);
        // A peer may sleep until it may write its buffer again.
        self.wake_sleepers();
    }
}

/// The pieces a [`CLAIMED`] or [`FINISHED`] value counts for call `k`:
/// none if it counts an earlier call's, all (`usize::MAX`) if a later
/// one's (call `k` is over).
fn pieces_of(value: u64, k: u64) -> usize {
    match (value >> PIECE_BITS).cmp(&k) {
        std::cmp::Ordering::Less => 0,
        std::cmp::Ordering::Equal => (value & MAX_PIECES as u64) as usize,
        std::cmp::Ordering::Greater => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::super::doorbell::Ringer;
    use super::super::segment::{Shape, create};
    use super::*;

    /// The boards of a two-rank communicator on board 0, as rank 0 and as
    /// rank 1 see them (two segments of this process).
    fn pair() -> (Boards, Boards) {
        let shape = Shape::new(1, 4096);
        let segments: Vec<_> = (0..2).map(|_| Some(create(shape).unwrap().0)).collect();
        let host = |me| {
            HostBoards::new(
                me,
                segments.clone(),
                vec![None, None],
                Ringer::new().unwrap(),
                vec![None, None],
            )
        };
        let view = |me| host(me).view(&[0, 1], 0, 0, Some(false)).unwrap();
        (view(0), view(1))
    }

    #[test]
    fn a_peer_that_started_a_call_is_known_done_with_the_calls_before() {
        let (zero, one) = pair();
        one.publish(1, b"first", 5);
        assert!(zero.arrived(1, 1));
        // Rank 1 never said done: nothing is known of call 1 yet.
        assert!(!zero.is_done(1, 1));
        assert!(!zero.may_publish(3));
        one.publish(2, b"second", 6);
        assert!(zero.arrived(1, 2));
        // Starting call 2 means rank 1 returned from call 1, though its
        // done counter still says nothing.
        assert_eq!(zero.counter(1, DONE).load(Ordering::Relaxed), 0);
        assert!(zero.is_done(1, 1));
        assert!(zero.may_publish(3));
        // Nothing is inferred past what was seen.
        assert!(!zero.is_done(1, 2));
        assert!(!zero.may_publish(4));
        one.release(5);
        assert!(zero.released(1, 5));
        assert!(zero.is_done(1, 4) && !zero.is_done(1, 5));
        // The done counter itself still answers.
        one.done(7);
        assert!(zero.is_done(1, 7) && !zero.is_done(1, 8));
    }

    #[test]
    fn small_payloads_ride_with_the_arrival_and_read_back_whole() {
        let (zero, one) = pair();
        let length = |bytes: usize| ON_BOARD | bytes as u64;
        // Call 1 (buffer 1) inline, call 2 (buffer 0) in the buffer, call 3
        // (buffer 1 again) in the buffer after an inline one.
        let small = *b"sixteen bytes!!!";
        let large: Vec<u8> = (0..40).collect();
        one.publish(1, &small, length(16));
        one.publish(2, &large, length(40));
        assert!(zero.arrived(1, 2));
        let mut out = [0u8; 16];
        zero.read(1, 1, &mut out);
        assert_eq!(out, small);
        let mut tail = [0u8; 6];
        zero.read_at(1, 1, 10, &mut tail);
        assert_eq!(&tail, b"tes!!!");
        assert_eq!(zero.length(1, 1), length(16));
        let mut out = vec![0u8; 40];
        zero.read(1, 2, &mut out);
        assert_eq!(out, large);
        // Its first bytes come from the buffer, not from a stale inline copy.
        let mut front = [0u8; 8];
        zero.read_at(1, 2, 0, &mut front);
        assert_eq!(front, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(zero.length(1, 2), length(40));
        one.done(1);
        one.publish(3, &large[..20], length(20));
        zero.read_at(1, 3, 0, &mut front);
        assert_eq!(front, [0, 1, 2, 3, 4, 5, 6, 7]);
        // A poisoned length stays poisoned; an empty payload reads as one.
        one.done(2);
        one.publish(4, &[], POISONED);
        assert_eq!(zero.length(1, 4), POISONED);
        one.done(3);
        one.publish(5, &[], 7);
        assert_eq!(zero.length(1, 5), 7);
    }

    #[test]
    fn pieces_go_once_each_in_order_and_a_new_call_starts_afresh() {
        let (zero, one) = pair();
        // Both ranks claim pieces of call 3 on rank 0's board.
        assert_eq!(zero.claim(0, 3, 3), Some(0));
        assert_eq!(one.claim(0, 3, 3), Some(1));
        assert_eq!(zero.claim(0, 3, 3), Some(2));
        assert_eq!(one.claim(0, 3, 3), None);
        assert_eq!(zero.finished(0, 3), 0);
        one.finish(0, 3, 3);
        zero.finish(0, 3, 3);
        assert_eq!(one.finished(0, 3), 2);
        zero.finish(0, 3, 3);
        assert_eq!(one.finished(0, 3), 3);
        // Rank 1's board counts apart; the next call counts from zero, and
        // a rank still looking at call 3 finds it over.
        assert_eq!(zero.claim(1, 3, 3), Some(0));
        assert_eq!(one.claim(0, 5, 2), Some(0));
        assert_eq!(zero.finished(0, 5), 0);
        one.finish(0, 5, 2);
        assert_eq!(zero.finished(0, 5), 1);
        assert_eq!(zero.claim(0, 3, 3), None);
        assert_eq!(zero.finished(0, 3), usize::MAX);
    }

    #[test]
    fn a_bound_not_yet_seen_is_not_inferred() {
        let (zero, one) = pair();
        one.publish(1, b"x", 1);
        one.publish(2, b"y", 1);
        // Rank 0 has not looked at rank 1's arrival: it reads the done
        // counter, which says nothing yet.
        assert!(!zero.is_done(1, 1));
        assert!(zero.arrived(1, 2) && zero.is_done(1, 1));
        // What rank 0 sees of itself teaches it nothing about rank 1.
        zero.publish(1, b"z", 1);
        assert!(zero.arrived(0, 1));
        assert!(!zero.is_done(1, 2));
    }
}
