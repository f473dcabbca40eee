//! Unit tests of the engine through its API, on small simulated worlds.

use super::sim::{World, payload, small_config};
use super::*;

pub(super) const C: ContextId = ContextId(0);

pub(super) fn r(rank: u32) -> Rank {
    Rank(rank)
}

pub(super) fn from(rank: u32) -> Source {
    Source::Rank(Rank(rank))
}

pub(super) fn tag(t: i32) -> TagMatch {
    TagMatch::Tag(Tag(t))
}

pub(super) fn send(e: &mut Engine, dest: u32, t: i32, bytes: Vec<u8>, mode: SendMode) -> RequestId {
    e.post_send(Rank(dest), C, Tag(t), Box::new(bytes).into(), mode)
}

pub(super) fn recv(e: &mut Engine, source: Source, t: TagMatch, len: usize) -> RequestId {
    e.post_recv(source, C, t, Box::new(vec![0u8; len]).into())
}

/// Takes a completion that must be there; returns the result and the
/// received bytes (the whole receive buffer).
pub(super) fn done(e: &mut Engine, id: RequestId) -> (Result<Status, OpError>, Vec<u8>) {
    let c = e
        .take_completion(id)
        .unwrap_or_else(|| panic!("{id:?} not complete"));
    assert!(
        e.take_completion(id).is_none(),
        "a completion is taken once"
    );
    let bytes = c
        .recv_buf
        .map(|mut b| b.bytes_mut().to_vec())
        .unwrap_or_default();
    (c.result, bytes)
}

pub(super) fn ok(source: u32, t: i32, len: usize) -> Result<Status, OpError> {
    Ok(Status {
        source: Rank(source),
        tag: Tag(t),
        len,
    })
}

#[test]
fn small_self_send_completes_at_once_and_matches_later() {
    let mut e = Engine::new(r(0), 1, small_config());
    let s = send(&mut e, 0, 3, payload(1, 100), SendMode::Standard);
    assert!(e.is_complete(s), "a small self-send is buffered");
    assert_eq!(
        e.iprobe(Source::Any, C, TagMatch::Any),
        Some(Status {
            source: r(0),
            tag: Tag(3),
            len: 100
        })
    );
    let v = recv(&mut e, Source::Any, TagMatch::Any, 200);
    assert_eq!(
        done(&mut e, v),
        (ok(0, 3, 100), [payload(1, 100), vec![0; 100]].concat())
    );
    assert_eq!(done(&mut e, s).0, ok(0, 3, 100));
    assert_eq!(e.pending_requests(), 0);
    assert!(!e.wants_transmit(r(0)) && e.peers_with_transmit().next().is_none());
}

#[test]
fn large_or_synchronous_self_send_completes_when_matched() {
    let mut e = Engine::new(r(0), 1, small_config());
    let big = send(&mut e, 0, 1, payload(2, 1000), SendMode::Standard);
    let sync = send(&mut e, 0, 2, payload(3, 10), SendMode::Synchronous);
    assert!(!e.is_complete(big) && !e.is_complete(sync));
    let v2 = recv(&mut e, from(0), tag(2), 10);
    assert!(e.is_complete(sync) && !e.is_complete(big));
    assert_eq!(done(&mut e, v2), (ok(0, 2, 10), payload(3, 10)));
    let v1 = recv(&mut e, from(0), tag(1), 999);
    let trunc = OpError::Truncated {
        source: r(0),
        tag: Tag(1),
        message_len: 1000,
        buffer_len: 999,
    };
    assert_eq!(done(&mut e, v1).0, Err(trunc));
    let c = e
        .take_completion(big)
        .expect("sender completes on truncation too");
    assert_eq!(c.result, ok(0, 1, 1000));
    assert_eq!(
        c.send_buf.expect("buffer back").bytes(),
        &payload(2, 1000)[..]
    );
    // Posted first: a self-send matches at once, whatever its size.
    let v = recv(&mut e, Source::Any, TagMatch::Any, 4000);
    let s = send(&mut e, 0, 9, payload(4, 3000), SendMode::Synchronous);
    assert_eq!(done(&mut e, v).1[..3000], payload(4, 3000)[..]);
    assert_eq!(done(&mut e, s).0, ok(0, 9, 3000));
}

