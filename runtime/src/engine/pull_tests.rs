//! Tests of rendezvous by pull (`pull.rs`): the "peer" whose memory is read
//! is this test process itself, which `process_vm_readv` allows.

use super::frame::Kind;
use super::sim::{payload, small_config};
use super::tests::{C, done, from, ok, queued_kinds, r, recv, send, tag, take_wire};
use super::*;
use std::sync::Arc;

/// Rank 0 offers pulls to rank 1, which may read rank 0's memory.
fn pulling_pair() -> (Engine, Engine) {
    let mut a = Engine::new(r(0), 2, small_config());
    let mut b = Engine::new(r(1), 2, small_config());
    a.offer_pulls(r(1), 4096, 4096);
    b.pull_from(r(0), Arc::new(PeerMemory::of_process(std::process::id())));
    (a, b)
}

/// Feeds `wire` to `e` from `peer` in pieces of `chunk` bytes.
fn feed(e: &mut Engine, peer: u32, wire: &[u8], chunk: usize) -> Result<(), ProtocolError> {
    wire.chunks(chunk)
        .try_for_each(|piece| e.received_from(r(peer), piece))
}

#[test]
fn a_pulled_message_is_copied_when_matched_and_its_ack_completes_the_send() {
    for mode in [SendMode::Standard, SendMode::Synchronous] {
        let (mut a, mut b) = pulling_pair();
        // 1000 bytes: above the 256-byte eager limit, within the pull limit.
        let s = send(&mut a, 1, 4, payload(3, 1000), mode);
        let after = send(&mut a, 1, 5, payload(4, 10), SendMode::Standard);
        assert_eq!(queued_kinds(&a, 1), [Kind::Pull, Kind::Eager]);
        let wire = take_wire(&mut a, 1);
        assert!(!a.is_complete(s), "the sender's buffer is read later");
        // Cut everywhere, the PULL's body included; nothing is posted yet.
        feed(&mut b, 0, &wire, 3).unwrap();
        assert!(queued_kinds(&b, 0).is_empty(), "nothing matched yet");
        assert_eq!(b.iprobe(from(0), C, tag(4)).map(|st| st.len), Some(1000));
        // The receive copies at once and acknowledges.
        let v = recv(&mut b, from(0), tag(4), 1200);
        let (status, data) = done(&mut b, v);
        assert_eq!(status, ok(0, 4, 1000));
        assert_eq!(data[..1000], payload(3, 1000)[..]);
        assert_eq!(queued_kinds(&b, 0), [Kind::Ack], "{mode:?}");
        // The message behind it is still in order.
        let w = recv(&mut b, from(0), tag(5), 10);
        assert_eq!(done(&mut b, w), (ok(0, 5, 10), payload(4, 10)));
        a.received_from(r(1), &take_wire(&mut b, 0)).unwrap();
        assert_eq!(done(&mut a, s).0, ok(0, 4, 1000));
        assert!(a.is_complete(after));
        assert_eq!(a.pending_requests(), 0);
    }
}

#[test]
fn a_posted_receive_pulls_as_the_frame_arrives() {
    let (mut a, mut b) = pulling_pair();
    let v = recv(&mut b, from(0), tag(1), 3000);
    send(&mut a, 1, 1, payload(9, 3000), SendMode::Standard);
    feed(&mut b, 0, &take_wire(&mut a, 1), 7).unwrap();
    let (status, data) = done(&mut b, v);
    assert_eq!((status, data), (ok(0, 1, 3000), payload(9, 3000)));
}

#[test]
fn a_pull_into_a_short_buffer_fails_truncated_and_the_send_still_succeeds() {
    let (mut a, mut b) = pulling_pair();
    let s = send(&mut a, 1, 2, payload(5, 2000), SendMode::Standard);
    let v = recv(&mut b, from(0), tag(2), 1999);
    feed(&mut b, 0, &take_wire(&mut a, 1), 1 << 20).unwrap();
    let (status, data) = done(&mut b, v);
    assert_eq!(
        status,
        Err(OpError::Truncated {
            source: r(0),
            tag: Tag(2),
            message_len: 2000,
            buffer_len: 1999,
        })
    );
    assert!(data.iter().all(|&byte| byte == 0), "nothing was written");
    a.received_from(r(1), &take_wire(&mut b, 0)).unwrap();
    assert_eq!(done(&mut a, s).0, ok(0, 2, 2000));
}

