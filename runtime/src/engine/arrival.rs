//! Large eager payloads that arrive before their receive is posted.
//!
//! An EAGER frame whose payload is large and still arriving when its header
//! is parsed, with no posted receive to match, is buffered as an
//! [`Arrival`]: the message enters the unexpected queue at once (so matching
//! order is that of the headers, as for every frame) and the rest of the
//! payload is read straight into the arrival's buffer instead of being
//! staged whole and copied out of staging into a fresh allocation.
//!
//! A receive that matches the message while it is still arriving takes over
//! its stream: the bytes so far are copied into the user's buffer and the
//! rest lands there directly, like a DATA payload. One that matches it
//! later copies it once. Buffers are kept for reuse (a few, see
//! [`POOLED`]): a fresh megabyte costs its page faults and zeroing on every
//! message (measured over TCP, 4 ranks bound on 2 cores, alltoall of 1 MiB
//! blocks: page faults under the copy out of staging took 19% of all time).

use super::matching::FxHashMap;
use crate::Rank;

/// Buffers kept for reuse.
const POOLED: usize = 4;

/// Identifies an arrival while its message waits to be matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct ArrivalId(u64);

/// One unexpected eager payload, whole or still arriving.
#[derive(Debug)]
pub(super) struct Arrival {
    /// At least `len` bytes; the payload is `buf[..len]`.
    pub(super) buf: Vec<u8>,
    /// Bytes of the payload that have come so far.
    pub(super) filled: usize,
    /// Length of the payload.
    pub(super) len: usize,
    /// The peer that sends it.
    pub(super) peer: Rank,
}

impl Arrival {
    /// Whether every byte has come.
    pub(super) fn is_whole(&self) -> bool {
        self.filled == self.len
    }
}

/// The arrivals of one engine, and the buffers kept for the next ones.
#[derive(Debug, Default)]
pub(super) struct Arrivals {
    slots: FxHashMap<ArrivalId, Arrival>,
    next: u64,
    pool: Vec<Vec<u8>>,
    /// Arrivals matched whole, and matched while still arriving (for the
    /// simulator's coverage check).
    #[cfg(test)]
    pub(super) matched: (usize, usize),
}

impl Arrivals {
    /// Starts an arrival of `len` bytes from `peer` whose first bytes are
    /// `here`.
    pub(super) fn start(&mut self, peer: Rank, len: usize, here: &[u8]) -> ArrivalId {
        let mut buf = match self.pool.iter().position(|b| b.len() >= len) {
            Some(index) => self.pool.swap_remove(index),
            None => self.pool.pop().unwrap_or_default(),
        };
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf[..here.len()].copy_from_slice(here);
        let id = ArrivalId(self.next);
        self.next += 1;
        self.slots.insert(
            id,
            Arrival {
                buf,
                filled: here.len(),
                len,
                peer,
            },
        );
        id
    }

    /// The arrival `id`, while its message waits to be matched.
    pub(super) fn get_mut(&mut self, id: ArrivalId) -> Option<&mut Arrival> {
        self.slots.get_mut(&id)
    }

    /// Removes arrival `id` (its message was matched).
    pub(super) fn take(&mut self, id: ArrivalId) -> Option<Arrival> {
        let arrival = self.slots.remove(&id)?;
        #[cfg(test)]
        if arrival.is_whole() {
            self.matched.0 += 1;
        } else {
            self.matched.1 += 1;
        }
        Some(arrival)
    }

    /// Keeps `buf` for a later arrival if there is room.
    pub(super) fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < POOLED {
            self.pool.push(buf);
        } else if let Some(smallest) = self.pool.iter_mut().min_by_key(|b| b.len()) {
            if smallest.len() < buf.len() {
                *smallest = buf;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_buffer_is_reused_without_growing() {
        let mut arrivals = Arrivals::default();
        let first = arrivals.start(Rank(1), 1000, b"abc");
        let arrival = arrivals.take(first).expect("started");
        assert_eq!((arrival.filled, arrival.len), (3, 1000));
        assert_eq!(&arrival.buf[..3], b"abc");
        let address = arrival.buf.as_ptr();
        arrivals.recycle(arrival.buf);
        let second = arrivals.start(Rank(2), 500, b"xy");
        let arrival = arrivals.get_mut(second).expect("started");
        assert_eq!(arrival.buf.as_ptr(), address, "the pooled buffer is reused");
        assert_eq!(
            (arrival.filled, arrival.len, arrival.peer),
            (2, 500, Rank(2))
        );
        assert_eq!(&arrival.buf[..2], b"xy");
        assert!(!arrival.is_whole());
    }

    #[test]
    fn the_pool_keeps_the_largest_buffers() {
        let mut arrivals = Arrivals::default();
        for len in [10, 20, 30, 40, 50, 5] {
            arrivals.recycle(vec![0; len]);
        }
        let mut lens: Vec<usize> = arrivals.pool.iter().map(Vec::len).collect();
        lens.sort_unstable();
        assert_eq!(lens, [20, 30, 40, 50]);
    }
}
