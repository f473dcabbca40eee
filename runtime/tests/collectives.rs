//! Collectives and communicators over the real engine and TCP transport,
//! ranks as threads (`mpr::local::run`): every collective at sizes 1..=9,
//! every root, every algorithm forced in turn, against serial references;
//! split communicators; interleaving with point-to-point; bad arguments.

use std::sync::atomic::{AtomicU32, Ordering};

use mpr::op::{self, Loc};
use mpr::{ANY_SOURCE, ANY_TAG, Algorithm, Argument, Collective, Comm, Error, Rank};

const SIZES: std::ops::RangeInclusive<u32> = 1..=9;

/// Runs `body` on `n` ranks and fails the test with the first error.
fn on(n: u32, body: impl Fn(&Comm) -> Result<(), Error> + Sync) {
    let results = mpr::local::run(n, |world| body(&world));
    for (rank, result) in results.into_iter().enumerate() {
        if let Err(error) = result {
            panic!("size {n}: rank {rank} failed: {error}");
        }
    }
}

fn value(rank: u32, i: usize) -> u64 {
    (rank as u64 + 1) * 1000 + i as u64 * 7 + 3
}

/// Non-commutative, associative: affine maps `x -> a·x + b`, the left one
/// applied first.
fn affine(f: [u64; 2], g: [u64; 2]) -> [u64; 2] {
    [
        g[0].wrapping_mul(f[0]),
        g[0].wrapping_mul(f[1]).wrapping_add(g[1]),
    ]
}

fn affine_value(rank: u32, i: usize) -> [u64; 2] {
    [(rank as u64 * 3 + i as u64) % 5 + 2, value(rank, i)]
}

fn fold(
    f: impl Fn([u64; 2], [u64; 2]) -> [u64; 2],
    ranks: std::ops::Range<u32>,
    count: usize,
) -> Vec<[u64; 2]> {
    (0..count)
        .map(|i| {
            ranks
                .clone()
                .map(|r| affine_value(r, i))
                .reduce(&f)
                .unwrap_or([0, 0])
        })
        .collect()
}

fn sum_pair(a: [u64; 2], b: [u64; 2]) -> [u64; 2] {
    [a[0].wrapping_add(b[0]), a[1].wrapping_add(b[1])]
}

/// Forces each algorithm of `collective` in turn on `world` and runs `body`.
fn each_algorithm(
    world: &Comm,
    collective: Collective,
    mut body: impl FnMut(Algorithm) -> Result<(), Error>,
) -> Result<(), Error> {
    for &algorithm in collective.algorithms() {
        world.set_algorithm(collective, Some(algorithm))?;
        body(algorithm)?;
    }
    world.set_algorithm(collective, None)
}

#[test]
fn barrier_holds_every_rank_back_until_all_arrive_with_every_algorithm() {
    for n in SIZES {
        let arrived = AtomicU32::new(0);
        on(n, |world| {
            let mut round = 0;
            each_algorithm(world, Collective::Barrier, |algorithm| {
                for _ in 0..3 {
                    round += 1;
                    arrived.fetch_add(1, Ordering::SeqCst);
                    world.barrier()?;
                    assert!(
                        arrived.load(Ordering::SeqCst) >= round * n,
                        "{algorithm} at size {n}, round {round}"
                    );
                    world.barrier()?;
                }
                Ok(())
            })
        });
    }
}

#[test]
fn bcast_every_algorithm_root_and_size() {
    for n in SIZES {
        on(n, |world| {
            each_algorithm(world, Collective::Bcast, |algorithm| {
                for root in 0..n {
                    for count in [0usize, 1, 13, 20_000] {
                        let expected: Vec<u64> = (0..count).map(|i| value(root, i)).collect();
                        let mut buf = if world.rank() == root {
                            expected.clone()
                        } else {
                            vec![0; count]
                        };
                        world.bcast(&mut buf, root)?;
                        assert!(
                            buf == expected,
                            "bcast {algorithm} size {n} root {root} count {count}"
                        );
                    }
                }
                Ok(())
            })
        });
    }
}

