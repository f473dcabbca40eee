//! A single-producer/single-consumer ring of records: the lane that carries
//! one sender's bytes to one receiver through shared memory.
//!
//! The ring is a [`Control`] block (cache-line-padded words) and a data
//! area of 64-byte cells (its size is a multiple of 64). Positions count
//! bytes since the ring was made and never wrap (2^64 bytes is centuries of
//! traffic); a position's offset in the data area is `position % capacity`.
//!
//! A record starts on a cell boundary with an 8-byte header word (payload
//! length in the low 32 bits, kind in the high 32; never zero) followed by
//! the payload, and fills whole cells. The header word *is* the signal: the
//! consumer polls the header at its position, so a small message (header,
//! frame header and up to 24 bytes of payload in one cell) crosses in one
//! cache-line transfer. The header word at the next record start must read
//! zero until that record is published, so that the consumer never mistakes
//! last lap's bytes for a record: the producer keeps the header words of
//! the cells just ahead of its tail zeroed, extending that window after
//! each publication (see [`Producer::publish`]). The consumer
//! hands space back with a release store of `head`, which the producer
//! reads only when it runs out of room.
//!
//! Waking: a producer that finds the ring full raises `space_wanted` and
//! rereads `head` after a heavy fence; the consumer, after handing space
//! back, makes a light fence and takes the flag (see
//! [`Consumer::take_space_wanted`] and `fences.rs`). One of the two always
//! sees the other's store, so no wake-up is lost.
//!
//! The memory behind a ring is abstracted by [`RingMemory`]: a mapped
//! shared segment in the transport, heap memory in the tests (loom checks
//! the protocol with every byte access tracked; see the tests below). The
//! unit tests also run under Miri (`.ci/run`), which checks every `unsafe`
//! access of the ring against the memory model.

use std::io::IoSlice;

use crossbeam_utils::CachePadded;

// Under `--cfg loom` (model checks of this file alone) the ring runs on
// loom's atomics; the transport around it type-checks but never runs.
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::coop::Transfer;
use super::fences;

/// Bytes of a cell: records start on cell boundaries.
pub(crate) const CELL: usize = 64;
/// Bytes of a record header.
pub(crate) const RECORD_HEADER: usize = 8;
/// Record kind: a piece of the sender's byte stream.
const KIND_BYTES: u32 = 1;
/// Record kind: the next `len` bytes of the stream are at `addr` in the
/// producer's address space (payload: `addr`, `len`, little-endian u64s);
/// the consumer copies them itself (single copy) and counts the record in
/// `remote_done`, and the producer keeps them untouched until then.
const KIND_REMOTE: u32 = 2;
/// Payload bytes of a remote record.
const REMOTE_PAYLOAD: usize = 16;

/// The shared words of one ring. All-zero bytes are its initial state (a
/// fresh shared segment is zero-filled).
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Control {
    /// End of the records the consumer is done with; written by the
    /// consumer only.
    head: CachePadded<AtomicU64>,
    /// 1 while the producer waits for room; raised by the producer, taken
    /// by the consumer.
    space_wanted: CachePadded<AtomicU32>,
    /// Remote records the consumer has finished copying.
    remote_done: CachePadded<AtomicU64>,
    /// 1 once the consumer has shown it can read the producer's memory.
    remote_ok: CachePadded<AtomicU32>,
    /// The cooperative copy of a pulled message (see `coop.rs`).
    transfer: Transfer,
}

impl Control {
    /// The cooperative copy of a pulled message from producer to consumer.
    pub(crate) fn transfer(&self) -> &Transfer {
        &self.transfer
    }
}

/// The memory of one ring.
pub(crate) trait RingMemory {
    /// The ring's control block.
    fn control(&self) -> &Control;
    /// Bytes in the data area: a non-zero multiple of [`CELL`].
    fn capacity(&self) -> usize;
    /// The header word of the cell at `offset` (a multiple of [`CELL`]).
    fn header(&self, offset: usize) -> &AtomicU64;
    /// Copies `src` to the data area at `offset` (`offset + src.len()` is
    /// at most the capacity; never a header word being polled).
    fn write(&self, offset: usize, src: &[u8]);
    /// Copies the data area at `offset` into `dst` (same bound).
    fn read(&self, offset: usize, dst: &mut [u8]);
    /// Calls `f` with the `len` bytes at `offset` (same bound), in place
    /// where the memory allows it.
    fn view(&self, offset: usize, len: usize, f: &mut dyn FnMut(&[u8])) {
        let mut copy = vec![0u8; len];
        self.read(offset, &mut copy);
        f(&copy);
    }
}