#[test]
fn eager_and_synchronous_sends_complete_at_the_right_time() {
    let mut w = World::new(2, small_config(), 7);
    let std = send(&mut w.engines[0], 1, 0, payload(1, 50), SendMode::Standard);
    assert!(
        w.engines[0].is_complete(std),
        "standard eager completes at post"
    );
    let sync = send(
        &mut w.engines[0],
        1,
        1,
        payload(2, 50),
        SendMode::Synchronous,
    );
    w.drive(10_000);
    assert!(
        !w.engines[0].is_complete(sync),
        "synchronous waits for the match"
    );
    let v = recv(&mut w.engines[1], from(0), tag(1), 50);
    assert!(w.engines[1].is_complete(v));
    w.drive(10_000);
    assert_eq!(done(&mut w.engines[0], sync).0, ok(0, 1, 50));
    let v0 = recv(&mut w.engines[1], from(0), tag(0), 50);
    assert_eq!(done(&mut w.engines[1], v0), (ok(0, 0, 50), payload(1, 50)));
}

#[test]
fn wildcards_keep_per_sender_order() {
    let mut w = World::new(3, small_config(), 3);
    for (i, t) in [1, 2, 1, 3].into_iter().enumerate() {
        let len = [10, 600, 20, 30][i];
        send(&mut w.engines[0], 2, t, payload(i, len), SendMode::Standard);
    }
    w.drive(10_000);
    send(&mut w.engines[1], 2, 1, payload(9, 5), SendMode::Standard);
    w.drive(10_000);
    let e = &mut w.engines[2];
    let a = recv(e, from(0), TagMatch::Any, 1000);
    let b = recv(e, Source::Any, tag(1), 1000);
    let c = recv(e, from(1), TagMatch::Any, 1000);
    let d = recv(e, from(0), TagMatch::Any, 1000);
    w.drive(10_000);
    let e = &mut w.engines[2];
    assert_eq!(done(e, a).0, ok(0, 1, 10));
    assert_eq!(
        done(e, b).0,
        ok(0, 1, 20),
        "ANY_SOURCE takes the earliest arrival"
    );
    assert_eq!(done(e, c).0, ok(1, 1, 5));
    assert_eq!(
        done(e, d).0,
        ok(0, 2, 600),
        "rendezvous keeps its place in the order"
    );
    assert_eq!(
        e.iprobe(Source::Any, C, TagMatch::Any),
        Some(Status {
            source: r(0),
            tag: Tag(3),
            len: 30
        })
    );
    assert_eq!(
        e.iprobe(Source::Any, ContextId(1), TagMatch::Any),
        None,
        "contexts are separate"
    );
}

#[test]
fn earliest_posted_receive_wins() {
    let mut w = World::new(2, small_config(), 4);
    let any = recv(&mut w.engines[1], Source::Any, TagMatch::Any, 100);
    let exact = recv(&mut w.engines[1], from(0), tag(5), 1000);
    send(&mut w.engines[0], 1, 5, payload(1, 10), SendMode::Standard);
    send(&mut w.engines[0], 1, 5, payload(2, 600), SendMode::Standard);
    w.drive(10_000);
    assert_eq!(done(&mut w.engines[1], any).1[..10], payload(1, 10)[..]);
    assert_eq!(done(&mut w.engines[1], exact).1[..600], payload(2, 600)[..]);
}

