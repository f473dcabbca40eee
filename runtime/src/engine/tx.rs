//! Per-peer transmit queue: frames waiting to be written, in order.
//!
//! Small frames (headers, eager payloads, control frames) are appended to
//! engine-owned byte chunks, so a burst of small messages becomes one
//! `IoSlice`. A rendezvous DATA frame is its 32-byte header plus the user's
//! own send buffer, moved in here until its last byte is written: zero copy.

use std::collections::VecDeque;
use std::io::IoSlice;

use super::frame::{HEADER_LEN, Header};
use super::{RequestId, SendData};
use crate::Rank;

/// Small frames are coalesced into chunks of up to this many bytes.
const CHUNK: usize = 64 * 1024;
/// At most this many slices per `transmit_slices` call (well under IOV_MAX).
const MAX_SLICES: usize = 64;
/// Spare chunks kept for reuse.
const SPARE_CHUNKS: usize = 4;
/// A transient payload ([`SendData::is_transient`]) is offered in slices of
/// at most this many bytes, below the shared-memory single-copy minimum
/// (`MPR_SHM_SINGLE_COPY`, 32 KiB by default), so it is copied out.
const TRANSIENT_SLICE: usize = 8 * 1024;

/// One queued item.
enum Item {
    /// Encoded frames.
    Bytes(Vec<u8>),
    /// A DATA header and the send buffer holding its payload.
    Data {
        header: [u8; HEADER_LEN],
        buf: SendData,
        len: usize,
        req: RequestId,
    },
}

impl Item {
    fn len(&self) -> usize {
        match self {
            Item::Bytes(b) => b.len(),
            Item::Data { len, .. } => HEADER_LEN + len,
        }
    }
}

/// The transmit queue of one link.
#[derive(Default)]
pub(super) struct TxQueue {
    items: VecDeque<Item>,
    /// Bytes of `items[0]` already written.
    head_sent: usize,
    /// Bytes queued and not yet written.
    queued: usize,
    /// Of `queued`, the first bytes a transport has taken but not yet
    /// confirmed written (see [`TxQueue::offer`]).
    offered: usize,
    spare: Vec<Vec<u8>>,
}

impl TxQueue {
    /// Whether nothing waits to be written.
    pub(super) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Whether bytes wait that no transport has taken yet.
    pub(super) fn has_unoffered(&self) -> bool {
        self.queued > self.offered
    }

    /// A transport took the next `n` bytes but has not written them for
    /// good yet (the peer still reads them from this process): they are
    /// not offered again, and their sends do not complete until
    /// [`TxQueue::advance`] confirms them.
    pub(super) fn offer(&mut self, n: usize) {
        assert!(
            self.offered + n <= self.queued,
            "offered {n} bytes past the {} queued",
            self.queued - self.offered
        );
        self.offered += n;
    }