/// The ring's contents broke its invariants: the peer wrote garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RingError {
    /// A record header names an unknown kind or a length past the ring.
    #[error("a shared-memory record header is invalid (kind {kind}, length {len})")]
    BadRecord {
        /// The kind in the header.
        kind: u32,
        /// The length in the header.
        len: u32,
    },
    /// Copying a remote record from the producer's memory failed.
    #[error("reading the sender's memory failed (os error {errno})")]
    RemoteRead {
        /// The system's error number.
        errno: i32,
    },
}

/// Bytes a record with `len` payload bytes occupies.
fn footprint(len: usize) -> usize {
    (RECORD_HEADER + len).div_ceil(CELL) * CELL
}

fn write_wrapping(memory: &impl RingMemory, position: u64, src: &[u8]) {
    let capacity = memory.capacity();
    let offset = (position % capacity as u64) as usize;
    let first = src.len().min(capacity - offset);
    memory.write(offset, &src[..first]);
    if first < src.len() {
        memory.write(0, &src[first..]);
    }
}

fn read_wrapping(memory: &impl RingMemory, position: u64, dst: &mut [u8]) {
    let capacity = memory.capacity();
    let offset = (position % capacity as u64) as usize;
    let first = dst.len().min(capacity - offset);
    memory.read(offset, &mut dst[..first]);
    if first < dst.len() {
        memory.read(0, &mut dst[first..]);
    }
}

/// Asks the CPU to start fetching `word`'s cache line, without waiting.
#[inline]
fn prefetch(word: &AtomicU64) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is part of the x86_64 baseline, and a prefetch never
        // faults or touches memory semantics, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(word.as_ptr().cast::<i8>()) };
    }
    #[cfg(any(not(target_arch = "x86_64"), loom))]
    let _ = word;
}

fn header_at(memory: &impl RingMemory, position: u64) -> &AtomicU64 {
    memory.header((position % memory.capacity() as u64) as usize)
}

/// The writing end of a ring.
#[derive(Debug)]
pub(crate) struct Producer<M> {
    memory: M,
    tail: u64,
    /// The consumer's `head` as last read.
    head_seen: u64,
    /// Remote records published so far.
    remote_pushed: u64,
    /// Bytes past `tail` whose cell headers are kept zero (a multiple of
    /// [`CELL`]; see [`Producer::publish`]).
    zero_ahead: u64,
}

/// Most cells ahead of the tail whose headers a producer keeps zeroed.
const ZERO_AHEAD_CELLS: usize = 16;

impl<M: RingMemory> Producer<M> {
    /// The producer of a ring in its initial state.
    pub(crate) fn new(memory: M) -> Producer<M> {
        let head_seen = memory.control().head.load(Ordering::Acquire);
        let cells = memory.capacity() / CELL;
        let zero_ahead = ((cells / 2).clamp(1, ZERO_AHEAD_CELLS) * CELL) as u64;
        Producer {
            memory,
            tail: head_seen,
            head_seen,
            remote_pushed: 0,
            zero_ahead,
        }
    }

    /// Largest payload that fits now, given the `head` last seen: the
    /// record and the zeroed cells after it must be free.
    fn room(&self) -> usize {
        let used = (self.tail - self.head_seen) as usize;
        (self.memory.capacity() - used).saturating_sub(self.zero_ahead as usize + RECORD_HEADER)
    }

    /// Publishes the record of `footprint` bytes written at `tail` with
    /// `header`, and moves `tail` past it.
    ///
    /// The consumer takes the header word at the next record start for a
    /// publication flag, so that word must read zero before the record
    /// is published. The producer keeps the headers of the cells in
    /// `tail..tail + zero_ahead` zeroed: a short record's successor lies in
    /// that window already, and the window is extended only *after* the
    /// publication store. Under x86's store order, a zeroing store before
    /// the publication would hold it back until the zeroed line (still in
    /// the consumer's cache from the last lap) was taken over: one more
    /// cache-line transfer on every small message's path. Only a record
    /// longer than the window zeroes its successor's header first.
    fn publish(&mut self, footprint: usize, header: u64) {
        let next = self.tail + footprint as u64;
        let window_end = self.tail + self.zero_ahead;
        let mut zero_from = window_end;
        if next >= window_end {
            header_at(&self.memory, next).store(0, Ordering::Relaxed);
            zero_from = next + CELL as u64;
        }
        header_at(&self.memory, self.tail).store(header, Ordering::Release);
        // Cells up to `next + zero_ahead` are free: `room` kept them so.
        let mut position = zero_from;
        while position < next + self.zero_ahead {
            header_at(&self.memory, position).store(0, Ordering::Relaxed);
            position += CELL as u64;
        }
        self.tail = next;
    }

