//! Point-to-point behaviour over the real engine and TCP transport, with
//! ranks as threads (`mpr::local::run`).

use mpr::{ANY_SOURCE, ANY_TAG, Error, PROC_NULL, Rank, Request, Tag};

#[test]
fn ring_passes_a_token_around_every_rank() {
    for n in 1..=6u32 {
        let results = mpr::local::run(n, |world| {
            let (rank, size) = (world.rank(), world.size());
            let next = (rank + 1) % size;
            let prev = (rank + size - 1) % size;
            let mut token = [0u64];
            if rank == 0 {
                world.send(&[1u64], next, 0)?;
                world.recv(&mut token, prev, 0)?;
            } else {
                world.recv(&mut token, prev, 0)?;
                world.send(&[token[0] + 1], next, 0)?;
            }
            Ok::<u64, Error>(token[0])
        });
        assert_eq!(results[0].as_ref().unwrap(), &(n as u64), "ring of {n}");
    }
}

#[test]
fn messages_of_every_protocol_size_arrive_intact() {
    // Over shared memory: inline, eager through the ring, a lone message
    // by single copy from 16 KiB (eager), rendezvous messages pulled by the
    // receiver up to 512 KiB, the ring again above.
    let sizes = [
        0usize,
        1,
        7,
        4096,
        16_383,
        16_384,
        16_385,
        24_000,
        32_768,
        65_536,
        65_537,
        1 << 20,
        9 << 20,
    ];
    mpr::local::run(2, |world| {
        for (i, &len) in sizes.iter().enumerate() {
            let tag = i as i32;
            if world.rank() == 0 {
                let data: Vec<u8> = (0..len).map(|x| (x * 7 + i) as u8).collect();
                world.send(&data, 1, tag).unwrap();
            } else {
                let mut buf = vec![0u8; len + 3];
                let status = world.recv(&mut buf, 0, tag).unwrap();
                assert_eq!(status.len, len);
                assert_eq!(status.source, Rank(0));
                assert_eq!(status.tag, Tag(tag));
                assert!(
                    buf[..len]
                        .iter()
                        .enumerate()
                        .all(|(x, &b)| b == (x * 7 + i) as u8)
                );
            }
        }
    });
}

#[test]
fn truncation_is_an_error_with_both_lengths() {
    for len in [100usize, 200_000] {
        mpr::local::run(2, |world| {
            if world.rank() == 0 {
                world.send(&vec![1u8; len], 1, 3).unwrap();
                world.send(&[9u8], 1, 4).unwrap();
            } else {
                let mut small = vec![0u8; 10];
                match world.recv(&mut small, 0, 3) {
                    Err(Error::Truncated {
                        message_len,
                        buffer_len,
                        sender,
                        ..
                    }) => {
                        assert_eq!((message_len, buffer_len, sender), (len, 10, Rank(0)));
                    }
                    other => panic!("expected truncation, got {other:?}"),
                }
                // The truncated message was consumed: the next one arrives.
                let mut next = [0u8];
                world.recv(&mut next, 0, 4).unwrap();
                assert_eq!(next, [9]);
            }
        });
    }
}

#[test]
fn wildcards_and_status_report_the_real_sender_and_tag() {
    mpr::local::run(4, |world| {
        if world.rank() == 0 {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let mut x = [0u32];
                let status = world.recv(&mut x, ANY_SOURCE, ANY_TAG).unwrap();
                assert_eq!(status.source.0, x[0]);
                assert_eq!(status.tag.0, 10 + x[0] as i32);
                seen.push(x[0]);
            }
            seen.sort();
            assert_eq!(seen, [1, 2, 3]);
        } else {
            world
                .send(&[world.rank()], 0, 10 + world.rank() as i32)
                .unwrap();
        }
    });
}

#[test]
fn proc_null_completes_at_once_and_bad_ranks_and_tags_are_errors() {
    mpr::local::run(2, |world| {
        world.send(&[1u8], PROC_NULL, 0).unwrap();
        let mut buf = [7u8];
        let status = world.recv(&mut buf, PROC_NULL, 0).unwrap();
        assert_eq!((status.source, status.len, buf), (PROC_NULL, 0, [7]));
        assert!(matches!(
            world.send(&[1u8], 5, 0),
            Err(Error::InvalidRank { .. })
        ));
        assert!(matches!(
            world.send(&[1u8], 1, -3),
            Err(Error::InvalidTag { .. })
        ));
    });
}