#[test]
fn only_rendezvous_sizes_within_the_limits_are_offered_for_pulling() {
    use Kind::{Eager, Pull, Rts};
    let (mut a, mut b) = pulling_pair();
    send(&mut a, 1, 0, payload(1, 200), SendMode::Standard);
    send(&mut a, 1, 0, payload(1, 4096), SendMode::Standard);
    send(&mut a, 1, 0, payload(1, 4097), SendMode::Standard);
    assert_eq!(queued_kinds(&a, 1), [Eager, Pull, Rts]);
    a.offer_pulls(r(1), 0, 0);
    send(&mut a, 1, 0, payload(1, 1000), SendMode::Standard);
    assert_eq!(queued_kinds(&a, 1)[3..], [Rts]);

    // A lone send (nothing queued, no pull in flight) has a limit of its own.
    let (mut a, _) = pulling_pair();
    a.offer_pulls(r(1), 1000, 3000);
    let first = send(&mut a, 1, 1, payload(2, 3000), SendMode::Standard);
    assert_eq!(queued_kinds(&a, 1), [Pull]);
    let wire = take_wire(&mut a, 1);
    // Written, but not yet pulled: the next one is not lone.
    send(&mut a, 1, 2, payload(3, 3000), SendMode::Standard);
    send(&mut a, 1, 3, payload(4, 1000), SendMode::Standard);
    assert_eq!(queued_kinds(&a, 1), [Rts, Pull]);
    let wire = [wire, take_wire(&mut a, 1)].concat();
    feed(&mut b, 0, &wire, 1 << 20).unwrap();
    let v = recv(&mut b, from(0), tag(1), 3000);
    assert_eq!(done(&mut b, v), (ok(0, 1, 3000), payload(2, 3000)));
    let w = recv(&mut b, from(0), tag(3), 1000);
    assert_eq!(done(&mut b, w), (ok(0, 3, 1000), payload(4, 1000)));
    a.received_from(r(1), &take_wire(&mut b, 0)).unwrap();
    assert!(a.is_complete(first));
    // Both pulls were acknowledged: lone again.
    send(&mut a, 1, 4, payload(5, 3000), SendMode::Standard);
    assert_eq!(queued_kinds(&a, 1), [Pull]);
}

#[test]
fn collective_sends_that_spread_are_pulled_at_any_size_once_pulls_are_offered() {
    use Kind::{Pull, Rts};
    // Declared first, dropped last: the engines below hold views of it.
    let big = payload(6, 10_000);
    let (mut a, mut b) = pulling_pair();
    // SAFETY: `big` outlives `a` and is never written.
    let view = unsafe { crate::buffer::RawSend::new(&big) };
    let spread = a.post_send(r(1), C, Tag(7), SendData::Spread(view), SendMode::Standard);
    // A plain send of the same size keeps the 4096-byte limit.
    send(&mut a, 1, 8, payload(7, 10_000), SendMode::Standard);
    assert_eq!(queued_kinds(&a, 1), [Pull, Rts]);
    feed(&mut b, 0, &take_wire(&mut a, 1), 1 << 20).unwrap();
    let v = recv(&mut b, from(0), tag(7), 10_000);
    assert_eq!(done(&mut b, v), (ok(0, 7, 10_000), big.clone()));
    a.received_from(r(1), &take_wire(&mut b, 0)).unwrap();
    assert!(a.is_complete(spread));
    // Without pulls offered it goes by RTS, like any other.
    let mut c = Engine::new(r(0), 2, small_config());
    // SAFETY: as above, `big` outlives `c`.
    let view = unsafe { crate::buffer::RawSend::new(&big) };
    c.post_send(r(1), C, Tag(9), SendData::Spread(view), SendMode::Standard);
    assert_eq!(queued_kinds(&c, 1), [Rts]);
}