#[test]
fn scatter_and_gather_every_algorithm_root_and_size() {
    for n in SIZES {
        on(n, |world| {
            let rank = world.rank() as usize;
            for block in [0usize, 1, 5] {
                for root in 0..n {
                    let all: Vec<u64> = (0..n as usize * block).map(|i| value(root, i)).collect();
                    let mine = &all[rank * block..(rank + 1) * block];
                    each_algorithm(world, Collective::Scatter, |algorithm| {
                        let send = if world.rank() == root {
                            all.clone()
                        } else {
                            Vec::new()
                        };
                        let mut recv = vec![0; block];
                        world.scatter(&send, &mut recv, root)?;
                        assert_eq!(recv, mine, "scatter {algorithm} size {n} root {root}");
                        Ok(())
                    })?;
                    each_algorithm(world, Collective::Gather, |algorithm| {
                        let mut recv = vec![0; if world.rank() == root { all.len() } else { 0 }];
                        world.gather(mine, &mut recv, root)?;
                        if world.rank() == root {
                            assert_eq!(recv, all, "gather {algorithm} size {n} root {root}");
                        }
                        Ok(())
                    })?;
                }
            }
            Ok(())
        });
    }
}

#[test]
fn scatterv_and_gatherv_with_uneven_counts() {
    for n in SIZES {
        on(n, |world| {
            let rank = world.rank() as usize;
            for root in 0..n {
                let counts: Vec<usize> = (0..n as usize)
                    .map(|r| (r * 7 + root as usize) % 5)
                    .collect();
                let total = counts.iter().sum();
                let offset: usize = counts[..rank].iter().sum();
                let all: Vec<u64> = (0..total).map(|i| value(root, i)).collect();
                let mine = &all[offset..offset + counts[rank]];
                let (send, root_counts) = if world.rank() == root {
                    (all.clone(), counts.clone())
                } else {
                    (Vec::new(), Vec::new())
                };
                let mut recv = vec![0; counts[rank]];
                world.scatterv(&send, &root_counts, &mut recv, root)?;
                assert_eq!(recv, mine, "scatterv size {n} root {root}");
                let mut gathered = vec![0; if world.rank() == root { total } else { 0 }];
                world.gatherv(mine, &mut gathered, &root_counts, root)?;
                if world.rank() == root {
                    assert_eq!(gathered, all, "gatherv size {n} root {root}");
                }
            }
            Ok(())
        });
    }
}

#[test]
fn reduce_in_rank_order_at_every_root() {
    for n in SIZES {
        on(n, |world| {
            let r = world.rank();
            for root in 0..n {
                // 20 000 pairs are 320 KB: over TCP the tree runs as a
                // pipeline of pieces (mpr_collectives::reduce_segment).
                for count in [0usize, 1, 13, 20_000] {
                    let mine: Vec<[u64; 2]> = (0..count).map(|i| affine_value(r, i)).collect();
                    let mut out = vec![[0, 0]; if r == root { count } else { 0 }];
                    world.reduce(&mine, &mut out, affine, root)?;
                    if r == root {
                        assert_eq!(
                            out,
                            fold(affine, 0..n, count),
                            "reduce affine size {n} root {root}"
                        );
                    }
                    world.reduce(&mine, &mut out, op::commutative(sum_pair), root)?;
                    if r == root {
                        assert_eq!(
                            out,
                            fold(sum_pair, 0..n, count),
                            "reduce sum size {n} root {root}"
                        );
                    }
                }
            }
            Ok(())
        });
    }
}