#[test]
fn nonblocking_owned_and_scoped_requests_complete() {
    mpr::local::run(2, |world| {
        let peer = 1 - world.rank();
        let recv = world.irecv(vec![0u64; 1000], peer, 1).unwrap();
        let send = world
            .isend((0..1000u64).collect::<Vec<_>>(), peer, 1)
            .unwrap();
        let (data, status) = recv.wait().unwrap();
        assert_eq!(status.count::<u64>(), 1000);
        assert_eq!(data[999], 999);
        assert_eq!(send.wait().unwrap().len(), 1000);

        let big: Vec<u32> = (0..300_000).collect();
        let mut back = vec![0u32; 300_000];
        let statuses = world
            .scope(|s| {
                let r = s.irecv(&mut back, peer, 2)?;
                let w = s.issend(&big, peer, 2)?;
                mpr::wait_all([r, w])
            })
            .unwrap();
        assert_eq!(statuses.len(), 2);
        assert_eq!(back, big);
    });
}

#[test]
fn small_sends_written_at_once_keep_their_order_among_large_ones() {
    // Over shared memory a small send to an idle peer is written at once
    // (no request); behind a queued or rendezvous message it is not. On
    // one tag, every message must still arrive in the order sent.
    let sizes = [
        8usize,
        100_000,
        8,
        3000,
        1 << 20,
        1,
        1,
        40_000,
        8,
        0,
        5000,
        8,
    ];
    mpr::local::run(2, |world| {
        if world.rank() == 0 {
            let payloads: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| vec![i as u8; n])
                .collect();
            world
                .scope(|s| {
                    let mut requests = Vec::new();
                    for payload in &payloads {
                        requests.push(s.isend(payload, 1, 7)?);
                    }
                    let statuses = mpr::wait_all(requests)?;
                    for (status, &n) in statuses.iter().zip(&sizes) {
                        assert_eq!(
                            (status.source, status.tag, status.len),
                            (Rank(0), Tag(7), n)
                        );
                    }
                    Ok::<(), Error>(())
                })
                .unwrap();
            // Owned and blocking sends too.
            let status = world.isend(vec![9u8; 16], 1, 8).unwrap().wait().unwrap();
            assert_eq!(status.len(), 16);
            world.send(&[10u8; 24], 1, 8).unwrap();
        } else {
            for (i, &n) in sizes.iter().enumerate() {
                let mut buf = vec![0xffu8; 1 << 20];
                let status = world.recv(&mut buf, 0, 7).unwrap();
                assert_eq!(status.len, n, "message {i} arrived in order");
                assert!(buf[..n].iter().all(|&b| b == i as u8));
            }
            let mut buf = [0u8; 32];
            assert_eq!(world.recv(&mut buf, 0, 8).unwrap().len, 16);
            assert_eq!(buf[..16], [9u8; 16]);
            assert_eq!(world.recv(&mut buf, 0, 8).unwrap().len, 24);
            assert_eq!(buf[..24], [10u8; 24]);
        }
    });
}

#[test]
fn leaked_scoped_request_is_still_completed_by_its_scope() {
    mpr::local::run(2, |world| {
        let peer = 1 - world.rank();
        let mut buf = vec![0u8; 1 << 20];
        let data = vec![5u8; 1 << 20];
        world.scope(|s| {
            let r = s.irecv(&mut buf, peer, 0).unwrap();
            std::mem::forget(r);
            let w = s.isend(&data, peer, 0).unwrap();
            std::mem::forget(w);
        });
        assert!(buf.iter().all(|&b| b == 5));
    });
}

#[test]
fn wait_any_and_wait_some_return_each_request_once() {
    mpr::local::run(3, |world| {
        if world.rank() == 0 {
            let mut requests: Vec<_> = (1..3)
                .map(|p| world.irecv(vec![0u32; 1], p, 0).unwrap())
                .collect();
            let mut got = Vec::new();
            while let Some((_, result)) = mpr::wait_any(&mut requests) {
                got.push(result.unwrap().0[0]);
            }
            got.sort();
            assert_eq!(got, [1, 2]);
            let mut requests: Vec<_> = (1..3)
                .map(|p| world.irecv(vec![0u32; 1], p, 1).unwrap())
                .collect();
            let mut count = 0;
            while !requests.is_empty() {
                count += mpr::wait_some(&mut requests).len();
            }
            assert_eq!(count, 2);
        } else {
            world.send(&[world.rank()], 0, 0).unwrap();
            world.send(&[world.rank()], 0, 1).unwrap();
        }
    });
}