    /// Bytes waiting to be written.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queued
    }

    /// Queues a frame, copying its header and payload.
    pub(super) fn push_frame(&mut self, header: &Header, payload: &[u8]) {
        let len = HEADER_LEN + payload.len();
        // A chunk a transport has taken bytes of (a peer may be reading
        // them from this process's memory) must not grow: growing may move it.
        let reuse = match self.items.back() {
            Some(Item::Bytes(b)) => {
                let unwritten = b.len()
                    - if self.items.len() == 1 {
                        self.head_sent
                    } else {
                        0
                    };
                let taken = self.offered + unwritten > self.queued;
                !taken && b.len() + len <= CHUNK
            }
            _ => false,
        };
        if !reuse {
            let mut chunk = self.spare.pop().unwrap_or_default();
            chunk.reserve(len.max(CHUNK.min(4096)));
            self.items.push_back(Item::Bytes(chunk));
        }
        let Some(Item::Bytes(chunk)) = self.items.back_mut() else {
            unreachable!("just pushed")
        };
        chunk.extend_from_slice(&header.encode());
        chunk.extend_from_slice(payload);
        self.queued += len;
    }

    /// Queues a DATA frame whose payload is `buf.bytes()[..len]`.
    pub(super) fn push_data(&mut self, header: &Header, buf: SendData, len: usize, req: RequestId) {
        debug_assert_eq!(buf.bytes().len(), len);
        self.queued += HEADER_LEN + len;
        self.items.push_back(Item::Data {
            header: header.encode(),
            buf,
            len,
            req,
        });
    }

    /// Appends slices covering up to `max_bytes` of the queued bytes not
    /// yet offered.
    pub(super) fn slices<'a>(&'a self, out: &mut super::Slices<'a>, max_bytes: usize) {
        let mut budget = max_bytes;
        let mut skip = self.head_sent + self.offered;
        let mut count = 0;
        let mut add = |bytes: &'a [u8], skip: &mut usize, budget: &mut usize| -> bool {
            if *skip >= bytes.len() {
                *skip -= bytes.len();
                return true;
            }
            let part = &bytes[*skip..];
            *skip = 0;
            let part = &part[..part.len().min(*budget)];
            if !part.is_empty() {
                out.push(IoSlice::new(part));
                count += 1;
                *budget -= part.len();
            }
            *budget > 0 && count < MAX_SLICES
        };
        for item in &self.items {
            let more = match item {
                Item::Bytes(b) => add(b, &mut skip, &mut budget),
                Item::Data {
                    header, buf, len, ..
                } => {
                    let payload = &buf.bytes()[..*len];
                    add(header, &mut skip, &mut budget)
                        && if buf.is_transient() {
                            payload
                                .chunks(TRANSIENT_SLICE)
                                .all(|piece| add(piece, &mut skip, &mut budget))
                        } else {
                            add(payload, &mut skip, &mut budget)
                        }
                }
            };
            if !more {
                break;
            }
        }
    }

    /// Marks `n` bytes written; DATA frames written in full are handed to
    /// `done` with their request and buffer.
    pub(super) fn advance(&mut self, mut n: usize, done: &mut Vec<(RequestId, SendData)>) {
        assert!(
            n <= self.queued,
            "transmitted {n} bytes but only {} were queued",
            self.queued
        );
        self.queued -= n;
        self.offered = self.offered.saturating_sub(n);
        // Every item is at least one header long, so `rest > 0` below.
        while n > 0 {
            let Some(item) = self.items.front() else {
                break;
            };
            let rest = item.len() - self.head_sent;
            if n < rest {
                self.head_sent += n;
                return;
            }
            n -= rest;
            self.head_sent = 0;
            match self.items.pop_front() {
                Some(Item::Bytes(mut chunk))
                    if self.spare.len() < SPARE_CHUNKS && chunk.capacity() <= 4 * CHUNK =>
                {
                    chunk.clear();
                    self.spare.push(chunk);
                }
                Some(Item::Data { buf, req, .. }) => done.push((req, buf)),
                Some(Item::Bytes(_)) | None => {}
            }
        }
    }

    /// Drops everything queued; returns the buffers of queued DATA frames.
    pub(super) fn clear(&mut self) -> Vec<(RequestId, SendData)> {
        let mut out = Vec::new();
        for item in self.items.drain(..) {
            if let Item::Data { buf, req, .. } = item {
                out.push((req, buf));
            }
        }
        self.head_sent = 0;
        self.queued = 0;
        self.offered = 0;
        out
    }
}

/// A set of peers in insertion order with O(1) insert and remove: the peers
/// with bytes to transmit.
pub(super) struct PeerSet {
    list: Vec<Rank>,
    /// Position of each peer in `list`, or `usize::MAX`.
    pos: Vec<usize>,
}

impl PeerSet {
    /// An empty set over `size` peers.
    pub(super) fn new(size: usize) -> PeerSet {
        PeerSet {
            list: Vec::new(),
            pos: vec![usize::MAX; size],
        }
    }

    /// Adds `peer` if absent.
    pub(super) fn insert(&mut self, peer: Rank) {
        if self.pos[peer.index()] == usize::MAX {
            self.pos[peer.index()] = self.list.len();
            self.list.push(peer);
        }
    }

    /// Removes `peer` if present.
    pub(super) fn remove(&mut self, peer: Rank) {
        let at = std::mem::replace(&mut self.pos[peer.index()], usize::MAX);
        if at != usize::MAX {
            self.list.swap_remove(at);
            if let Some(&moved) = self.list.get(at) {
                self.pos[moved.index()] = at;
            }
        }
    }

    /// The members.
    pub(super) fn iter(&self) -> impl Iterator<Item = Rank> + '_ {
        self.list.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::frame::Kind;

    fn gather(q: &TxQueue, max: usize) -> Vec<u8> {
        let mut out = crate::engine::Slices::new();
        q.slices(&mut out, max);
        out.iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn coalesces_and_streams_data_zero_copy() {
        let mut q = TxQueue::default();
        let h = Header::new(Kind::Eager, Rank(0));
        q.push_frame(&h, b"abc");
        q.push_frame(&h, b"de");
        let d = Header::new(Kind::Data, Rank(0));
        q.push_data(&d, Box::new(vec![7u8; 100]).into(), 100, RequestId(5));
        q.push_frame(&Header::new(Kind::Ack, Rank(0)), &[]);
        assert_eq!(q.queued(), 35 + 34 + 132 + 32);
        let mut out = crate::engine::Slices::new();
        q.slices(&mut out, usize::MAX);
        assert_eq!(out.len(), 4, "chunk, data header, data payload, chunk");
        drop(out);
        let all = gather(&q, usize::MAX);
        let mut done = Vec::new();
        q.advance(60, &mut done);
        assert_eq!(gather(&q, 10), all[60..70]);
        q.advance(69 - 60 + 32 + 50, &mut done);
        assert!(done.is_empty());
        q.advance(50, &mut done);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, RequestId(5));
        assert_eq!(gather(&q, usize::MAX), all[all.len() - 32..]);
        q.advance(32, &mut done);
        assert!(q.is_empty() && q.items.is_empty());
    }