#[test]
fn allreduce_every_algorithm_commutative_or_not() {
    for n in SIZES {
        on(n, |world| {
            let r = world.rank();
            each_algorithm(world, Collective::Allreduce, |algorithm| {
                for count in [0usize, 1, 13, 3000] {
                    let mine: Vec<[u64; 2]> = (0..count).map(|i| affine_value(r, i)).collect();
                    let mut out = vec![[0, 0]; count];
                    world.allreduce(&mine, &mut out, affine)?;
                    assert!(
                        out == fold(affine, 0..n, count),
                        "allreduce {algorithm} affine size {n} count {count}"
                    );
                    let mut inplace = mine.clone();
                    world.allreduce_in_place(&mut inplace, op::commutative(sum_pair))?;
                    assert!(
                        inplace == fold(sum_pair, 0..n, count),
                        "allreduce {algorithm} sum size {n} count {count}"
                    );
                }
                Ok(())
            })
        });
    }
}

#[test]
fn builtin_ops_reduce_like_mpi() {
    on(5, |world| {
        let r = world.rank();
        let mut x = [0i64; 1];
        world.allreduce(&[r as i64 - 2], &mut x, op::Sum)?;
        assert_eq!(x, [0]);
        world.allreduce(&[r as i64 + 1], &mut x, op::Prod)?;
        assert_eq!(x, [120]);
        let mut f = [0f64; 2];
        world.allreduce(&[r as f64, -(r as f64)], &mut f, op::Min)?;
        assert_eq!(f, [0.0, -4.0]);
        world.allreduce(&[r as f64, -(r as f64)], &mut f, op::Max)?;
        assert_eq!(f, [4.0, 0.0]);
        let mut b = [0u8; 3];
        world.allreduce(
            &[u8::from(r > 0), u8::from(r == 3), u8::from(r % 2 == 0)],
            &mut b,
            op::LogicalAnd,
        )?;
        assert_eq!(b, [0, 0, 0]);
        world.allreduce(
            &[u8::from(r > 0), u8::from(r == 3), 0],
            &mut b,
            op::LogicalOr,
        )?;
        assert_eq!(b, [1, 1, 0]);
        world.allreduce(&[1, u8::from(r == 3), 0], &mut b, op::LogicalXor)?;
        assert_eq!(b, [1, 1, 0]);
        let mut bits = [0u32; 1];
        world.allreduce(&[1 << r], &mut bits, op::BitOr)?;
        assert_eq!(bits, [0b11111]);
        world.allreduce(&[!(1 << r)], &mut bits, op::BitAnd)?;
        assert_eq!(bits, [!0b11111]);
        world.allreduce(&[0b11 << r], &mut bits, op::BitXor)?;
        assert_eq!(bits, [0b100001]);
        let mut loc = [Loc::new(0.0f64, 0); 2];
        let value = [3.0, 1.0, 3.0, 0.5, 2.0][r as usize];
        world.allreduce(&[Loc::new(value, r as i32); 2], &mut loc, op::MaxLoc)?;
        assert_eq!((loc[0].value(), loc[0].index()), (3.0, 0));
        world.allreduce(&[Loc::new(value, r as i32); 2], &mut loc, op::MinLoc)?;
        assert_eq!((loc[1].value(), loc[1].index()), (0.5, 3));
        Ok(())
    });
}

#[test]
fn allgather_and_allgatherv_every_algorithm() {
    for n in SIZES {
        on(n, |world| {
            let r = world.rank();
            for (collective, counts) in [
                (Collective::Allgather, vec![3usize; n as usize]),
                (Collective::Allgather, vec![2_000; n as usize]),
                (
                    Collective::Allgatherv,
                    (0..n as usize).map(|i| (i * 5 + 1) % 4).collect(),
                ),
            ] {
                let mine: Vec<u64> = (0..counts[r as usize]).map(|i| value(r, i)).collect();
                let expected: Vec<u64> = (0..n)
                    .flat_map(|p| (0..counts[p as usize]).map(move |i| value(p, i)))
                    .collect();
                each_algorithm(world, collective, |algorithm| {
                    let mut out = vec![0; expected.len()];
                    if collective == Collective::Allgather {
                        world.allgather(&mine, &mut out)?;
                    } else {
                        world.allgatherv(&mine, &mut out, &counts)?;
                    }
                    assert!(
                        out == expected,
                        "{collective} {algorithm} size {n} counts {}",
                        counts[0]
                    );
                    Ok(())
                })?;
            }
            Ok(())
        });
    }
}