#[test]
fn truncation_consumes_the_message() {
    let mut w = World::new(2, small_config(), 5);
    for (i, len) in [100, 1000, 7].into_iter().enumerate() {
        send(&mut w.engines[0], 1, 0, payload(i, len), SendMode::Standard);
    }
    let a = recv(&mut w.engines[1], from(0), tag(0), 99);
    let b = recv(&mut w.engines[1], from(0), tag(0), 999);
    let c = recv(&mut w.engines[1], from(0), tag(0), 8);
    w.drive(10_000);
    let e = &mut w.engines[1];
    let t = |message_len, buffer_len| OpError::Truncated {
        source: r(0),
        tag: Tag(0),
        message_len,
        buffer_len,
    };
    assert_eq!(
        done(e, a),
        (Err(t(100, 99)), vec![0; 99]),
        "nothing written"
    );
    assert_eq!(done(e, b), (Err(t(1000, 999)), vec![0; 999]));
    assert_eq!(done(e, c), (ok(0, 0, 7), [payload(2, 7), vec![0]].concat()));
    assert_eq!(e.unexpected.len(), 0);
    assert_eq!(
        w.engines[0].pending_requests(),
        0,
        "the truncated rendezvous send completed"
    );
}

#[test]
fn improbe_and_mrecv_take_the_message_out_of_matching() {
    let mut w = World::new(2, small_config(), 6);
    send(
        &mut w.engines[0],
        1,
        4,
        payload(1, 40),
        SendMode::Synchronous,
    );
    send(&mut w.engines[0], 1, 4, payload(2, 700), SendMode::Standard);
    w.drive(10_000);
    let e = &mut w.engines[1];
    let first = Status {
        source: r(0),
        tag: Tag(4),
        len: 40,
    };
    assert_eq!(e.iprobe(from(0), C, tag(4)), Some(first));
    assert_eq!(
        e.iprobe(from(0), C, tag(4)),
        Some(first),
        "iprobe leaves it"
    );
    let (h1, s1) = e.improbe(from(0), C, TagMatch::Any).expect("message");
    assert_eq!(s1, first);
    let (h2, s2) = e.improbe(Source::Any, C, tag(4)).expect("second message");
    assert_eq!(s2.len, 700);
    assert_eq!(e.iprobe(Source::Any, C, TagMatch::Any), None);
    let later = recv(e, Source::Any, TagMatch::Any, 10);
    let m2 = e.post_mrecv(h2, Box::new(vec![0u8; 700]).into());
    let m1 = e.post_mrecv(h1, Box::new(vec![0u8; 40]).into());
    w.drive(10_000);
    let e = &mut w.engines[1];
    assert_eq!(done(e, m1), (ok(0, 4, 40), payload(1, 40)));
    assert_eq!(done(e, m2), (ok(0, 4, 700), payload(2, 700)));
    assert!(!e.is_complete(later));
    assert_eq!(w.engines[0].pending_requests(), 0, "ACK and DATA went out");
}

#[test]
fn cancel_only_unmatched_receives() {
    let mut w = World::new(2, small_config(), 8);
    let a = recv(&mut w.engines[1], from(0), tag(1), 100);
    let b = recv(&mut w.engines[1], Source::Any, TagMatch::Any, 1000);
    let buf = w.engines[1].cancel_recv(a).expect("unmatched");
    assert_eq!(buf.len_of(), 100);
    assert!(w.engines[1].cancel_recv(a).is_none(), "gone");
    assert!(
        w.engines[1].take_completion(a).is_none(),
        "a cancelled request never completes"
    );
    send(&mut w.engines[0], 1, 1, payload(1, 600), SendMode::Standard);
    w.drive(10_000);
    assert!(w.engines[1].cancel_recv(b).is_none(), "matched");
    assert_eq!(done(&mut w.engines[1], b).0, ok(0, 1, 600));
    assert_eq!(w.engines[1].pending_requests(), 0);
}

trait LenOf {
    fn len_of(self) -> usize;
}

impl LenOf for RecvData {
    fn len_of(mut self) -> usize {
        self.bytes_mut().len()
    }
}

