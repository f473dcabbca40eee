//! Inline sends: a small standard-mode message to a peer with nothing
//! queued or waiting skips the request table and the transmit queue. The
//! transport writes its frame at once, in one piece, and the send is
//! complete (as an eager send of a copied payload would be at once).
//!
//! Order is kept because nothing else is queued for that peer: the frame
//! goes into the same stream right behind everything sent before it.
//! Credit is spent as for any eager frame.

use super::Engine;
use super::frame::{Header, SHORT_HEADER_LEN};
use crate::{ContextId, Rank, Tag};

impl Engine {
    /// Prepares the inline send of a `len`-byte standard-mode message to
    /// `peer`: if the link is up, nothing is queued or waits for credit
    /// towards `peer`, `len` is under `eager_by_reference_min` and within
    /// the peer's eager limit and credit, spends the credit and returns
    /// the frame's short header (see [`frame`](super::frame)). The caller
    /// must then write the header and the payload to the link at once, in
    /// one piece (it made sure there is room first). `None` changes
    /// nothing: post the send as usual.
    pub fn inline_send(
        &mut self,
        peer: Rank,
        context: ContextId,
        tag: Tag,
        len: usize,
    ) -> Option<[u8; SHORT_HEADER_LEN]> {
        if peer == self.rank || peer.0 >= self.size || len >= self.config.eager_by_reference_min {
            return None;
        }
        let short_len = u16::try_from(len).ok()?;
        let p = &mut self.peers[peer.index()];
        let idle = p.tx.is_empty() && p.waiting.is_empty();
        if p.failed || p.gone.is_some() || p.goodbye_sent || !idle {
            return None;
        }
        if !p.credit.try_spend_eager(len, p.eager_limit_lone) {
            return None;
        }
        p.traffic = true;
        Some(Header::encode_short(context, tag, short_len))
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::{payload, small_config};
    use super::super::tests::{C, done, from, ok, queued_kinds, r, recv, send, tag};
    use super::super::*;

    #[test]
    fn an_inline_frame_is_an_eager_frame_that_the_receiver_matches() {
        let mut a = Engine::new(r(0), 2, small_config());
        let mut b = Engine::new(r(1), 2, small_config());
        let header = a.inline_send(r(1), C, Tag(3), 5).expect("idle link");
        let wire = [&header[..], &payload(2, 5)].concat();
        b.received_from(r(0), &wire).unwrap();
        let v = recv(&mut b, from(0), tag(3), 5);
        assert_eq!(done(&mut b, v), (ok(0, 3, 5), payload(2, 5)));
        assert_eq!(a.pending_requests(), 0, "no request was made");
    }

    #[test]
    fn inline_sends_wait_behind_anything_queued_and_spend_credit() {
        let mut a = Engine::new(r(0), 2, small_config());
        assert_eq!(a.inline_send(r(0), C, Tag(0), 1), None, "not to itself");
        assert_eq!(
            a.inline_send(r(2), C, Tag(0), 1),
            None,
            "not outside the world"
        );
        assert_eq!(
            a.inline_send(r(1), C, Tag(0), 128),
            None,
            "not from eager_by_reference_min (128 in small_config) on"
        );
        send(&mut a, 1, 0, payload(1, 10), SendMode::Standard);
        assert_eq!(queued_kinds(&a, 1), [frame::Kind::Eager]);
        assert_eq!(
            a.inline_send(r(1), C, Tag(0), 10),
            None,
            "a queued frame goes first"
        );
        let mut a = Engine::new(r(0), 2, small_config());
        // small_config: a 4096-byte window; every inline frame costs its
        // length plus the frame cost, so credit runs out and they stop.
        let mut sent = 0;
        while a.inline_send(r(1), C, Tag(0), 100).is_some() {
            sent += 1;
            assert!(sent < 100, "credit must run out");
        }
        assert!(sent > 0);
        a.peer_failed(r(1));
        assert_eq!(
            a.inline_send(r(1), C, Tag(0), 1),
            None,
            "not to a failed peer"
        );
    }

    #[test]
    fn short_frames_are_received_whole_however_they_are_cut() {
        let mut a = Engine::new(r(0), 2, small_config());
        // Three frames back to back: short, short (empty), short.
        let mut wire = Vec::new();
        for (t, len) in [(1, 32), (2, 0), (3, 44)] {
            let header = a.inline_send(r(1), C, Tag(t), len).expect("idle link");
            assert_eq!(header.len(), frame::SHORT_HEADER_LEN);
            wire.extend_from_slice(&header);
            wire.extend_from_slice(&payload(t as usize, len));
        }
        for chunk in [1, 5, 11, 12, 13, 1000] {
            let mut b = Engine::new(r(1), 2, small_config());
            for piece in wire.chunks(chunk) {
                b.received_from(r(0), piece).unwrap();
            }
            for (t, len) in [(1, 32), (2, 0), (3, 44)] {
                let v = recv(&mut b, from(0), tag(t), len);
                assert_eq!(
                    done(&mut b, v),
                    (ok(0, t, len), payload(t as usize, len)),
                    "cut every {chunk} bytes"
                );
            }
        }
        // A short header with a wrong version fails the link.
        let mut b = Engine::new(r(1), 2, small_config());
        let mut bad = wire.clone();
        bad[0] = 9;
        assert_eq!(
            b.received_from(r(0), &bad),
            Err(ProtocolError::BadVersion(9))
        );
    }
}