    /// Whether a record of `len` bytes fits now (looking at the consumer's
    /// `head` again if the one last seen leaves too little room).
    pub(crate) fn fits(&mut self, len: usize) -> bool {
        if self.room() < len {
            self.head_seen = self.memory.control().head.load(Ordering::Acquire);
        }
        self.room() >= len
    }

    /// Writes up to `max` bytes of `slices` (in order) as one record and
    /// publishes it; returns how many bytes went in (0 if the ring is full
    /// or there was nothing to write).
    pub(crate) fn push(&mut self, slices: &[IoSlice<'_>], max: usize) -> usize {
        let total: usize = slices.iter().map(|slice| slice.len()).sum();
        let wanted = total.min(max).min(u32::MAX as usize);
        if wanted == 0 {
            return 0;
        }
        if self.room() < wanted {
            self.head_seen = self.memory.control().head.load(Ordering::Acquire);
        }
        let len = wanted.min(self.room());
        if len == 0 {
            return 0;
        }
        let mut position = self.tail + RECORD_HEADER as u64;
        let mut left = len;
        for slice in slices {
            if left == 0 {
                break;
            }
            let part = &slice[..slice.len().min(left)];
            write_wrapping(&self.memory, position, part);
            position += part.len() as u64;
            left -= part.len();
        }
        let header = (len as u64) | (u64::from(KIND_BYTES) << 32);
        self.publish(footprint(len), header);
        len
    }

    /// Publishes a remote record for `len` bytes at `addr` of this
    /// process; returns the count [`Producer::remote_done`] must reach
    /// before those bytes may change, or `None` if the ring is full.
    pub(crate) fn push_remote(&mut self, addr: u64, len: u64) -> Option<u64> {
        if self.room() < REMOTE_PAYLOAD {
            self.head_seen = self.memory.control().head.load(Ordering::Acquire);
            if self.room() < REMOTE_PAYLOAD {
                return None;
            }
        }
        let mut payload = [0u8; REMOTE_PAYLOAD];
        payload[..8].copy_from_slice(&addr.to_le_bytes());
        payload[8..].copy_from_slice(&len.to_le_bytes());
        write_wrapping(&self.memory, self.tail + RECORD_HEADER as u64, &payload);
        let header = (REMOTE_PAYLOAD as u64) | (u64::from(KIND_REMOTE) << 32);
        self.publish(footprint(REMOTE_PAYLOAD), header);
        self.remote_pushed += 1;
        Some(self.remote_pushed)
    }

    /// Remote records the consumer has finished copying.
    pub(crate) fn remote_done(&self) -> u64 {
        self.memory.control().remote_done.load(Ordering::Acquire)
    }

    /// The cooperative copy the consumer may ask this producer to help with.
    pub(crate) fn transfer(&self) -> &Transfer {
        self.memory.control().transfer()
    }

    /// Whether the consumer can read this process's memory.
    pub(crate) fn remote_allowed(&self) -> bool {
        self.memory.control().remote_ok.load(Ordering::Relaxed) == 1
    }

    /// Announces that the producer waits for room, then looks once more:
    /// true if room appeared meanwhile (write again instead of sleeping).
    /// Otherwise the consumer will see the flag after it frees space.
    #[cfg(test)]
    pub(crate) fn want_space(&mut self) -> bool {
        self.raise_space_wanted();
        fences::heavy();
        self.has_room()
    }

    /// First half of [`Producer::want_space`], for a caller that makes one
    /// heavy fence for several handshakes: raises the flag.
    pub(crate) fn raise_space_wanted(&self) {
        self.memory
            .control()
            .space_wanted
            .store(1, Ordering::SeqCst);
    }

    /// Second half: rereads the consumer's `head`; true if a record fits.
    pub(crate) fn has_room(&mut self) -> bool {
        self.head_seen = self.memory.control().head.load(Ordering::Acquire);
        self.room() > 0
    }
}

/// What [`Consumer::read_in_place`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InPlace {
    /// No record is published.
    Empty,
    /// The next record is remote, or shorter than asked: use
    /// [`Consumer::read`].
    Copy,
    /// A record's bytes were handed over; this many.
    Read(usize),
}

/// A record being read.
#[derive(Debug, Clone, Copy)]
struct Record {
    len: usize,
    offset: usize,
    /// For a remote record: where its bytes are in the producer.
    remote: Option<u64>,
}

/// The reading end of a ring.
#[derive(Debug)]
pub(crate) struct Consumer<M> {
    memory: M,
    head: u64,
    /// The record being read, if one is started.
    current: Option<Record>,
    /// Space was handed back since the last [`Consumer::take_space_wanted`].
    released: bool,
    /// Remote records finished (mirrors `remote_done`).
    remote_done: u64,
    /// A remote record finished since the last [`Consumer::take_remote_finished`].
    remote_finished: bool,
}