    #[test]
    fn transient_payloads_are_offered_in_short_slices() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut q = TxQueue::default();
        let d = Header::new(Kind::Data, Rank(0));
        // SAFETY: `payload` outlives the queue and is not written meanwhile.
        let view = unsafe { crate::buffer::RawSend::new(&payload) };
        q.push_data(&d, SendData::Transient(view), payload.len(), RequestId(1));
        let mut out = crate::engine::Slices::new();
        q.slices(&mut out, usize::MAX);
        assert!(out.iter().all(|s| s.len() <= TRANSIENT_SLICE));
        assert_eq!(out.len(), 1 + payload.len().div_ceil(TRANSIENT_SLICE));
        drop(out);
        let all = gather(&q, usize::MAX);
        assert_eq!(all[HEADER_LEN..], payload[..]);
        // Partly written: the rest is offered from the right byte on.
        let mut done = Vec::new();
        q.advance(HEADER_LEN + 12_345, &mut done);
        assert_eq!(gather(&q, 20_000), payload[12_345..32_345]);
        q.advance(payload.len() - 12_345, &mut done);
        assert_eq!(done.len(), 1);
        assert!(q.is_empty());
    }

    #[test]
    fn offered_bytes_are_skipped_and_complete_only_when_confirmed() {
        let mut q = TxQueue::default();
        let d = Header::new(Kind::Data, Rank(0));
        q.push_data(&d, Box::new(vec![1u8; 1000]).into(), 1000, RequestId(1));
        q.push_frame(&Header::new(Kind::Ack, Rank(0)), &[]);
        let all = gather(&q, usize::MAX);
        q.offer(HEADER_LEN + 1000);
        assert!(q.has_unoffered());
        assert_eq!(gather(&q, usize::MAX), all[HEADER_LEN + 1000..]);
        q.offer(HEADER_LEN);
        assert!(!q.has_unoffered() && !q.is_empty());
        assert!(gather(&q, usize::MAX).is_empty());
        let mut done = Vec::new();
        q.advance(HEADER_LEN + 999, &mut done);
        assert!(
            done.is_empty(),
            "a send completes only once all of it is confirmed"
        );
        q.advance(1, &mut done);
        assert_eq!(done.len(), 1);
        q.advance(HEADER_LEN, &mut done);
        assert!(q.is_empty() && !q.has_unoffered());
    }

    #[test]
    fn a_taken_chunk_never_grows_or_moves() {
        // A peer may be reading an offered chunk from this process's
        // memory (single copy): frames queued afterwards go to a new chunk.
        let mut q = TxQueue::default();
        let h = Header::new(Kind::Eager, Rank(0));
        q.push_frame(&h, &[1u8; 100]);
        let mut out = crate::engine::Slices::new();
        q.slices(&mut out, usize::MAX);
        let (addr, len) = (out[0].as_ptr(), out[0].len());
        drop(out);
        q.offer(len);
        for _ in 0..100 {
            q.push_frame(&h, &[2u8; 100]);
        }
        let Some(Item::Bytes(first)) = q.items.front() else {
            panic!("the first item is the chunk")
        };
        assert_eq!((first.as_ptr(), first.len()), (addr, len));
        assert_eq!(q.items.len(), 2, "the later frames share one new chunk");
        let mut done = Vec::new();
        q.advance(len, &mut done);
        let rest = gather(&q, usize::MAX);
        assert_eq!(rest.len(), 100 * (HEADER_LEN + 100));
    }

    #[test]
    fn peer_set_insert_remove() {
        let mut s = PeerSet::new(4);
        for r in [2, 0, 3, 0] {
            s.insert(Rank(r));
        }
        s.remove(Rank(2));
        s.remove(Rank(1));
        assert_eq!(s.iter().collect::<Vec<_>>(), [Rank(3), Rank(0)]);
        s.remove(Rank(3));
        s.insert(Rank(1));
        assert_eq!(s.iter().collect::<Vec<_>>(), [Rank(0), Rank(1)]);
    }

    #[test]
    fn empty_data_payload_completes_with_its_header() {
        let mut q = TxQueue::default();
        q.push_data(
            &Header::new(Kind::Data, Rank(0)),
            Box::new(Vec::new()).into(),
            0,
            RequestId(1),
        );
        let mut done = Vec::new();
        q.advance(32, &mut done);
        assert_eq!(done.len(), 1);
        assert!(q.is_empty());
    }
}