#[test]
fn flood_of_unexpected_messages_is_bounded_by_credit() {
    let mut w = World::new(2, small_config(), 9);
    let window = w.engines[0].config().credit_window;
    let sends: Vec<RequestId> = (0..200)
        .map(|i| send(&mut w.engines[0], 1, 0, payload(i, 200), SendMode::Standard))
        .collect();
    w.drive(100_000);
    assert!(w.engines[1].unexpected_bytes(r(0)) <= window);
    let waiting = w.engines[0].peers[1].waiting.len();
    assert!(waiting > 100, "most sends wait for credit ({waiting} do)");
    assert!(w.engines[0].is_complete(sends[0]) && !w.engines[0].is_complete(sends[199]));
    let recvs: Vec<RequestId> = (0..200)
        .map(|_| recv(&mut w.engines[1], from(0), tag(0), 200))
        .collect();
    w.drive(100_000);
    for (i, v) in recvs.into_iter().enumerate() {
        assert_eq!(
            done(&mut w.engines[1], v),
            (ok(0, 0, 200), payload(i, 200)),
            "message {i}"
        );
    }
    assert_eq!(w.engines[0].pending_requests(), 0);
    let available = w.engines[0].peers[1].credit.available();
    assert!(
        available > window - window / 4,
        "credit comes back in batches: {available} of {window}"
    );
}

#[test]
fn config_is_adjusted() {
    let e = Engine::new(
        r(0),
        2,
        EngineConfig {
            eager_limit: 1 << 30,
            eager_limit_lone: 0,
            eager_limit_expected: 0,
            credit_window: 0,
            direct_read_min: 0,
            eager_by_reference_min: 0,
        },
    );
    assert_eq!(e.config().eager_limit, frame::MAX_EAGER_LEN as usize);
    assert_eq!(
        e.config().eager_limit_lone,
        e.config().eager_limit,
        "the lone limit is raised to the stream's"
    );
    assert_eq!(
        e.config().eager_limit_expected,
        e.config().eager_limit_lone,
        "the expected limit is raised to the lone one"
    );
    assert_eq!(e.config().credit_window, 4 * (e.config().eager_limit + 64));
}

#[test]
fn invalid_ranks_fail_the_operation() {
    let mut e = Engine::new(r(0), 2, small_config());
    let s = send(&mut e, 5, 0, vec![1], SendMode::Standard);
    assert_eq!(done(&mut e, s).0, Err(OpError::InvalidRank { rank: r(5) }));
    let v = recv(&mut e, from(2), tag(0), 1);
    assert_eq!(done(&mut e, v).0, Err(OpError::InvalidRank { rank: r(2) }));
}

#[test]
fn a_receiver_that_answered_cts_knows_a_data_header_may_come_next() {
    let mut w = World::new(2, small_config(), 11);
    let v = recv(&mut w.engines[1], from(0), tag(0), 5000);
    assert!(
        !w.engines[1].awaits_data_header(r(0)),
        "nothing answered yet"
    );
    send(
        &mut w.engines[0],
        1,
        0,
        payload(1, 5000),
        SendMode::Standard,
    );
    // Once its CTS is out, the receiver waits for the DATA header...
    while !w.engines[1].awaits_data_header(r(0)) {
        assert!(w.step(), "the receiver never answered the RTS");
    }
    // ...until that header has come: then the payload is read directly.
    while !matches!(w.engines[1].peers[0].rx.state, rx::RxState::Data { .. }) {
        assert!(w.step(), "DATA never started");
    }
    assert!(!w.engines[1].awaits_data_header(r(0)));
    w.drive(10_000);
    assert_eq!(
        done(&mut w.engines[1], v),
        (ok(0, 0, 5000), payload(1, 5000))
    );
    assert!(!w.engines[1].awaits_data_header(r(0)), "nothing awaited");
    // The same for the other way round, and no count is left over.
    let v = recv(&mut w.engines[0], from(1), tag(1), 3000);
    send(
        &mut w.engines[1],
        0,
        1,
        payload(2, 3000),
        SendMode::Standard,
    );
    w.drive(10_000);
    assert_eq!(
        done(&mut w.engines[0], v),
        (ok(1, 1, 3000), payload(2, 3000))
    );
    assert_eq!(w.engines[0].peers[1].rx.awaiting_data, 0);
    assert_eq!(w.engines[1].peers[0].rx.awaiting_data, 0);
}