impl<M: RingMemory> Consumer<M> {
    /// The consumer of a ring in its initial state.
    pub(crate) fn new(memory: M) -> Consumer<M> {
        let head = memory.control().head.load(Ordering::Relaxed);
        let remote_done = memory.control().remote_done.load(Ordering::Relaxed);
        Consumer {
            memory,
            head,
            current: None,
            released: false,
            remote_done,
            remote_finished: false,
        }
    }

    /// Whether a published record waits (one load of the header word).
    pub(crate) fn has_data(&self) -> bool {
        self.current.is_some() || header_at(&self.memory, self.head).load(Ordering::Relaxed) != 0
    }

    /// Copies up to `dst.len()` bytes of the stream into `dst` (stopping at
    /// a record's end) and returns how many; 0 means the ring is empty.
    /// Bytes of a remote record are fetched with `remote(addr, dst)`.
    pub(crate) fn read(
        &mut self,
        dst: &mut [u8],
        remote: impl FnOnce(u64, &mut [u8]) -> Result<(), i32>,
    ) -> Result<usize, RingError> {
        let record = match self.current {
            Some(record) => record,
            None => match self.start_record()? {
                Some(record) => record,
                None => return Ok(0),
            },
        };
        let n = dst.len().min(record.len - record.offset);
        match record.remote {
            Some(addr) => remote(addr + record.offset as u64, &mut dst[..n])
                .map_err(|errno| RingError::RemoteRead { errno })?,
            None => {
                let position = self.head + (RECORD_HEADER + record.offset) as u64;
                read_wrapping(&self.memory, position, &mut dst[..n]);
            }
        }
        let offset = record.offset + n;
        if offset < record.len {
            self.current = Some(Record { offset, ..record });
            return Ok(n);
        }
        self.finish_record(record);
        Ok(n)
    }

