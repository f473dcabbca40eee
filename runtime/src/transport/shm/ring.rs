//! A single-producer/single-consumer ring of records: the lane that carries
//! one sender's bytes to one receiver through shared memory.
//!
//! The ring is a [`Control`] block (three cache-line-padded words) and a
//! data area whose size is a multiple of 8. Positions count bytes since the
//! ring was made and never wrap (2^64 bytes is centuries of traffic); a
//! position's offset in the data area is `position % capacity`.
//!
//! A record is an 8-byte header (payload length in the low 32 bits, kind in
//! the high 32) followed by the payload, padded to a multiple of 8 so
//! headers never straddle the end of the area. The producer writes a whole
//! record, then publishes it with a release store of `tail`; the consumer
//! reads records up to the `tail` it acquired and hands space back with a
//! release store of `head`. Each side caches the other's word and rereads it
//! only when it runs out (of data or of room), so a steady stream touches a
//! shared line once per batch.
//!
//! Waking: a producer that finds the ring full raises `space_wanted` and
//! rereads `head` after a full fence; the consumer, after handing space
//! back, fences and takes the flag (see [`Consumer::take_space_wanted`]).
//! One of the two always sees the other's store, so no wake-up is lost.
//!
//! The memory behind a ring is abstracted by [`RingMemory`]: a mapped
//! shared segment in the transport, heap memory in the tests (loom checks
//! the protocol with every byte access tracked; see the tests below).

use std::io::IoSlice;

use crossbeam_utils::CachePadded;

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// Bytes of a record header.
pub(crate) const RECORD_HEADER: usize = 8;
/// Record kind: a piece of the sender's byte stream.
const KIND_BYTES: u32 = 1;

/// The shared words of one ring. All-zero bytes are its initial state (a
/// fresh shared segment is zero-filled).
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Control {
    /// End of the published records; written by the producer only.
    tail: CachePadded<AtomicU64>,
    /// End of the records the consumer is done with; written by the
    /// consumer only.
    head: CachePadded<AtomicU64>,
    /// 1 while the producer waits for room; raised by the producer, taken
    /// by the consumer.
    space_wanted: CachePadded<AtomicU32>,
}

/// The memory of one ring.
pub(crate) trait RingMemory {
    /// The ring's control block.
    fn control(&self) -> &Control;
    /// Bytes in the data area: a non-zero multiple of 8.
    fn capacity(&self) -> usize;
    /// Copies `src` to the data area at `offset` (`offset + src.len()` is
    /// at most the capacity).
    fn write(&self, offset: usize, src: &[u8]);
    /// Copies the data area at `offset` into `dst` (same bound).
    fn read(&self, offset: usize, dst: &mut [u8]);
}

/// The ring's contents broke its invariants: the peer wrote garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RingError {
    /// `tail` moved backwards or more than a ring ahead of `head`.
    #[error("the shared-memory ring's tail is out of range (head {head}, tail {tail})")]
    BadTail {
        /// The consumer's position.
        head: u64,
        /// The tail the producer published.
        tail: u64,
    },
    /// A record header names an unknown kind or a length past the tail.
    #[error("a shared-memory record header is invalid (kind {kind}, length {len})")]
    BadRecord {
        /// The kind in the header.
        kind: u32,
        /// The length in the header.
        len: u32,
    },
}