#[test]
fn alltoall_and_alltoallv_every_algorithm() {
    for n in SIZES {
        on(n, |world| {
            let (r, p) = (world.rank() as usize, n as usize);
            for block in [0usize, 1, 3, 9_000] {
                let send: Vec<u64> = (0..p * block).map(|i| value(r as u32, i)).collect();
                let expected: Vec<u64> = (0..p)
                    .flat_map(|i| (r * block..(r + 1) * block).map(move |x| value(i as u32, x)))
                    .collect();
                each_algorithm(world, Collective::Alltoall, |algorithm| {
                    let mut recv = vec![0; p * block];
                    world.alltoall(&send, &mut recv)?;
                    assert!(
                        recv == expected,
                        "alltoall {algorithm} size {n} block {block}"
                    );
                    Ok(())
                })?;
            }
            let count = |from: usize, to: usize| (from * 3 + to * 5) % 4;
            let send_counts: Vec<usize> = (0..p).map(|to| count(r, to)).collect();
            let recv_counts: Vec<usize> = (0..p).map(|from| count(from, r)).collect();
            let send: Vec<u64> = (0..send_counts.iter().sum())
                .map(|i| value(r as u32, i))
                .collect();
            let expected: Vec<u64> = (0..p)
                .flat_map(|from| {
                    let offset: usize = (0..r).map(|to| count(from, to)).sum();
                    (offset..offset + count(from, r)).map(move |i| value(from as u32, i))
                })
                .collect();
            each_algorithm(world, Collective::Alltoallv, |algorithm| {
                let mut recv = vec![0; expected.len()];
                world.alltoallv(&send, &send_counts, &mut recv, &recv_counts)?;
                assert_eq!(recv, expected, "alltoallv {algorithm} size {n}");
                Ok(())
            })
        });
    }
}

#[test]
fn scan_and_exscan_in_rank_order() {
    for n in SIZES {
        on(n, |world| {
            let r = world.rank();
            for count in [0usize, 1, 13] {
                let mine: Vec<[u64; 2]> = (0..count).map(|i| affine_value(r, i)).collect();
                let mut out = vec![[7, 7]; count];
                world.scan(&mine, &mut out, affine)?;
                assert_eq!(out, fold(affine, 0..r + 1, count), "scan size {n} rank {r}");
                let mut out = vec![[7, 7]; count];
                world.exscan(&mine, &mut out, affine)?;
                let expected = if r == 0 {
                    vec![[7, 7]; count]
                } else {
                    fold(affine, 0..r, count)
                };
                assert_eq!(out, expected, "exscan size {n} rank {r}");
            }
            Ok(())
        });
    }
}

#[test]
fn reduce_scatter_every_algorithm_commutative_or_not() {
    for n in SIZES {
        on(n, |world| {
            let (r, p) = (world.rank(), n as usize);
            each_algorithm(world, Collective::ReduceScatter, |algorithm| {
                for block in [0usize, 1, 4] {
                    let mine: Vec<[u64; 2]> = (0..p * block).map(|i| affine_value(r, i)).collect();
                    let all_affine = fold(affine, 0..n, p * block);
                    let all_sum = fold(sum_pair, 0..n, p * block);
                    let range = r as usize * block..(r as usize + 1) * block;
                    let mut out = vec![[0, 0]; block];
                    world.reduce_scatter(&mine, &mut out, affine)?;
                    assert_eq!(
                        out,
                        all_affine[range.clone()],
                        "reduce_scatter {algorithm} affine size {n}"
                    );
                    world.reduce_scatter(&mine, &mut out, op::commutative(sum_pair))?;
                    assert_eq!(
                        out, all_sum[range],
                        "reduce_scatter {algorithm} sum size {n}"
                    );
                }
                Ok(())
            })
        });
    }
}