    /// Hands the rest of the next bytes record to `f` where it lies (in
    /// one or, when it wraps, two pieces), then releases it; records with
    /// fewer than `min` bytes left are left to [`Consumer::read`] (for a
    /// few bytes a copy is cheaper than the indirection). `f` returning an
    /// error stops there: the lane is broken and the record kept.
    pub(crate) fn read_in_place<E>(
        &mut self,
        min: usize,
        mut f: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<Result<InPlace, E>, RingError> {
        let record = match self.current {
            Some(record) => record,
            None => match self.start_record()? {
                Some(record) => record,
                None => return Ok(Ok(InPlace::Empty)),
            },
        };
        if record.remote.is_some() || record.len - record.offset < min {
            return Ok(Ok(InPlace::Copy));
        }
        let capacity = self.memory.capacity();
        let position = self.head + (RECORD_HEADER + record.offset) as u64;
        let offset = (position % capacity as u64) as usize;
        let len = record.len - record.offset;
        let first = len.min(capacity - offset);
        let mut outcome = Ok(());
        self.memory
            .view(offset, first, &mut |bytes| outcome = f(bytes));
        if outcome.is_ok() && first < len {
            self.memory
                .view(0, len - first, &mut |bytes| outcome = f(bytes));
        }
        if let Err(error) = outcome {
            return Ok(Err(error));
        }
        self.finish_record(record);
        Ok(Ok(InPlace::Read(len)))
    }

    /// The current record is read: hands its space back.
    fn finish_record(&mut self, record: Record) {
        let stored = if record.remote.is_some() {
            self.remote_done += 1;
            self.memory
                .control()
                .remote_done
                .store(self.remote_done, Ordering::Release);
            self.remote_finished = true;
            REMOTE_PAYLOAD
        } else {
            record.len
        };
        self.head += footprint(stored) as u64;
        self.memory
            .control()
            .head
            .store(self.head, Ordering::Release);
        self.current = None;
        self.released = true;
        // Start fetching the next header's line now: the caller's work on
        // this record hides the transfer, and the next `has_data` hits.
        prefetch(header_at(&self.memory, self.head));
    }

    /// Acquires the header at `head`: `None` if no record is published.
    fn start_record(&mut self) -> Result<Option<Record>, RingError> {
        let header = header_at(&self.memory, self.head).load(Ordering::Acquire);
        if header == 0 {
            return Ok(None);
        }
        let (len, kind) = (header as u32, (header >> 32) as u32);
        let fits = footprint(len as usize) + CELL <= self.memory.capacity();
        let record = match kind {
            KIND_BYTES if len > 0 && fits => Record {
                len: len as usize,
                offset: 0,
                remote: None,
            },
            KIND_REMOTE if len as usize == REMOTE_PAYLOAD && fits => {
                let mut payload = [0u8; REMOTE_PAYLOAD];
                read_wrapping(&self.memory, self.head + RECORD_HEADER as u64, &mut payload);
                let addr = u64::from_le_bytes(payload[..8].try_into().unwrap_or_default());
                let bytes = u64::from_le_bytes(payload[8..].try_into().unwrap_or_default());
                let Ok(bytes) = usize::try_from(bytes) else {
                    return Err(RingError::BadRecord { kind, len });
                };
                if bytes == 0 || addr.checked_add(bytes as u64).is_none() {
                    return Err(RingError::BadRecord { kind, len });
                }
                Record {
                    len: bytes,
                    offset: 0,
                    remote: Some(addr),
                }
            }
            _ => return Err(RingError::BadRecord { kind, len }),
        };
        self.current = Some(record);
        Ok(Some(record))
    }

    /// Says this consumer can read the producer's memory: the producer may
    /// send remote records from now on.
    pub(crate) fn allow_remote(&self) {
        self.memory.control().remote_ok.store(1, Ordering::Release);
    }

    /// Whether a remote record finished since the last call (the producer
    /// may be asleep waiting for it): makes the light fence of that
    /// handshake when it returns true.
    pub(crate) fn take_remote_finished(&mut self) -> bool {
        let finished = std::mem::take(&mut self.remote_finished);
        if finished {
            fences::light();
        }
        finished
    }

    /// After handing space back: whether the producer said it waits for
    /// room (the flag is taken, so only one wake-up is sent).
    pub(crate) fn take_space_wanted(&mut self) -> bool {
        if !std::mem::take(&mut self.released) {
            return false;
        }
        fences::light();
        let flag = &self.memory.control().space_wanted;
        flag.load(Ordering::Relaxed) == 1 && flag.swap(0, Ordering::AcqRel) == 1
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU8;

    use proptest::prelude::*;

    use super::*;

    fn no_remote(_: u64, _: &mut [u8]) -> Result<(), i32> {
        Err(-1)
    }

    /// Heap memory for a ring; bytes are relaxed atomics so the tests are
    /// free of undefined behaviour without any `unsafe`.
    /// Header words live apart from the bytes here: the consumer only
    /// ever looks at a cell's header after the producer zeroed or wrote it
    /// in the same lap, so what the bytes underneath hold is irrelevant.
    #[derive(Debug)]
    struct Heap {
        control: Control,
        headers: Vec<AtomicU64>,
        data: Vec<AtomicU8>,
    }

    impl Heap {
        fn new(capacity: usize) -> Arc<Heap> {
            Arc::new(Heap {
                control: Control::default(),
                headers: (0..capacity / CELL).map(|_| AtomicU64::new(0)).collect(),
                data: (0..capacity).map(|_| AtomicU8::new(0)).collect(),
            })
        }
    }

    impl RingMemory for Arc<Heap> {
        fn control(&self) -> &Control {
            &self.control
        }
        fn capacity(&self) -> usize {
            self.data.len()
        }
        fn header(&self, offset: usize) -> &AtomicU64 {
            &self.headers[offset / CELL]
        }
        fn write(&self, offset: usize, src: &[u8]) {
            for (cell, byte) in self.data[offset..offset + src.len()].iter().zip(src) {
                cell.store(*byte, Ordering::Relaxed);
            }
        }
        fn read(&self, offset: usize, dst: &mut [u8]) {
            let len = dst.len();
            for (byte, cell) in dst.iter_mut().zip(&self.data[offset..offset + len]) {
                *byte = cell.load(Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn records_wrap_around_and_keep_order() {
        let heap = Heap::new(256);
        let mut producer = Producer::new(Arc::clone(&heap));
        let mut consumer = Consumer::new(Arc::clone(&heap));
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for round in 0..100u8 {
            let chunk: Vec<u8> = (0..(round % 23 + 1)).map(|i| round ^ i).collect();
            let mut sent = 0;
            while sent < chunk.len() {
                let n = producer.push(&[IoSlice::new(&chunk[sent..])], usize::MAX);
                sent += n;
                if n == 0 {
                    let mut buf = [0u8; 7];
                    let r = consumer.read(&mut buf, no_remote).unwrap();
                    got.extend_from_slice(&buf[..r]);
                }
            }
            expected.extend_from_slice(&chunk);
        }
        let mut buf = [0u8; 5];
        loop {
            let r = consumer.read(&mut buf, no_remote).unwrap();
            if r == 0 {
                break;
            }
            got.extend_from_slice(&buf[..r]);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn a_full_ring_refuses_then_takes_after_reads() {
        let heap = Heap::new(128);
        let mut producer = Producer::new(Arc::clone(&heap));
        let mut consumer = Consumer::new(Arc::clone(&heap));
        assert_eq!(producer.push(&[IoSlice::new(&[1; 100])], usize::MAX), 56);
        assert_eq!(producer.push(&[IoSlice::new(&[2; 8])], usize::MAX), 0);
        assert!(!producer.want_space());
        let mut buf = [0u8; 56];
        assert_eq!(consumer.read(&mut buf, no_remote).unwrap(), 56);
        assert_eq!(buf, [1; 56]);
        assert!(
            consumer.take_space_wanted(),
            "the waiting producer is woken"
        );
        assert!(!consumer.take_space_wanted(), "only once");
        assert_eq!(producer.push(&[IoSlice::new(&[2; 8])], usize::MAX), 8);
    }

    #[test]
    fn remote_records_are_fetched_by_the_consumer_and_counted() {
        let heap = Heap::new(512);
        let mut producer = Producer::new(Arc::clone(&heap));
        let mut consumer = Consumer::new(Arc::clone(&heap));
        let source: Vec<u8> = (0..100u8).collect();
        assert!(!producer.remote_allowed());
        consumer.allow_remote();
        assert!(producer.remote_allowed());
        assert_eq!(producer.push(&[IoSlice::new(b"abc")], usize::MAX), 3);
        assert_eq!(producer.push_remote(10, 50), Some(1));
        assert_eq!(producer.push(&[IoSlice::new(b"xyz")], usize::MAX), 3);
        let fetch = |addr: u64, dst: &mut [u8]| {
            let at = addr as usize;
            dst.copy_from_slice(&source[at..at + dst.len()]);
            Ok(())
        };
        let mut got = Vec::new();
        let mut buf = [0u8; 32];
        loop {
            let n = consumer.read(&mut buf, fetch).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let mut expected = b"abc".to_vec();
        expected.extend_from_slice(&source[10..60]);
        expected.extend_from_slice(b"xyz");
        assert_eq!(got, expected);
        assert_eq!(producer.remote_done(), 1);
        assert!(consumer.take_remote_finished());
        assert!(!consumer.take_remote_finished());
        assert_eq!(producer.push_remote(0, 5), Some(2));
        assert_eq!(
            consumer.read(&mut buf, |_, _| Err(3)),
            Err(RingError::RemoteRead { errno: 3 })
        );
    }

    #[test]
    fn records_are_handed_over_in_place_even_when_they_wrap() {
        let heap = Heap::new(256);
        let mut producer = Producer::new(Arc::clone(&heap));
        let mut consumer = Consumer::new(Arc::clone(&heap));
        let mut got = Vec::new();
        let mut sent = Vec::new();
        for round in 0..40u8 {
            let chunk: Vec<u8> = (0..(round % 50 + 1))
                .map(|i| round.wrapping_mul(7) ^ i)
                .collect();
            assert_eq!(
                producer.push(&[IoSlice::new(&chunk)], usize::MAX),
                chunk.len()
            );
            sent.extend_from_slice(&chunk);
            let outcome = consumer.read_in_place(0, |bytes| {
                got.extend_from_slice(bytes);
                Ok::<(), ()>(())
            });
            assert_eq!(outcome, Ok(Ok(InPlace::Read(chunk.len()))));
        }
        assert_eq!(got, sent);
        assert_eq!(
            consumer.read_in_place(0, |_| Ok::<(), ()>(())),
            Ok(Ok(InPlace::Empty))
        );
        consumer.allow_remote();
        assert_eq!(producer.push_remote(0, 9), Some(1));
        assert_eq!(
            consumer.read_in_place(0, |_| Ok::<(), ()>(())),
            Ok(Ok(InPlace::Copy))
        );
        let refused = consumer.read_in_place(0, |_| Err::<(), _>("no"));
        assert_eq!(
            refused,
            Ok(Ok(InPlace::Copy)),
            "remote records are not in place"
        );
        let mut buf = [0u8; 9];
        assert_eq!(consumer.read(&mut buf, |_, _| Ok(())), Ok(9));
        assert_eq!(producer.push(&[IoSlice::new(b"tiny")], usize::MAX), 4);
        assert_eq!(
            consumer.read_in_place(5, |_| Ok::<(), ()>(())),
            Ok(Ok(InPlace::Copy)),
            "shorter than asked"
        );
    }

    #[test]
    fn garbage_headers_are_errors() {
        let heap = Heap::new(256);
        heap.headers[0].store((9u64 << 32) | 4, Ordering::Release);
        let mut consumer = Consumer::new(Arc::clone(&heap));
        assert_eq!(
            consumer.read(&mut [0; 8], no_remote),
            Err(RingError::BadRecord { kind: 9, len: 4 })
        );
        let heap = Heap::new(256);
        heap.headers[0].store((1u64 << 32) | 200, Ordering::Release);
        let mut consumer = Consumer::new(Arc::clone(&heap));
        assert_eq!(
            consumer.read(&mut [0; 8], no_remote),
            Err(RingError::BadRecord { kind: 1, len: 200 })
        );
        let heap = Heap::new(256);
        heap.headers[0].store(1u64 << 32, Ordering::Release);
        let mut consumer = Consumer::new(Arc::clone(&heap));
        assert!(
            consumer.read(&mut [0; 8], no_remote).is_err(),
            "an empty record"
        );
    }

    #[test]
    fn two_threads_stream_a_megabyte_intact() {
        let heap = Heap::new(4096);
        // Under Miri (`.ci/run`) 64 KiB still wraps the ring 16 times, in a
        // fraction of the time.
        let len: u32 = if cfg!(miri) { 64 << 10 } else { 1 << 20 };
        let data: Vec<u8> = (0..len).map(|i: u32| (i * 7 + i / 251) as u8).collect();
        let producer_heap = Arc::clone(&heap);
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            let mut producer = Producer::new(producer_heap);
            let mut at = 0;
            while at < sent.len() {
                let n = producer.push(&[IoSlice::new(&sent[at..])], 1000);
                at += n;
                if n == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let mut consumer = Consumer::new(heap);
        let mut got = Vec::with_capacity(data.len());
        let mut buf = vec![0u8; 777];
        while got.len() < data.len() {
            let n = consumer.read(&mut buf, no_remote).unwrap();
            got.extend_from_slice(&buf[..n]);
            if n == 0 {
                std::thread::yield_now();
            }
        }
        writer.join().unwrap();
        assert_eq!(got, data);
    }

    proptest! {
        /// Any interleaving of pushes (several slices, caps) and reads
        /// (any buffer size) delivers the stream exactly once, in order.
        #[test]
        fn stream_matches_a_queue(ops in proptest::collection::vec((any::<bool>(), 1usize..40, 1usize..4), 1..200)) {
            let heap = Heap::new(256);
            let mut producer = Producer::new(Arc::clone(&heap));
            let mut consumer = Consumer::new(Arc::clone(&heap));
            let mut oracle = VecDeque::new();
            let mut next = 0u8;
            for (push, size, pieces) in ops {
                if push {
                    let chunks: Vec<Vec<u8>> = (0..pieces).map(|_| {
                        (0..size).map(|_| { next = next.wrapping_add(1); next }).collect()
                    }).collect();
                    let slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
                    let n = producer.push(&slices, size * 2);
                    let flat: Vec<u8> = chunks.concat();
                    oracle.extend(&flat[..n]);
                    // What did not fit is forgotten, as the engine would resend it.
                    next = next.wrapping_sub((flat.len() - n) as u8);
                } else {
                    let mut buf = vec![0u8; size];
                    let n = consumer.read(&mut buf, no_remote).unwrap();
                    for byte in &buf[..n] {
                        prop_assert_eq!(Some(*byte), oracle.pop_front());
                    }
                    if n == 0 {
                        prop_assert!(oracle.is_empty());
                    }
                }
            }
        }
    }
}

/// Model checks of the ring protocol with loom: run with
/// `RUSTFLAGS="--cfg loom" cargo test -p mpr --release --lib ring`.
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    use super::*;

    fn no_remote(_: u64, _: &mut [u8]) -> Result<(), i32> {
        Err(-1)
    }

    /// Heap memory whose every byte access loom tracks: a read racing a
    /// write (a missing happens-before) fails the model.
    struct Tracked {
        control: Control,
        headers: Vec<AtomicU64>,
        data: Vec<UnsafeCell<u8>>,
    }

    impl RingMemory for Arc<Tracked> {
        fn control(&self) -> &Control {
            &self.control
        }
        fn capacity(&self) -> usize {
            self.data.len()
        }
        fn header(&self, offset: usize) -> &AtomicU64 {
            &self.headers[offset / CELL]
        }
        fn write(&self, offset: usize, src: &[u8]) {
            for (cell, byte) in self.data[offset..offset + src.len()].iter().zip(src) {
                // SAFETY: loom's cell checks the access; no reference escapes.
                cell.with_mut(|p| unsafe { *p = *byte });
            }
        }
        fn read(&self, offset: usize, dst: &mut [u8]) {
            let len = dst.len();
            for (byte, cell) in dst.iter_mut().zip(&self.data[offset..offset + len]) {
                // SAFETY: loom's cell checks the access; no reference escapes.
                *byte = cell.with(|p| unsafe { *p });
            }
        }
    }

    fn tracked(capacity: usize) -> Arc<Tracked> {
        Arc::new(Tracked {
            control: Control {
                head: CachePadded::new(AtomicU64::new(0)),
                space_wanted: CachePadded::new(AtomicU32::new(0)),
                remote_done: CachePadded::new(AtomicU64::new(0)),
                remote_ok: CachePadded::new(AtomicU32::new(0)),
                transfer: Transfer::new(),
            },
            headers: (0..capacity / CELL).map(|_| AtomicU64::new(0)).collect(),
            data: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    /// Three records through a ring that holds one: every byte arrives in
    /// order and no access races, in every interleaving.
    #[test]
    fn records_cross_without_races() {
        loom::model(|| {
            let memory = tracked(2 * CELL);
            let producer_memory = Arc::clone(&memory);
            let writer = loom::thread::spawn(move || {
                let mut producer = Producer::new(producer_memory);
                for value in 1..=3u8 {
                    while producer.push(&[IoSlice::new(&[value; 3])], usize::MAX) == 0 {
                        loom::thread::yield_now();
                    }
                }
            });
            let mut consumer = Consumer::new(memory);
            let mut got = Vec::new();
            while got.len() < 9 {
                let mut buf = [0u8; 3];
                let n = consumer.read(&mut buf, no_remote).unwrap();
                got.extend_from_slice(&buf[..n]);
                if n == 0 {
                    loom::thread::yield_now();
                }
            }
            writer.join().unwrap();
            assert_eq!(got, [1, 1, 1, 2, 2, 2, 3, 3, 3]);
        });
    }

    /// Records through a four-cell ring whose producer keeps two cells
    /// ahead zeroed, across the wrap: short ones (whose successor is
    /// zeroed after the publication) and a two-cell one (whose successor
    /// must be zeroed before it). The consumer never takes last lap's
    /// header for a record.
    #[test]
    fn records_cross_the_zeroed_window() {
        // Two preemptions cover the wrap (unbounded, the model runs for
        // minutes); dropping either zeroing still fails it.
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(|| {
            const LENGTHS: [usize; 4] = [2, 2, 60, 2];
            let memory = tracked(4 * CELL);
            let producer_memory = Arc::clone(&memory);
            let writer = loom::thread::spawn(move || {
                let mut producer = Producer::new(producer_memory);
                assert_eq!(producer.zero_ahead, 2 * CELL as u64);
                for (value, len) in (1u8..).zip(LENGTHS) {
                    // A full ring takes part of a record (or nothing).
                    let mut left = len;
                    while left > 0 {
                        match producer.push(&[IoSlice::new(&vec![value; left])], usize::MAX) {
                            0 => loom::thread::yield_now(),
                            n => left -= n,
                        }
                    }
                }
            });
            let mut consumer = Consumer::new(memory);
            let mut got = Vec::new();
            while got.len() < LENGTHS.iter().sum() {
                let mut buf = [0u8; 64];
                let n = consumer.read(&mut buf, no_remote).unwrap();
                got.extend_from_slice(&buf[..n]);
                if n == 0 {
                    loom::thread::yield_now();
                }
            }
            writer.join().unwrap();
            let expected: Vec<u8> = (1u8..)
                .zip(LENGTHS)
                .flat_map(|(value, len)| vec![value; len])
                .collect();
            assert_eq!(got, expected);
        });
    }

    /// The space-wanted handshake never loses a wake-up: either the
    /// producer sees the room, or the consumer sees the flag.
    #[test]
    fn a_waiting_producer_is_always_told() {
        loom::model(|| {
            let memory = tracked(2 * CELL);
            let mut producer = Producer::new(Arc::clone(&memory));
            assert_eq!(producer.push(&[IoSlice::new(&[7; 8])], usize::MAX), 8);
            assert_eq!(producer.push(&[IoSlice::new(&[8; 8])], usize::MAX), 0);
            let consumer_memory = Arc::clone(&memory);
            let reader = loom::thread::spawn(move || {
                let mut consumer = Consumer::new(consumer_memory);
                let mut buf = [0u8; 8];
                assert_eq!(consumer.read(&mut buf, no_remote).unwrap(), 8);
                consumer.take_space_wanted()
            });
            let room = producer.want_space();
            let told = reader.join().unwrap();
            assert!(room || told, "a wake-up was lost");
        });
    }
}