#[test]
fn a_pull_from_a_peer_whose_memory_is_not_readable_is_a_protocol_error() {
    let (mut a, _) = pulling_pair();
    let mut b = Engine::new(r(1), 2, small_config());
    send(&mut a, 1, 0, payload(1, 1000), SendMode::Standard);
    let error = feed(&mut b, 0, &take_wire(&mut a, 1), 1 << 20).unwrap_err();
    assert_eq!(
        error,
        ProtocolError::UnexpectedKind {
            peer: r(0),
            kind: Kind::Pull
        }
    );
}

#[test]
fn an_unreadable_address_fails_the_receive_and_the_link() {
    let (_, mut b) = pulling_pair();
    let v = recv(&mut b, from(0), tag(0), 1000);
    let later = recv(&mut b, from(0), tag(1), 10);
    let mut h = frame::Header::new(Kind::Pull, r(0));
    h.arg = 1000;
    // Address 8: never mapped.
    let wire = [&h.encode()[..], &8u64.to_le_bytes()].concat();
    feed(&mut b, 0, &wire, 1 << 20).unwrap();
    let expected = ProtocolError::PullFailed {
        peer: r(0),
        errno: nix::errno::Errno::EFAULT as i32,
    };
    assert_eq!(
        done(&mut b, v).0,
        Err(OpError::ProtocolError {
            rank: r(0),
            error: expected.clone()
        })
    );
    assert!(
        matches!(done(&mut b, later).0, Err(OpError::ProtocolError { .. })),
        "the link is closed: nothing more comes from rank 0"
    );
    assert_eq!(b.received_from(r(0), &[0u8; 4]), Err(expected));
    assert!(
        queued_kinds(&b, 0).is_empty(),
        "no ACK for an unread message"
    );
}

#[test]
fn only_a_send_waiting_to_be_pulled_by_that_peer_shows_its_bytes() {
    let (mut a, mut b) = pulling_pair();
    assert!(!a.awaits_pull(r(1)));
    let s = send(&mut a, 1, 0, payload(6, 1000), SendMode::Standard);
    let eager = send(&mut a, 1, 1, payload(7, 10), SendMode::Standard);
    assert!(a.awaits_pull(r(1)));
    assert_eq!(a.pulled_send(r(1), s.0), Some(&payload(6, 1000)[..]));
    assert_eq!(a.pulled_send(r(0), s.0), None, "another peer");
    assert_eq!(a.pulled_send(r(1), eager.0), None, "not a pulled send");
    feed(&mut b, 0, &take_wire(&mut a, 1), 1 << 20).unwrap();
    let v = recv(&mut b, from(0), tag(0), 1000);
    assert_eq!(done(&mut b, v).0, ok(0, 0, 1000));
    a.received_from(r(1), &take_wire(&mut b, 0)).unwrap();
    assert!(!a.awaits_pull(r(1)));
    assert_eq!(a.pulled_send(r(1), s.0), None, "completed");
}

#[test]
fn a_send_waiting_to_be_pulled_fails_when_its_peer_does() {
    let (mut a, _) = pulling_pair();
    let s = send(&mut a, 1, 0, payload(1, 1000), SendMode::Standard);
    take_wire(&mut a, 1);
    a.peer_failed(r(1));
    let c = a.take_completion(s).expect("failed at once");
    assert_eq!(c.result, Err(OpError::PeerFailed { rank: r(1) }));
}

#[test]
fn an_ack_for_a_send_that_waits_for_nothing_is_a_protocol_error() {
    let (mut a, _) = pulling_pair();
    // A standard 100-byte send completed at once: nothing awaits its ACK.
    let s = send(&mut a, 1, 0, payload(1, 100), SendMode::Standard);
    assert!(a.is_complete(s));
    let mut h = frame::Header::new(Kind::Ack, r(1));
    h.id = s.0;
    assert!(matches!(
        a.received_from(r(1), &h.encode()),
        Err(ProtocolError::UnknownSend { .. })
    ));
}