#[test]
fn object_collectives_move_serde_values() {
    for n in SIZES {
        on(n, |world| {
            let r = world.rank();
            for root in 0..n {
                let value =
                    (root == r).then(|| (format!("from {root}"), vec![root; root as usize]));
                let got: (String, Vec<u32>) = world.bcast_obj(value, root)?;
                assert_eq!(got, (format!("from {root}"), vec![root; root as usize]));
                let gathered = world.gather_obj(&format!("r{r}").repeat(r as usize), root)?;
                if r == root {
                    let expected: Vec<String> =
                        (0..n).map(|p| format!("r{p}").repeat(p as usize)).collect();
                    assert_eq!(gathered, Some(expected));
                } else {
                    assert_eq!(gathered, None);
                }
                let work: Vec<Vec<u32>> = if r == root {
                    (0..n).map(|p| (0..p).collect()).collect()
                } else {
                    Vec::new()
                };
                let mine: Vec<u32> = world.scatter_obj(&work, root)?;
                assert_eq!(mine, (0..r).collect::<Vec<_>>());
            }
            let everyone: Vec<Option<u32>> = world.allgather_obj(&(r % 2 == 0).then_some(r))?;
            assert_eq!(
                everyone,
                (0..n)
                    .map(|p| (p % 2 == 0).then_some(p))
                    .collect::<Vec<_>>()
            );
            Ok(())
        });
    }
}

#[test]
fn split_orders_by_key_and_maps_ranks_to_the_world() {
    for n in SIZES {
        on(n, |world| {
            let r = world.rank();
            // Three colours, the last rank left out, reverse order by key.
            let color = (r + 1 != n || n == 1).then_some(r % 3);
            let sub = world.split(color, -(r as i32))?;
            let Some(sub) = sub else {
                assert!(color.is_none());
                return world.barrier();
            };
            let members: Vec<u32> = (0..n)
                .filter(|&p| (p + 1 != n || n == 1) && p % 3 == r % 3)
                .rev()
                .collect();
            assert_eq!(sub.size() as usize, members.len(), "size {n} rank {r}");
            assert_eq!(members[sub.rank() as usize], r);
            for (i, &p) in members.iter().enumerate() {
                assert_eq!(sub.world_rank(i as u32)?, Rank(p));
            }
            assert!(matches!(
                sub.world_rank(sub.size()),
                Err(Error::InvalidRank { .. })
            ));
            // Collectives on the sub-communicator: a sum of world ranks.
            let mut total = [0u32];
            sub.allreduce(&[r], &mut total, op::Sum)?;
            assert_eq!(total[0], members.iter().sum::<u32>());
            let mut ranks = vec![0u32; members.len()];
            sub.allgather(&[r], &mut ranks)?;
            assert_eq!(ranks, members);
            // A split of a split, and a dup of it.
            let pair = sub
                .split(Some(sub.rank() / 2), 0)?
                .expect("every rank has a colour");
            let pair = pair.dup()?;
            let mut got = [0u32];
            pair.allreduce(&[1], &mut got, op::Sum)?;
            assert_eq!(got[0], pair.size());
            world.barrier()
        });
    }
}

