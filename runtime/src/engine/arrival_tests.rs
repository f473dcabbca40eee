//! Unit tests of large eager payloads that arrive before their receive
//! (`arrival.rs`).

use super::frame::{HEADER_LEN, Kind};
use super::rx::RxState;
use super::sim::{payload, small_config};
use super::tests::{done, from, ok, queued_kinds, r, recv, send, tag, take_wire};
use super::*;

/// Rank 1 of a 2-rank world and the wire rank 0 sent it: a 200-byte eager
/// message with tag 5 (`small_config`: eager up to 256 bytes, direct reads
/// above 64), then 3 bytes with tag 6.
fn unexpected_pair(mode: SendMode) -> (Engine, Vec<u8>) {
    let mut a = Engine::new(r(0), 2, small_config());
    let b = Engine::new(r(1), 2, small_config());
    send(&mut a, 1, 5, payload(7, 200), mode);
    send(&mut a, 1, 6, payload(8, 3), SendMode::Standard);
    (b, take_wire(&mut a, 1))
}

fn arriving(e: &Engine) -> bool {
    matches!(e.peers[0].rx.state, RxState::Arriving { .. })
}

#[test]
fn an_unexpected_large_eager_payload_is_read_into_an_arrival_and_matched_whole() {
    let (mut b, wire) = unexpected_pair(SendMode::Standard);
    b.received_from(r(0), &wire[..HEADER_LEN + 10]).unwrap();
    assert!(arriving(&b), "no receive was posted: an arrival starts");
    assert_eq!(
        b.iprobe(from(0), ContextId(0), tag(5)).map(|s| s.len),
        Some(200),
        "the message is matchable from its header on"
    );
    assert_eq!(b.unexpected_bytes(r(0)), 200);
    let target = b.recv_target(r(0));
    assert_eq!(target.len(), 190, "the rest goes straight into the arrival");
    target.copy_from_slice(&wire[HEADER_LEN + 10..HEADER_LEN + 200]);
    b.received(r(0), 190).unwrap();
    assert_eq!(b.peers[0].rx.state, RxState::Header);
    b.received_from(r(0), &wire[HEADER_LEN + 200..]).unwrap();
    let v = recv(&mut b, from(0), tag(5), 250);
    let (status, data) = done(&mut b, v);
    assert_eq!(status, ok(0, 5, 200));
    assert_eq!(data[..200], payload(7, 200)[..]);
    assert_eq!(b.unexpected_bytes(r(0)), 3, "only the short message waits");
    let w = recv(&mut b, from(0), tag(6), 3);
    assert_eq!(done(&mut b, w), (ok(0, 6, 3), payload(8, 3)));
    assert_eq!(b.arrivals.matched, (1, 0));
}

#[test]
fn a_receive_posted_while_a_payload_arrives_takes_over_its_stream() {
    let (mut b, wire) = unexpected_pair(SendMode::Synchronous);
    b.received_from(r(0), &wire[..HEADER_LEN + 10]).unwrap();
    let target = b.recv_target(r(0));
    target[..90].copy_from_slice(&wire[HEADER_LEN + 10..HEADER_LEN + 100]);
    b.received(r(0), 90).unwrap();
    assert!(arriving(&b));
    assert!(queued_kinds(&b, 0).is_empty(), "no ACK before the match");
    let v = recv(&mut b, from(0), tag(5), 250);
    assert!(
        matches!(
            b.peers[0].rx.state,
            RxState::Data {
                offset: 100,
                len: 200,
                ..
            }
        ),
        "the rest is now DATA for the receive"
    );
    assert_eq!(queued_kinds(&b, 0), [Kind::Ack], "matched: acknowledged");
    let target = b.recv_target(r(0));
    assert_eq!(target.len(), 100, "the rest of the user's buffer");
    target.copy_from_slice(&wire[HEADER_LEN + 100..HEADER_LEN + 200]);
    b.received(r(0), 100).unwrap();
    let (status, data) = done(&mut b, v);
    assert_eq!(status, ok(0, 5, 200));
    assert_eq!(data[..200], payload(7, 200)[..]);
    b.received_from(r(0), &wire[HEADER_LEN + 200..]).unwrap();
    let w = recv(&mut b, from(0), tag(6), 3);
    assert_eq!(done(&mut b, w), (ok(0, 6, 3), payload(8, 3)));
    assert_eq!(b.arrivals.matched, (0, 1));
}

#[test]
fn a_short_receive_posted_while_a_payload_arrives_fails_and_the_rest_is_dropped() {
    let (mut b, wire) = unexpected_pair(SendMode::Standard);
    b.received_from(r(0), &wire[..HEADER_LEN + 50]).unwrap();
    let v = recv(&mut b, from(0), tag(5), 100);
    assert!(matches!(
        done(&mut b, v).0,
        Err(OpError::Truncated {
            message_len: 200,
            buffer_len: 100,
            ..
        })
    ));
    for chunk in wire[HEADER_LEN + 50..].chunks(37) {
        b.received_from(r(0), chunk).unwrap();
    }
    let w = recv(&mut b, from(0), tag(6), 3);
    assert_eq!(done(&mut b, w), (ok(0, 6, 3), payload(8, 3)));
}

#[test]
fn a_payload_cut_by_a_lost_link_fails_its_receive_and_a_whole_one_survives() {
    let mut a = Engine::new(r(0), 2, small_config());
    let mut b = Engine::new(r(1), 2, small_config());
    send(&mut a, 1, 1, payload(1, 200), SendMode::Standard);
    send(&mut a, 1, 2, payload(2, 200), SendMode::Standard);
    let wire = take_wire(&mut a, 1);
    // The first payload whole, the second cut after 20 bytes.
    let cut = 2 * HEADER_LEN + 200 + 20;
    for chunk in wire[..cut].chunks(100) {
        b.received_from(r(0), chunk).unwrap();
    }
    assert!(arriving(&b));
    b.peer_failed(r(0));
    let whole = recv(&mut b, from(0), tag(1), 200);
    assert_eq!(done(&mut b, whole), (ok(0, 1, 200), payload(1, 200)));
    let cut_off = recv(&mut b, from(0), tag(2), 200);
    assert_eq!(
        done(&mut b, cut_off).0,
        Err(OpError::PeerFailed { rank: r(0) })
    );
}

#[test]
fn a_message_taken_by_improbe_while_it_arrives_is_received_whole() {
    let (mut b, wire) = unexpected_pair(SendMode::Standard);
    b.received_from(r(0), &wire[..HEADER_LEN + 30]).unwrap();
    let (handle, status) = b
        .improbe(from(0), ContextId(0), tag(5))
        .expect("matchable while arriving");
    assert_eq!(status, ok(0, 5, 200).unwrap());
    for chunk in wire[HEADER_LEN + 30..].chunks(41) {
        b.received_from(r(0), chunk).unwrap();
    }
    let v = b.post_mrecv(handle, Box::new(vec![0u8; 200]).into());
    assert_eq!(done(&mut b, v), (ok(0, 5, 200), payload(7, 200)));
    let w = recv(&mut b, from(0), tag(6), 3);
    assert_eq!(done(&mut b, w), (ok(0, 6, 3), payload(8, 3)));
}