#[test]
fn probe_mprobe_and_objects() {
    mpr::local::run(2, |world| {
        if world.rank() == 0 {
            world.send(&[1u16, 2, 3], 1, 5).unwrap();
            world
                .send_obj(&vec!["a".to_string(), "bc".to_string()], 1, 6)
                .unwrap();
            world.send(&vec![3u8; 200_000], 1, 7).unwrap();
        } else {
            let status = world.probe(0, 5).unwrap();
            assert_eq!(status.count::<u16>(), 3);
            let mut buf = [0u16; 3];
            world.recv(&mut buf, 0, 5).unwrap();
            assert_eq!(buf, [1, 2, 3]);
            let (value, _) = world.recv_obj::<Vec<String>>(0, 6).unwrap();
            assert_eq!(value, ["a", "bc"]);
            let (message, status) = world.mprobe(0, 7).unwrap();
            assert_eq!(status.len, 200_000);
            let (data, _) = message.recv_vec::<u8>().unwrap();
            assert_eq!(data.len(), 200_000);
            assert!(world.iprobe(0, ANY_TAG).unwrap().is_none());
        }
    });
}

#[test]
fn sendrecv_exchanges_between_pairs_without_deadlock() {
    mpr::local::run(4, |world| {
        let size = world.size();
        let right = (world.rank() + 1) % size;
        let left = (world.rank() + size - 1) % size;
        let send = vec![world.rank(); 100_000];
        let mut recv = vec![0u32; 100_000];
        world.sendrecv(&send, right, 0, &mut recv, left, 0).unwrap();
        assert!(recv.iter().all(|&x| x == left));
    });
}

#[test]
fn a_peer_that_dies_fails_pending_operations_with_an_error_naming_it() {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    let observed = Mutex::new(None);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        mpr::local::run(3, |world| match world.rank() {
            1 => {
                let mut byte = [0u8];
                world.send(&[1u8], 0, 0).unwrap();
                world.recv(&mut byte, 0, 0).unwrap();
                panic!("rank 1 dies on purpose");
            }
            0 => {
                let mut byte = [0u8];
                world.recv(&mut byte, 1, 0).unwrap();
                world.send(&[2u8], 1, 0).unwrap();
                let started = Instant::now();
                let result = world.recv(&mut byte, 1, 1);
                *observed.lock().unwrap() = Some((result, started.elapsed()));
                // Later receives from the dead rank fail at once, and the
                // survivors can still talk to each other.
                assert!(matches!(
                    world.recv(&mut byte, 1, 2),
                    Err(Error::PeerFailed { .. })
                ));
                world.send(&[5u8], 2, 0).unwrap();
            }
            _ => {
                let mut byte = [0u8];
                world.recv(&mut byte, 0, 0).unwrap();
                assert_eq!(byte, [5]);
            }
        })
    }));
    assert!(outcome.is_err(), "the dead rank's panic reaches the caller");
    let (result, elapsed) = observed.lock().unwrap().take().expect("rank 0 finished");
    assert!(
        matches!(result, Err(Error::PeerFailed { rank: Rank(1) })),
        "expected PeerFailed for rank 1, got {result:?}"
    );
    assert!(
        elapsed < Duration::from_secs(1),
        "noticed after {elapsed:?}"
    );
}

#[test]
fn communicators_and_statuses_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<mpr::Comm>();
    assert_send_sync::<mpr::Status>();
    assert_send_sync::<mpr::Error>();
    // Two threads of one rank use the same communicator at once.
    mpr::local::run(2, |world| {
        let peer = 1 - world.rank();
        std::thread::scope(|s| {
            for tag in 0..2 {
                let world = &world;
                s.spawn(move || {
                    for i in 0..200u32 {
                        world.send(&[i], peer, tag).unwrap();
                        let mut x = [0u32];
                        world.recv(&mut x, peer, tag).unwrap();
                        assert_eq!(x, [i]);
                    }
                });
            }
        });
    });
}