#[test]
fn split_communicators_run_different_collectives_at_once() {
    for n in SIZES {
        on(n, |world| {
            let r = world.rank();
            let half = world.split(Some(r % 2), 0)?.expect("coloured");
            let (hr, hn) = (half.rank(), half.size());
            for round in 0..20u64 {
                if r % 2 == 0 {
                    let mut out = [0u64];
                    half.allreduce(&[round + hr as u64], &mut out, op::Sum)?;
                    assert_eq!(out[0], round * hn as u64 + (0..hn as u64).sum::<u64>());
                    let mut buf = if hr == 0 {
                        vec![round; 100]
                    } else {
                        vec![0; 100]
                    };
                    half.bcast(&mut buf, 0)?;
                    assert!(buf.iter().all(|&x| x == round));
                } else {
                    let send: Vec<u64> = (0..hn as u64)
                        .map(|to| round * 100 + hr as u64 * 10 + to)
                        .collect();
                    let mut recv = vec![0u64; hn as usize];
                    half.alltoall(&send, &mut recv)?;
                    let expected: Vec<u64> = (0..hn as u64)
                        .map(|from| round * 100 + from * 10 + hr as u64)
                        .collect();
                    assert_eq!(recv, expected);
                    half.barrier()?;
                }
            }
            // And the world at the same time as its halves, alternately.
            let mut total = [0u32];
            world.allreduce(&[1], &mut total, op::Sum)?;
            assert_eq!(total[0], n);
            Ok(())
        });
    }
}

#[test]
fn collectives_never_match_point_to_point_traffic_on_the_same_tags() {
    for n in SIZES {
        on(n, |world| {
            let (r, size) = (world.rank(), world.size());
            let next = (r + 1) % size;
            let copy = world.dup()?;
            // Point-to-point messages with the tags collectives use, sent
            // before the collectives and received after them with wildcards.
            let mut sends = Vec::new();
            for tag in 0..4 {
                sends.push(world.isend(vec![1000 * r + tag as u32; 3], next, tag)?);
                sends.push(copy.isend(vec![2000 * r + tag as u32; 3], next, tag)?);
            }
            let mut total = [0u32];
            world.allreduce(&[r], &mut total, op::Sum)?;
            assert_eq!(total[0], (0..size).sum::<u32>());
            let mut buf = vec![r; 5];
            world.bcast(&mut buf, size - 1)?;
            assert_eq!(buf, vec![size - 1; 5]);
            let mut all = vec![0u32; size as usize];
            copy.allgather(&[r], &mut all)?;
            assert_eq!(all, (0..size).collect::<Vec<_>>());
            world.barrier()?;
            let prev = (r + size - 1) % size;
            for tag in 0..4 {
                let mut got = [0u32; 3];
                let status = world.recv(&mut got, ANY_SOURCE, ANY_TAG)?;
                assert_eq!((status.source, status.tag.0), (Rank(prev), tag));
                assert_eq!(got, [1000 * prev + tag as u32; 3]);
                let status = copy.recv(&mut got, ANY_SOURCE, ANY_TAG)?;
                assert_eq!(status.tag.0, tag);
                assert_eq!(got, [2000 * prev + tag as u32; 3]);
            }
            mpr::wait_all(sends)?;
            Ok(())
        });
    }
}