#[test]
fn large_payloads_are_read_straight_into_the_user_buffer() {
    let mut w = World::new(2, small_config(), 10);
    let v = recv(&mut w.engines[1], from(0), tag(0), 5000);
    send(
        &mut w.engines[0],
        1,
        0,
        payload(1, 5000),
        SendMode::Standard,
    );
    // Move everything up to and including the DATA header.
    while !matches!(w.engines[1].peers[0].rx.state, rx::RxState::Data { .. }) {
        assert!(w.step(), "DATA never started");
    }
    let target = w.engines[1].recv_target(r(0));
    assert!(
        target.len() <= 5000 && target.len() > 4000,
        "the rest of the user buffer, not staging"
    );
    w.drive(10_000);
    assert_eq!(
        done(&mut w.engines[1], v),
        (ok(0, 0, 5000), payload(1, 5000))
    );
}

#[test]
fn payload_reads_straight_into_the_user_buffer_honour_their_cap() {
    let mut w = World::new(2, small_config(), 11);
    let v = recv(&mut w.engines[1], from(0), tag(0), 5000);
    send(
        &mut w.engines[0],
        1,
        0,
        payload(3, 5000),
        SendMode::Standard,
    );
    while !matches!(w.engines[1].peers[0].rx.state, rx::RxState::Data { .. }) {
        assert!(w.step(), "DATA never started");
    }
    // Read the payload 1000 bytes at a time, as a capped transport does.
    let mut reads = 0;
    while matches!(w.engines[1].peers[0].rx.state, rx::RxState::Data { .. }) {
        let queued = queued_bytes(&w.engines[0], 1);
        let (a, b) = w.engines.split_at_mut(1);
        let target = b[0].recv_target_at_most(r(0), 1000);
        assert!(
            !target.is_empty() && target.len() <= 1000,
            "{}",
            target.len()
        );
        let n = target.len().min(queued.len());
        target[..n].copy_from_slice(&queued[..n]);
        b[0].received(r(0), n).expect("valid bytes");
        a[0].transmitted(r(1), n);
        reads += 1;
    }
    assert!(reads >= 4, "5000 bytes in reads of at most 1000: {reads}");
    w.drive(10_000);
    assert_eq!(
        done(&mut w.engines[1], v),
        (ok(0, 0, 5000), payload(3, 5000))
    );
}

/// The bytes `e` has queued for `peer`.
pub(super) fn queued_bytes(e: &Engine, peer: u32) -> Vec<u8> {
    let mut slices = Slices::new();
    e.transmit_slices(r(peer), &mut slices, usize::MAX);
    slices.iter().flat_map(|s| s.iter().copied()).collect()
}

/// The kinds of the frames `e` has queued for `peer`, in order.
pub(super) fn queued_kinds(e: &Engine, peer: u32) -> Vec<frame::Kind> {
    let bytes = queued_bytes(e, peer);
    let mut kinds = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let head: &[u8; frame::HEADER_LEN] = bytes[at..at + frame::HEADER_LEN]
            .try_into()
            .expect("a whole header");
        let h = frame::Header::decode(head).expect("a valid header");
        at += frame::HEADER_LEN + h.payload_len() as usize;
        kinds.push(h.kind);
    }
    kinds
}

#[test]
fn a_lone_send_goes_eager_up_to_its_own_limit_and_a_queued_one_does_not() {
    use frame::Kind::{Eager, Rts};
    let config = EngineConfig {
        eager_limit: 4096,
        eager_limit_lone: 4096,
        ..small_config()
    };
    let mut e = Engine::new(r(0), 2, config);
    e.limit_eager(r(1), 256, 1024, 1024);
    // Nothing queued to rank 1: 512 bytes go eager.
    send(&mut e, 1, 0, payload(1, 512), SendMode::Standard);
    assert_eq!(queued_kinds(&e, 1), [Eager]);
    // Behind it, the same size asks for a rendezvous; small ones stay eager.
    send(&mut e, 1, 1, payload(2, 512), SendMode::Standard);
    send(&mut e, 1, 2, payload(3, 100), SendMode::Standard);
    assert_eq!(queued_kinds(&e, 1), [Eager, Rts, Eager]);
    // Once everything is written, a lone send above the lone limit is a
    // rendezvous again.
    take_wire(&mut e, 1);
    send(&mut e, 1, 3, payload(4, 2048), SendMode::Standard);
    assert_eq!(queued_kinds(&e, 1), [Rts]);
    // The lone limit never exceeds the configured eager limit, nor falls
    // below the stream's.
    e.limit_eager(r(1), 256, 1 << 20, 1 << 20);
    assert_eq!(e.peers[1].eager_limit_lone, 4096);
    e.limit_eager(r(1), 256, 16, 16);
    assert_eq!(e.peers[1].eager_limit_lone, 256);
}