fn padded(len: usize) -> usize {
    (len + 7) & !7
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

/// The writing end of a ring.
#[derive(Debug)]
pub(crate) struct Producer<M> {
    memory: M,
    tail: u64,
    /// The consumer's `head` as last read.
    head_seen: u64,
}

impl<M: RingMemory> Producer<M> {
    /// The producer of a ring in its initial state (or one this side alone
    /// has written to before).
    pub(crate) fn new(memory: M) -> Producer<M> {
        let control = memory.control();
        let tail = control.tail.load(Ordering::Relaxed);
        let head_seen = control.head.load(Ordering::Acquire);
        Producer {
            memory,
            tail,
            head_seen,
        }
    }

    /// Room for one more record's payload, given the `head` last seen.
    fn room(&self) -> usize {
        let used = (self.tail - self.head_seen) as usize;
        (self.memory.capacity() - used).saturating_sub(RECORD_HEADER)
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
        let header = (len as u64) | (u64::from(KIND_BYTES) << 32);
        write_wrapping(&self.memory, self.tail, &header.to_le_bytes());
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
        self.tail += (RECORD_HEADER + padded(len)) as u64;
        self.memory
            .control()
            .tail
            .store(self.tail, Ordering::Release);
        len
    }

    /// Announces that the producer waits for room, then looks once more:
    /// true if room appeared meanwhile (write again instead of sleeping).
    /// Otherwise the consumer will see the flag after it frees space.
    pub(crate) fn want_space(&mut self) -> bool {
        let control = self.memory.control();
        control.space_wanted.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.head_seen = control.head.load(Ordering::Acquire);
        self.room() > 0
    }
}

/// A record being read.
#[derive(Debug, Clone, Copy)]
struct Record {
    len: usize,
    offset: usize,
}

/// The reading end of a ring.
#[derive(Debug)]
pub(crate) struct Consumer<M> {
    memory: M,
    head: u64,
    /// The producer's `tail` as last read.
    tail_seen: u64,
    /// The record being read, if one is started.
    current: Option<Record>,
    /// Space was handed back since the last [`Consumer::take_space_wanted`].
    released: bool,
}

impl<M: RingMemory> Consumer<M> {
    /// The consumer of a ring in its initial state.
    pub(crate) fn new(memory: M) -> Consumer<M> {
        let head = memory.control().head.load(Ordering::Relaxed);
        Consumer {
            memory,
            head,
            tail_seen: head,
            current: None,
            released: false,
        }
    }

    /// Whether unread bytes are published (rereads the producer's `tail`
    /// only when everything seen so far is read).
    pub(crate) fn has_data(&mut self) -> bool {
        if self.current.is_some() || self.head != self.tail_seen {
            return true;
        }
        self.tail_seen = self.memory.control().tail.load(Ordering::Acquire);
        self.head != self.tail_seen
    }

    /// Copies up to `dst.len()` bytes of the stream into `dst` (stopping at
    /// a record's end) and returns how many; 0 means the ring is empty.
    pub(crate) fn read(&mut self, dst: &mut [u8]) -> Result<usize, RingError> {
        let record = match self.current {
            Some(record) => record,
            None => {
                if !self.has_data() {
                    return Ok(0);
                }
                let record = self.start_record()?;
                self.current = Some(record);
                record
            }
        };
        let n = dst.len().min(record.len - record.offset);
        let position = self.head + (RECORD_HEADER + record.offset) as u64;
        read_wrapping(&self.memory, position, &mut dst[..n]);
        let offset = record.offset + n;
        if offset == record.len {
            self.head += (RECORD_HEADER + padded(record.len)) as u64;
            self.memory
                .control()
                .head
                .store(self.head, Ordering::Release);
            self.current = None;
            self.released = true;
        } else {
            self.current = Some(Record { offset, ..record });
        }
        Ok(n)
    }

    /// Checks the published tail and the next header.
    fn start_record(&mut self) -> Result<Record, RingError> {
        let available = self.tail_seen.wrapping_sub(self.head);
        if self.tail_seen < self.head || available > self.memory.capacity() as u64 {
            return Err(RingError::BadTail {
                head: self.head,
                tail: self.tail_seen,
            });
        }
        let mut raw = [0u8; RECORD_HEADER];
        read_wrapping(&self.memory, self.head, &mut raw);
        let header = u64::from_le_bytes(raw);
        let (len, kind) = (header as u32, (header >> 32) as u32);
        let fits = (RECORD_HEADER + padded(len as usize)) as u64 <= available;
        if kind != KIND_BYTES || len == 0 || !fits {
            return Err(RingError::BadRecord { kind, len });
        }
        Ok(Record {
            len: len as usize,
            offset: 0,
        })
    }

    /// After handing space back: whether the producer said it waits for
    /// room (the flag is taken, so only one wake-up is sent).
    pub(crate) fn take_space_wanted(&mut self) -> bool {
        if !std::mem::take(&mut self.released) {
            return false;
        }
        fence(Ordering::SeqCst);
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

    /// Heap memory for a ring; bytes are relaxed atomics so the tests are
    /// free of undefined behaviour without any `unsafe`.
    #[derive(Debug)]
    struct Heap {
        control: Control,
        data: Vec<AtomicU8>,
    }

    impl Heap {
        fn new(capacity: usize) -> Arc<Heap> {
            Arc::new(Heap {
                control: Control::default(),
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
        let heap = Heap::new(64);
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
                    let r = consumer.read(&mut buf).unwrap();
                    got.extend_from_slice(&buf[..r]);
                }
            }
            expected.extend_from_slice(&chunk);
        }
        let mut buf = [0u8; 5];
        loop {
            let r = consumer.read(&mut buf).unwrap();
            if r == 0 {
                break;
            }
            got.extend_from_slice(&buf[..r]);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn a_full_ring_refuses_then_takes_after_reads() {
        let heap = Heap::new(32);
        let mut producer = Producer::new(Arc::clone(&heap));
        let mut consumer = Consumer::new(Arc::clone(&heap));
        assert_eq!(producer.push(&[IoSlice::new(&[1; 100])], usize::MAX), 24);
        assert_eq!(producer.push(&[IoSlice::new(&[2; 8])], usize::MAX), 0);
        assert!(!producer.want_space());
        let mut buf = [0u8; 24];
        assert_eq!(consumer.read(&mut buf).unwrap(), 24);
        assert!(
            consumer.take_space_wanted(),
            "the waiting producer is woken"
        );
        assert!(!consumer.take_space_wanted(), "only once");
        assert_eq!(producer.push(&[IoSlice::new(&[2; 8])], usize::MAX), 8);
    }

    #[test]
    fn garbage_headers_and_tails_are_errors() {
        let heap = Heap::new(64);
        heap.control.tail.store(16, Ordering::Release);
        heap.write(0, &((9u64 << 32) | 4).to_le_bytes());
        let mut consumer = Consumer::new(Arc::clone(&heap));
        assert_eq!(
            consumer.read(&mut [0; 8]),
            Err(RingError::BadRecord { kind: 9, len: 4 })
        );
        let heap = Heap::new(64);
        heap.control.tail.store(1000, Ordering::Release);
        let mut consumer = Consumer::new(Arc::clone(&heap));
        assert!(matches!(
            consumer.read(&mut [0; 8]),
            Err(RingError::BadTail { .. })
        ));
        let heap = Heap::new(64);
        heap.control.tail.store(16, Ordering::Release);
        heap.write(0, &((1u64 << 32) | 40).to_le_bytes());
        let mut consumer = Consumer::new(Arc::clone(&heap));
        assert!(matches!(
            consumer.read(&mut [0; 8]),
            Err(RingError::BadRecord { len: 40, .. })
        ));
    }

    #[test]
    fn two_threads_stream_a_megabyte_intact() {
        let heap = Heap::new(4096);
        let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
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
            let n = consumer.read(&mut buf).unwrap();
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
            let heap = Heap::new(48);
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
                    let n = consumer.read(&mut buf).unwrap();
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

    /// Heap memory whose every byte access loom tracks: a read racing a
    /// write (a missing happens-before) fails the model.
    struct Tracked {
        control: Control,
        data: Vec<UnsafeCell<u8>>,
    }

    impl RingMemory for Arc<Tracked> {
        fn control(&self) -> &Control {
            &self.control
        }
        fn capacity(&self) -> usize {
            self.data.len()
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
                tail: CachePadded::new(AtomicU64::new(0)),
                head: CachePadded::new(AtomicU64::new(0)),
                space_wanted: CachePadded::new(AtomicU32::new(0)),
            },
            data: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    /// Three records through a ring that holds one: every byte arrives in
    /// order and no access races, in every interleaving.
    #[test]
    fn records_cross_without_races() {
        loom::model(|| {
            let memory = tracked(16);
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
                let n = consumer.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                if n == 0 {
                    loom::thread::yield_now();
                }
            }
            writer.join().unwrap();
            assert_eq!(got, [1, 1, 1, 2, 2, 2, 3, 3, 3]);
        });
    }

    /// The space-wanted handshake never loses a wake-up: either the
    /// producer sees the room, or the consumer sees the flag.
    #[test]
    fn a_waiting_producer_is_always_told() {
        loom::model(|| {
            let memory = tracked(16);
            let mut producer = Producer::new(Arc::clone(&memory));
            assert_eq!(producer.push(&[IoSlice::new(&[7; 8])], usize::MAX), 8);
            let consumer_memory = Arc::clone(&memory);
            let reader = loom::thread::spawn(move || {
                let mut consumer = Consumer::new(consumer_memory);
                let mut buf = [0u8; 8];
                assert_eq!(consumer.read(&mut buf).unwrap(), 8);
                consumer.take_space_wanted()
            });
            let room = producer.want_space();
            let told = reader.join().unwrap();
            assert!(room || told, "a wake-up was lost");
        });
    }
}
