//! Tests of the failure paths: protocol errors, GOODBYE, lost peers and
//! garbage input.

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::frame::{FLAG_SYNC, Header, Kind};
use super::sim::{World, payload, small_config};
use super::tests::{C, done, from, ok, r, recv, send, tag};
use super::*;

/// A frame to feed: header and payload.
type Frame<'a> = (Header, &'a [u8]);

/// Feeds `frames` to rank 1 of a 3-rank world as coming from rank 0.
fn feed(frames: &[Frame<'_>]) -> (Engine, Result<(), ProtocolError>) {
    let mut e = Engine::new(r(1), 3, small_config());
    let mut bytes = Vec::new();
    for (h, p) in frames {
        bytes.extend_from_slice(&h.encode());
        bytes.extend_from_slice(p);
    }
    let target = e.recv_target(r(0));
    target[..bytes.len()].copy_from_slice(&bytes);
    let result = e.received(r(0), bytes.len());
    (e, result)
}

fn header(kind: Kind, id: u64, arg: u64) -> Header {
    Header {
        id,
        arg,
        ..Header::new(kind, r(0))
    }
}

#[test]
fn protocol_errors_are_reported_and_stick() {
    let peer = r(0);
    let cases: Vec<(Vec<Frame<'_>>, ProtocolError)> = vec![
        (
            vec![(Header::new(Kind::Goodbye, r(2)), b"")],
            ProtocolError::SourceMismatch { peer, claimed: 2 },
        ),
        (
            vec![(header(Kind::Hello, 0, 0), b"")],
            ProtocolError::UnexpectedKind {
                peer,
                kind: Kind::Hello,
            },
        ),
        (
            vec![(header(Kind::Data, 77, 0), b"")],
            ProtocolError::UnknownRecv { peer, id: 77 },
        ),
        (
            vec![(header(Kind::Cts, 77, 1), b"")],
            ProtocolError::UnknownSend {
                peer,
                kind: Kind::Cts,
                id: 77,
            },
        ),
        (
            vec![(header(Kind::Ack, 1, 0), b"")],
            ProtocolError::UnknownSend {
                peer,
                kind: Kind::Ack,
                id: 1,
            },
        ),
        (
            vec![(header(Kind::Eager, 0, 257), b"")],
            ProtocolError::EagerTooLong {
                peer,
                len: 257,
                limit: 256,
            },
        ),
        (
            vec![(header(Kind::Credit, 0, 1), b"")],
            ProtocolError::CreditOverflow { peer, returned: 1 },
        ),
        (
            vec![
                (header(Kind::Goodbye, 0, 0), b""),
                (header(Kind::Rts, 0, 5), b""),
            ],
            ProtocolError::AfterGoodbye { peer },
        ),
    ];
    for (frames, expected) in cases {
        let (mut e, result) = feed(&frames);
        assert_eq!(result, Err(expected.clone()));
        assert_eq!(
            e.received(peer, 0),
            Err(expected.clone()),
            "the error sticks"
        );
        let v = recv(&mut e, from(0), tag(0), 1);
        assert!(!e.is_complete(v) || e.peer_said_goodbye(peer));
        e.peer_failed(peer);
        if !e.peer_said_goodbye(peer) {
            assert_eq!(
                done(&mut e, v).0,
                Err(OpError::ProtocolError {
                    rank: peer,
                    error: expected
                })
            );
        }
    }
    // Credit: 64 RTS fill a 4096-byte window, the 65th is one too many.
    let rts = (header(Kind::Rts, 0, 1000), &b""[..]);
    let (_, result) = feed(&vec![rts; 65]);
    assert_eq!(
        result,
        Err(ProtocolError::CreditExceeded {
            peer,
            used: 4160,
            window: 4096
        })
    );
}

#[test]
fn goodbye_fails_what_needs_the_peer() {
    let mut w = World::new(2, small_config(), 11);
    send(&mut w.engines[0], 1, 0, payload(1, 10), SendMode::Standard);
    let pending_sync = send(
        &mut w.engines[1],
        0,
        0,
        payload(2, 10),
        SendMode::Synchronous,
    );
    w.drive(10_000);
    assert!(w.engines[0].peers_with_transmit().next().is_none());
    w.engines[0].queue_goodbye();
    w.engines[0].queue_goodbye();
    w.drive(10_000);
    let e = &mut w.engines[1];
    assert!(e.peer_said_goodbye(r(0)));
    assert_eq!(
        done(e, pending_sync).0,
        Err(OpError::PeerFinalized { rank: r(0) })
    );
    let buffered = recv(e, from(0), tag(0), 10);
    assert_eq!(
        done(e, buffered).0,
        ok(0, 0, 10),
        "what arrived can still be received"
    );
    let more = recv(e, from(0), tag(0), 10);
    assert_eq!(done(e, more).0, Err(OpError::PeerFinalized { rank: r(0) }));
    let any = recv(e, Source::Any, TagMatch::Any, 10);
    assert_eq!(
        done(e, any).0,
        Err(OpError::PeerFinalized { rank: r(0) }),
        "no remote peer left"
    );
    let lone = Engine::new(r(0), 3, small_config());
    let mut lone = lone;
    lone.queue_goodbye();
    assert!(
        lone.peers_with_transmit().next().is_none(),
        "GOODBYE only to peers with traffic"
    );
}

#[test]
fn peer_failure_mid_rendezvous_fails_everything_involving_it() {
    let mut w = World::new(3, small_config(), 12);
    w.max_chunk = 50;
    let big_recv = recv(&mut w.engines[1], from(0), tag(1), 4000);
    let big_send = send(
        &mut w.engines[0],
        1,
        1,
        payload(1, 3000),
        SendMode::Standard,
    );
    while !matches!(w.engines[1].peers[0].rx.state, rx::RxState::Data { offset, .. } if offset > 0)
    {
        assert!(w.step(), "DATA never started");
    }
    // More operations involving the link, none of which can finish now.
    let e0 = &mut w.engines[0];
    let sync = send(e0, 1, 2, payload(2, 10), SendMode::Synchronous);
    let flood: Vec<RequestId> = (0..70)
        .map(|i| send(e0, 1, 3, payload(i, 300), SendMode::Standard))
        .collect();
    assert!(
        !e0.peers[1].waiting.is_empty(),
        "some sends wait for credit"
    );
    let from1 = recv(e0, from(1), tag(0), 10);
    let any0 = recv(e0, Source::Any, TagMatch::Any, 10);
    let e1 = &mut w.engines[1];
    let from0 = recv(e1, from(0), tag(9), 10);
    let any1 = recv(e1, Source::Any, tag(9), 10);
    let before = (
        w.engines[0].pending_requests(),
        w.engines[1].pending_requests(),
    );
    assert_eq!(before, (1 + 1 + 70 + 2, 1 + 2));

    w.engines[0].peer_failed(r(1));
    w.engines[1].peer_failed(r(0));
    let failed = |rank| Err(OpError::PeerFailed { rank: r(rank) });
    let e0 = &mut w.engines[0];
    for id in [big_send, sync, from1].into_iter().chain(flood) {
        assert_eq!(done(e0, id).0, failed(1));
    }
    assert!(!e0.is_complete(any0), "rank 2 may still send");
    let e1 = &mut w.engines[1];
    assert_eq!(done(e1, big_recv).0, failed(0));
    assert_eq!(done(e1, from0).0, failed(0));
    assert!(!e1.is_complete(any1));
    let late = send(e1, 0, 0, vec![1], SendMode::Standard);
    assert_eq!(done(e1, late).0, failed(0));
    let late = recv(e1, from(0), TagMatch::Any, 1);
    assert_eq!(done(e1, late).0, failed(0));

    // The rest of the world still works; the last death fails ANY_SOURCE.
    send(&mut w.engines[2], 1, 9, payload(5, 10), SendMode::Standard);
    w.drive(10_000);
    assert_eq!(done(&mut w.engines[1], any1).0, ok(2, 9, 10));
    w.engines[0].peer_failed(r(2));
    assert_eq!(done(&mut w.engines[0], any0).0, failed(2));
    assert_eq!(w.engines[0].pending_requests(), 0);
    assert_eq!(w.engines[1].pending_requests(), 0);
}

#[test]
fn buffered_rts_from_a_failed_peer_fails_its_receive() {
    let mut w = World::new(3, small_config(), 13);
    send(
        &mut w.engines[0],
        1,
        0,
        payload(1, 1000),
        SendMode::Standard,
    );
    send(&mut w.engines[0], 1, 1, payload(2, 10), SendMode::Standard);
    w.drive(10_000);
    w.engines[1].peer_failed(r(0));
    let e = &mut w.engines[1];
    let v = recv(e, Source::Any, TagMatch::Any, 2000);
    assert_eq!(
        done(e, v).0,
        Err(OpError::PeerFailed { rank: r(0) }),
        "the RTS cannot be answered"
    );
    let v = recv(e, Source::Any, TagMatch::Any, 10);
    assert_eq!(
        done(e, v),
        (ok(0, 1, 10), payload(2, 10)),
        "the eager bytes are here"
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xf022);
    for round in 0..2000 {
        let mut e = Engine::new(r(1), 3, small_config());
        // Posted receives and a pending send give ids for stray frames to hit.
        let _ = recv(&mut e, from(0), tag(0), 100);
        let _ = send(&mut e, 0, 0, vec![0; 1000], SendMode::Synchronous);
        let mut stream = Vec::new();
        for _ in 0..rng.random_range(1..20) {
            let kind = Kind::from_u8(rng.random_range(3..=9)).expect("kind");
            let arg = if rng.random_bool(0.5) {
                rng.random_range(0..300)
            } else {
                rng.random()
            };
            let h = Header {
                kind,
                flags: if rng.random_bool(0.3) { FLAG_SYNC } else { 0 },
                context: C,
                source: if rng.random_bool(0.9) {
                    r(0)
                } else {
                    r(rng.random_range(0..4))
                },
                tag: Tag(rng.random_range(-1..2)),
                id: if rng.random_bool(0.5) {
                    rng.random_range(0..3)
                } else {
                    rng.random()
                },
                arg,
            };
            stream.extend_from_slice(&h.encode());
            if h.kind == Kind::Eager || h.kind == Kind::Data {
                stream.extend((0..arg.min(300)).map(|_| rng.random::<u8>()));
            }
        }
        for _ in 0..rng.random_range(0..4) {
            let at = rng.random_range(0..stream.len());
            stream[at] = rng.random();
        }
        if round % 10 == 0 {
            stream = (0..rng.random_range(0..500))
                .map(|_| rng.random())
                .collect();
        }
        let mut at = 0;
        while at < stream.len() {
            let target = e.recv_target(r(0));
            let n = rng
                .random_range(1..=64)
                .min(stream.len() - at)
                .min(target.len());
            target[..n].copy_from_slice(&stream[at..at + n]);
            at += n;
            if e.received(r(0), n).is_err() {
                e.peer_failed(r(0));
                break;
            }
        }
        let _ = e.peers_with_transmit().count();
    }
}