#[test]
fn an_expected_send_goes_eager_up_to_its_own_limit_even_in_a_stream() {
    use frame::Kind::{Eager, Rts};
    let config = EngineConfig {
        eager_limit: 4096,
        eager_limit_lone: 4096,
        eager_limit_expected: 8192,
        ..small_config()
    };
    let mut a = Engine::new(r(0), 2, config.clone());
    let mut b = Engine::new(r(1), 2, config);
    a.limit_eager(r(1), 256, 1024, 2048);
    // Behind a queued message, where a standard send of the same size asks
    // first, an expected one goes eager; above its limit it asks too.
    send(&mut a, 1, 0, payload(1, 100), SendMode::Standard);
    send(&mut a, 1, 1, payload(2, 2048), SendMode::Standard);
    send(&mut a, 1, 2, payload(3, 2048), SendMode::Expected);
    send(&mut a, 1, 3, payload(4, 2049), SendMode::Expected);
    assert_eq!(queued_kinds(&a, 1), [Eager, Rts, Eager, Rts]);
    let first = take_wire(&mut a, 1);
    // Written, a one-way stream of expected sends stays eager.
    send(&mut a, 1, 4, payload(5, 2048), SendMode::Expected);
    assert_eq!(queued_kinds(&a, 1), [Eager]);
    let wire = [first, take_wire(&mut a, 1)].concat();
    // The receiver accepts them and every message arrives whole, in order.
    b.received_from(r(0), &wire).unwrap();
    for (t, (id, len)) in [(1, 100), (2, 2048), (3, 2048), (4, 2049), (5, 2048)]
        .into_iter()
        .enumerate()
    {
        let v = recv(&mut b, from(0), tag(t as i32), len);
        if len == 2049 || t == 1 {
            // A rendezvous needs its CTS answered.
            a.received_from(r(1), &take_wire(&mut b, 0)).unwrap();
            b.received_from(r(0), &take_wire(&mut a, 1)).unwrap();
        }
        assert_eq!(done(&mut b, v), (ok(0, t as i32, len), payload(id, len)));
    }
    // The expected limit never exceeds the configured one, nor falls below
    // the lone one.
    a.limit_eager(r(1), 256, 1024, 1 << 20);
    assert_eq!(a.peers[1].eager_limit_expected, 8192);
    a.limit_eager(r(1), 256, 1024, 16);
    assert_eq!(a.peers[1].eager_limit_expected, 1024);
}

#[test]
fn a_second_large_lone_eager_waits_until_the_peer_has_sent_something() {
    use frame::Kind::{Eager, Rts};
    let config = EngineConfig {
        eager_limit: 4096,
        eager_limit_lone: 4096,
        ..small_config()
    };
    let mut a = Engine::new(r(0), 2, config.clone());
    let mut b = Engine::new(r(1), 2, config);
    a.limit_eager(r(1), 256, 1024, 1024);
    // A lone 512-byte message goes eager; once it is written, the next one
    // finds the queue empty but is part of a one-way stream: rendezvous.
    send(&mut a, 1, 0, payload(1, 512), SendMode::Standard);
    assert_eq!(queued_kinds(&a, 1), [Eager]);
    let first = take_wire(&mut a, 1);
    send(&mut a, 1, 1, payload(2, 512), SendMode::Standard);
    assert_eq!(queued_kinds(&a, 1), [Rts]);
    let second = take_wire(&mut a, 1);
    // Messages within the stream limit are never held back.
    send(&mut a, 1, 2, payload(3, 200), SendMode::Standard);
    assert_eq!(queued_kinds(&a, 1), [Eager]);
    let third = take_wire(&mut a, 1);
    // Rank 1 answers (a ping-pong): the next lone one may go eager again.
    send(&mut b, 0, 9, payload(4, 8), SendMode::Standard);
    a.received_from(r(1), &take_wire(&mut b, 0)).unwrap();
    send(&mut a, 1, 3, payload(5, 512), SendMode::Standard);
    assert_eq!(queued_kinds(&a, 1), [Eager]);
    // Every message still arrives whole and in order.
    let wire = [first, second, third, take_wire(&mut a, 1)].concat();
    b.received_from(r(0), &wire).unwrap();
    for (t, (id, len)) in [(1, 512), (2, 512), (3, 200), (5, 512)]
        .into_iter()
        .enumerate()
    {
        let v = recv(&mut b, from(0), tag(t as i32), len);
        if t == 1 {
            // The rendezvous needs its CTS answered.
            a.received_from(r(1), &take_wire(&mut b, 0)).unwrap();
            b.received_from(r(0), &take_wire(&mut a, 1)).unwrap();
        }
        assert_eq!(done(&mut b, v), (ok(0, t as i32, len), payload(id, len)));
    }
}