#[test]
fn bad_roots_and_lengths_are_errors_everywhere_not_hangs() {
    for n in [1u32, 2, 3, 5, 8] {
        let results = mpr::local::run(n, |world| {
            let r = world.rank();
            let mut failures = Vec::new();
            // A root out of range: every rank sees it.
            let mut buf = [0u8; 4];
            failures.push(matches!(world.bcast(&mut buf, n), Err(Error::InvalidRoot { root: Rank(x), size }) if x == n && size == n));
            // The root's send buffer does not fit: the root says so, the
            // others fail too (poisoned messages) instead of waiting.
            let send = vec![1u32; if r == 0 { 2 * n as usize + 1 } else { 0 }];
            let mut recv = [0u32; 2];
            let scatter = world.scatter(&send, &mut recv, 0);
            failures.push(if r == 0 {
                matches!(scatter, Err(Error::BufferLength { argument: Argument::SendBuffer, actual, .. }) if actual == 2 * n as usize + 1)
            } else {
                scatter.is_err()
            });
            // v-variant counts that do not add up, at one rank only.
            let counts = if r == n - 1 {
                vec![1; n as usize + 1]
            } else {
                vec![1; n as usize]
            };
            let mut out = vec![0u8; n as usize];
            let gathered = world.allgatherv(&[7u8], &mut out, &counts);
            failures.push(if r == n - 1 {
                matches!(
                    gathered,
                    Err(Error::BufferLength {
                        argument: Argument::Counts,
                        ..
                    })
                )
            } else {
                n == 1 || gathered.is_err()
            });
            // Ranks disagreeing on a broadcast's length.
            let mut buf = vec![0u64; if r == n - 1 && n > 1 { 3 } else { 4 }];
            let bcast = world.bcast(&mut buf, 0);
            failures.push(if r == n - 1 && n > 1 {
                matches!(
                    bcast,
                    Err(Error::CountMismatch {
                        expected: 24,
                        actual: 32,
                        ..
                    }) | Err(Error::Truncated { .. })
                )
            } else {
                true
            });
            // Buffers that do not fit each other, locally checkable.
            let mut small = [0u32; 1];
            failures.push(matches!(
                world.allreduce(&[1u32, 2], &mut small, op::Sum),
                Err(Error::BufferLength {
                    argument: Argument::RecvBuffer,
                    expected: 2,
                    actual: 1
                })
            ));
            failures.push(
                matches!(
                    world.alltoall(&vec![0u8; n as usize + 1], &mut vec![0u8; n as usize + 1]),
                    Err(Error::BufferLength { .. })
                ) || n == 1,
            );
            failures.push(matches!(
                world.set_algorithm(Collective::Barrier, Some(Algorithm::Ring)),
                Err(Error::UnsupportedAlgorithm {
                    collective: Collective::Barrier,
                    algorithm: Algorithm::Ring
                })
            ));
            // After all that, the communicator still works: nothing stale
            // was left in the collective context.
            let mut total = [0u32];
            world.allreduce(&[r], &mut total, op::Sum)?;
            assert_eq!(total[0], (0..n).sum::<u32>());
            let mut buf = [r; 3];
            world.bcast(&mut buf, n - 1)?;
            assert_eq!(buf, [n - 1; 3]);
            Ok::<Vec<bool>, Error>(failures)
        });
        for (rank, result) in results.into_iter().enumerate() {
            let checks = result.unwrap_or_else(|e| panic!("size {n} rank {rank}: {e}"));
            assert!(
                checks.iter().all(|&ok| ok),
                "size {n} rank {rank}: {checks:?}"
            );
        }
    }
}

#[test]
fn rooted_v_variants_check_the_roots_counts() {
    on(4, |world| {
        let r = world.rank();
        // Counts that do not add up to the send buffer.
        let (send, counts) = if r == 1 {
            (vec![0u16; 5], vec![1, 1, 1, 1])
        } else {
            (Vec::new(), Vec::new())
        };
        let mut recv = [0u16; 1];
        let result = world.scatterv(&send, &counts, &mut recv, 1);
        if r == 1 {
            assert!(matches!(
                result,
                Err(Error::BufferLength {
                    argument: Argument::SendBuffer,
                    expected: 4,
                    actual: 5
                })
            ));
        } else {
            assert!(result.is_err(), "rank {r} learns of the root's error");
        }
        // A gatherv whose root expects more from rank 3 than it sends.
        let counts = if r == 0 { vec![1, 1, 1, 2] } else { Vec::new() };
        let mut recv = vec![0u16; if r == 0 { 5 } else { 0 }];
        let result = world.gatherv(&[r as u16], &mut recv, &counts, 0);
        if r == 0 {
            assert!(
                matches!(
                    result,
                    Err(Error::CountMismatch {
                        rank: Rank(3),
                        expected: 4,
                        actual: 2
                    })
                ),
                "{result:?}"
            );
        } else {
            result?;
        }
        world.barrier()
    });
}