/// Everything `e` has queued for `peer`, marked written.
pub(super) fn take_wire(e: &mut Engine, peer: u32) -> Vec<u8> {
    let bytes = queued_bytes(e, peer);
    e.transmitted(r(peer), bytes.len());
    bytes
}

#[test]
fn a_large_eager_payload_for_a_posted_receive_lands_in_its_buffer_as_it_comes() {
    // small_config: eager up to 256 bytes, direct reads above 64.
    let mut a = Engine::new(r(0), 2, small_config());
    let mut b = Engine::new(r(1), 2, small_config());
    let v = recv(&mut b, from(0), tag(5), 250);
    send(&mut a, 1, 5, payload(7, 200), SendMode::Synchronous);
    send(&mut a, 1, 6, payload(8, 3), SendMode::Standard);
    let wire = take_wire(&mut a, 1);
    // The header and 10 payload bytes: matched now, the rest goes straight
    // into the user's buffer, and the synchronous sender is acknowledged.
    b.received_from(r(0), &wire[..frame::HEADER_LEN + 10])
        .unwrap();
    assert!(matches!(
        b.peers[0].rx.state,
        rx::RxState::Data {
            offset: 10,
            len: 200,
            ..
        }
    ));
    assert_eq!(queued_kinds(&b, 0), [frame::Kind::Ack]);
    let target = b.recv_target(r(0));
    assert_eq!(target.len(), 190, "the rest of the user's buffer");
    target.copy_from_slice(&wire[frame::HEADER_LEN + 10..frame::HEADER_LEN + 200]);
    b.received(r(0), 190).unwrap();
    let (status, data) = done(&mut b, v);
    assert_eq!(status, ok(0, 5, 200));
    assert_eq!(data[..200], payload(7, 200)[..]);
    // The frame after it parses as usual.
    b.received_from(r(0), &wire[frame::HEADER_LEN + 200..])
        .unwrap();
    let w = recv(&mut b, from(0), tag(6), 3);
    assert_eq!(done(&mut b, w), (ok(0, 6, 3), payload(8, 3)));
}

#[test]
fn a_large_eager_payload_for_a_short_posted_receive_is_dropped_with_truncated() {
    let mut a = Engine::new(r(0), 2, small_config());
    let mut b = Engine::new(r(1), 2, small_config());
    let v = recv(&mut b, from(0), tag(1), 100);
    send(&mut a, 1, 1, payload(1, 200), SendMode::Standard);
    send(&mut a, 1, 2, payload(2, 5), SendMode::Standard);
    let wire = take_wire(&mut a, 1);
    for chunk in wire.chunks(37) {
        b.received_from(r(0), chunk).unwrap();
    }
    assert!(matches!(
        done(&mut b, v).0,
        Err(OpError::Truncated {
            message_len: 200,
            buffer_len: 100,
            ..
        })
    ));
    let w = recv(&mut b, from(0), tag(2), 5);
    assert_eq!(done(&mut b, w), (ok(0, 2, 5), payload(2, 5)));
}
