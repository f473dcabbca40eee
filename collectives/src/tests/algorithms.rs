//! Every algorithm at sizes 1..=9 and every root, against serial
//! references, over the in-memory world (schedules checked first).

use super::{check_world, run_world};
use crate::algorithm::{Algorithm, Collective, select};
use crate::build;
use crate::op::{self, Op};
use crate::schedule::Schedule;

const SIZES: std::ops::RangeInclusive<u32> = 1..=9;
/// Vector lengths: empty, shorter than most worlds, uneven chunks.
const COUNTS: [usize; 4] = [0, 1, 5, 13];

/// Non-commutative, associative: affine maps `x -> a·x + b`, combined as
/// "apply the left one, then the right one".
fn affine(f: [u64; 2], g: [u64; 2]) -> [u64; 2] {
    [
        g[0].wrapping_mul(f[0]),
        g[0].wrapping_mul(f[1]).wrapping_add(g[1]),
    ]
}

fn value(rank: u32, i: usize) -> u64 {
    (rank as u64 + 1) * 1000 + i as u64 * 7 + 3
}

fn affine_value(rank: u32, i: usize) -> [u64; 2] {
    [(rank as u64 * 3 + i as u64) % 5 + 2, value(rank, i)]
}

fn fold<T: Copy>(op: &dyn Op<T>, items: impl Iterator<Item = Vec<T>>) -> Vec<T> {
    items
        .reduce(|acc, next| {
            acc.iter()
                .zip(&next)
                .map(|(&a, &b)| op.combine(a, b))
                .collect()
        })
        .unwrap_or_default()
}

fn algorithms(collective: Collective) -> &'static [Algorithm] {
    collective.algorithms()
}

fn world(size: u32, build: impl Fn(u32) -> Schedule) -> Vec<Schedule> {
    (0..size).map(build).collect()
}

/// Whether rank `to` can only finish after rank `from` has started,
/// following each rank's program order and every message from the start
/// of its send's step to the end of its receive's step (matched k-th to
/// k-th per source, destination and tag).
fn exit_waits_for_entry(schedules: &[Schedule], from: u32, to: u32) -> bool {
    use std::collections::HashMap;
    if from == to {
        return true;
    }
    // The step of the k-th message per (src, dst, tag).
    let mut sends: HashMap<(u32, u32, i32), Vec<usize>> = HashMap::new();
    for (rank, schedule) in schedules.iter().enumerate() {
        for (index, step) in schedule.steps.iter().enumerate() {
            for t in &step.sends {
                sends
                    .entry((rank as u32, t.peer, t.tag))
                    .or_default()
                    .push(index);
            }
        }
    }
    // starts_after[r]: the first step of rank r known to start after
    // `from` started.
    let mut starts_after: Vec<Option<usize>> = vec![None; schedules.len()];
    starts_after[from as usize] = Some(0);
    let mut changed = true;
    while changed {
        changed = false;
        for (rank, schedule) in schedules.iter().enumerate() {
            let mut seen: HashMap<(u32, i32), usize> = HashMap::new();
            for (index, step) in schedule.steps.iter().enumerate() {
                for t in &step.recvs {
                    let k = seen.entry((t.peer, t.tag)).or_default();
                    let sent_in = sends[&(t.peer, rank as u32, t.tag)][*k];
                    *k += 1;
                    let caused = starts_after[t.peer as usize].is_some_and(|s| s <= sent_in);
                    if caused && starts_after[rank].is_none_or(|s| s > index + 1) {
                        starts_after[rank] = Some(index + 1);
                        changed = true;
                    }
                }
            }
        }
    }
    starts_after[to as usize].is_some()
}

#[test]
fn barrier_exits_wait_for_every_entry_with_every_algorithm() {
    for &algorithm in algorithms(Collective::Barrier) {
        for size in SIZES {
            let schedules = world(size, |r| build::barrier(algorithm, r, size));
            let results = run_world::<u8>(
                &schedules,
                &vec![Vec::new(); size as usize],
                vec![Vec::new(); size as usize],
                None,
            );
            assert!(results.iter().all(|(_, r)| r.is_ok()));
            for from in 0..size {
                for to in 0..size {
                    assert!(
                        exit_waits_for_entry(&schedules, from, to),
                        "{algorithm} at {size}: rank {to} can leave before rank {from} arrives"
                    );
                }
            }
            if algorithm == Algorithm::Dissemination {
                assert_eq!(
                    schedules[0].steps.len(),
                    (size as f64).log2().ceil() as usize,
                    "dissemination rounds at {size}"
                );
            }
        }
    }
}

#[test]
fn the_barrier_check_catches_a_release_sent_too_early() {
    // Rank 0 of a linear barrier releases rank 2 before it has heard from
    // rank 1: rank 2 may leave before rank 1 arrives.
    let size = 3;
    let mut schedules = world(size, |r| build::barrier(Algorithm::Linear, r, size));
    let root = &mut schedules[0].steps;
    let to_two = root[1].sends.iter().position(|t| t.peer == 2).unwrap();
    let early = root[1].sends.remove(to_two);
    let from_one = root[0].recvs.iter().position(|t| t.peer == 1).unwrap();
    let late = root[0].recvs.remove(from_one);
    root[0].sends.push(early);
    root[1].recvs.push(late);
    assert!(check_world(&schedules).is_ok());
    assert!(!exit_waits_for_entry(&schedules, 1, 2));
    assert!(exit_waits_for_entry(&schedules, 2, 1));
    assert!(exit_waits_for_entry(&schedules, 1, 0));
}

#[test]
fn bcast_reaches_every_rank() {
    for &algorithm in algorithms(Collective::Bcast) {
        for size in SIZES {
            for root in 0..size {
                for count in COUNTS {
                    let schedules = world(size, |r| build::bcast(algorithm, r, size, root, count));
                    let data: Vec<u64> = (0..count).map(|i| value(root, i)).collect();
                    let outputs = (0..size)
                        .map(|r| {
                            if r == root {
                                data.clone()
                            } else {
                                vec![0; count]
                            }
                        })
                        .collect();
                    let inputs = vec![Vec::new(); size as usize];
                    for (rank, (out, result)) in run_world(&schedules, &inputs, outputs, None)
                        .into_iter()
                        .enumerate()
                    {
                        assert!(result.is_ok());
                        assert_eq!(
                            out, data,
                            "{algorithm} size {size} root {root} count {count} rank {rank}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn scatter_and_gather_move_each_block() {
    for size in SIZES {
        for root in 0..size {
            for block in [0usize, 1, 3] {
                let all: Vec<u64> = (0..size as usize * block).map(|i| value(root, i)).collect();
                for &algorithm in algorithms(Collective::Scatter) {
                    let schedules =
                        world(size, |r| build::scatter(algorithm, r, size, root, block));
                    let inputs: Vec<Vec<u64>> = (0..size)
                        .map(|r| if r == root { all.clone() } else { Vec::new() })
                        .collect();
                    let results = run_world(
                        &schedules,
                        &inputs,
                        vec![vec![0; block]; size as usize],
                        None,
                    );
                    for (rank, (out, result)) in results.into_iter().enumerate() {
                        assert!(result.is_ok());
                        assert_eq!(
                            out,
                            all[rank * block..(rank + 1) * block],
                            "scatter {algorithm} {size} root {root} rank {rank}"
                        );
                    }
                }
                for &algorithm in algorithms(Collective::Gather) {
                    let schedules = world(size, |r| build::gather(algorithm, r, size, root, block));
                    let inputs: Vec<Vec<u64>> = (0..size)
                        .map(|r| all[r as usize * block..(r as usize + 1) * block].to_vec())
                        .collect();
                    let outputs = (0..size)
                        .map(|r| vec![0; if r == root { all.len() } else { 0 }])
                        .collect();
                    let results = run_world(&schedules, &inputs, outputs, None);
                    assert_eq!(
                        results[root as usize].0, all,
                        "gather {algorithm} {size} root {root}"
                    );
                    assert!(results.iter().all(|(_, r)| r.is_ok()));
                }
            }
        }
    }
}

fn uneven(size: u32, salt: usize) -> Vec<usize> {
    (0..size as usize).map(|r| (r * 7 + salt) % 5).collect()
}

#[test]
fn scatterv_and_gatherv_respect_counts() {
    for size in SIZES {
        for root in 0..size {
            let counts = uneven(size, root as usize);
            let total: usize = counts.iter().sum();
            let all: Vec<u64> = (0..total).map(|i| value(root, i)).collect();
            let offsets: Vec<usize> = counts
                .iter()
                .scan(0, |acc, &c| Some(std::mem::replace(acc, *acc + c)))
                .collect();
            let block = |r: usize| all[offsets[r]..offsets[r] + counts[r]].to_vec();
            let schedules = world(size, |r| {
                build::scatterv(r, size, root, &counts, counts[r as usize])
            });
            let inputs: Vec<Vec<u64>> = (0..size)
                .map(|r| if r == root { all.clone() } else { Vec::new() })
                .collect();
            let outputs = counts.iter().map(|&c| vec![0; c]).collect();
            for (rank, (out, result)) in run_world(&schedules, &inputs, outputs, None)
                .into_iter()
                .enumerate()
            {
                assert!(result.is_ok());
                assert_eq!(out, block(rank), "scatterv {size} root {root} rank {rank}");
            }
            let schedules = world(size, |r| {
                build::gatherv(r, size, root, &counts, counts[r as usize])
            });
            let inputs: Vec<Vec<u64>> = (0..size as usize).map(block).collect();
            let outputs = (0..size)
                .map(|r| vec![0; if r == root { total } else { 0 }])
                .collect();
            let results = run_world(&schedules, &inputs, outputs, None);
            assert_eq!(results[root as usize].0, all, "gatherv {size} root {root}");
        }
    }
}

/// Runs reduce-like collectives with a commutative op on `u64` and a
/// non-commutative one on affine maps.
fn with_ops(
    mut test: impl FnMut(&dyn Fn(u32, usize) -> [u64; 2], &(dyn Op<[u64; 2]> + Sync), bool),
) {
    let sum = op::commutative(|a: [u64; 2], b: [u64; 2]| {
        [a[0].wrapping_add(b[0]), a[1].wrapping_add(b[1])]
    });
    test(&|r, i| [value(r, i), i as u64], &sum, true);
    test(&affine_value, &affine, false);
}

#[test]
fn reduce_combines_in_rank_order_at_every_root_whole_or_in_pieces() {
    with_ops(|make, op, commutative| {
        for size in SIZES {
            for root in 0..size {
                for count in COUNTS {
                    // 0: whole vector; 1 and 4: pieces, the last one short.
                    for segment in [0, 1, 4] {
                        let inputs: Vec<Vec<[u64; 2]>> = (0..size)
                            .map(|r| (0..count).map(|i| make(r, i)).collect())
                            .collect();
                        let expected = fold(op, inputs.iter().cloned());
                        let schedules = world(size, |r| {
                            build::reduce(r, size, root, count, commutative, segment)
                        });
                        let outputs = (0..size)
                            .map(|r| vec![[0, 0]; if r == root { count } else { 0 }])
                            .collect();
                        let results = run_world(&schedules, &inputs, outputs, Some(op));
                        assert_eq!(
                            results[root as usize].0, expected,
                            "reduce {size} root {root} count {count} segment {segment} \
                             commutative {commutative}"
                        );
                    }
                }
            }
        }
    });
}

#[test]
fn a_pipelined_reduce_passes_each_piece_up_while_the_next_arrives() {
    // Rank 2 of 4 (root 0) has child 3 and parent 0: with 3 pieces it
    // receives piece 0, then sends piece 0 while receiving piece 1, ...
    let schedule = build::reduce(2, 4, 0, 12, true, 4);
    let shape: Vec<(usize, usize)> = schedule
        .steps
        .iter()
        .filter(|step| step.communicates())
        .map(|step| (step.sends.len(), step.recvs.len()))
        .collect();
    assert_eq!(shape, [(0, 1), (1, 1), (1, 1), (1, 0)]);
    // A leaf sends every piece in one step.
    let leaf = build::reduce(3, 4, 0, 12, true, 4);
    let sends: Vec<usize> = leaf.steps.iter().map(|step| step.sends.len()).collect();
    assert_eq!(sends, [3]);
    assert_eq!(crate::reduce_segment(4, 1 << 20, 4, || false), 12288);
    assert_eq!(crate::reduce_segment(4, 1 << 20, 4, || true), 0);
    assert_eq!(crate::reduce_segment(4, 1024, 4, || unreachable!()), 0);
    assert_eq!(crate::reduce_segment(2, 128 << 10, 4, || false), 12288);
    assert_eq!(crate::reduce_segment(2, 1 << 20, 4, || false), 12288);
}

#[test]
fn allreduce_every_algorithm_matches_the_serial_fold() {
    with_ops(|make, op, commutative| {
        for &algorithm in algorithms(Collective::Allreduce) {
            if !Collective::Allreduce.supports(algorithm, commutative) {
                continue;
            }
            for size in SIZES {
                for count in COUNTS {
                    let inputs: Vec<Vec<[u64; 2]>> = (0..size)
                        .map(|r| (0..count).map(|i| make(r, i)).collect())
                        .collect();
                    let expected = fold(op, inputs.iter().cloned());
                    let schedules = world(size, |r| {
                        build::allreduce(algorithm, r, size, count, commutative)
                    });
                    let none = vec![Vec::new(); size as usize];
                    for (rank, (out, result)) in
                        run_world(&schedules, &none, inputs.clone(), Some(op))
                            .into_iter()
                            .enumerate()
                    {
                        assert!(result.is_ok());
                        assert_eq!(
                            out, expected,
                            "allreduce {algorithm} {size} count {count} rank {rank} commutative {commutative}"
                        );
                    }
                    // The operand in the input buffer, the output garbage.
                    let schedules = world(size, |r| {
                        build::allreduce_from_input(algorithm, r, size, count, commutative)
                    });
                    let garbage = vec![vec![[7, 7]; count]; size as usize];
                    for (rank, (out, result)) in run_world(&schedules, &inputs, garbage, Some(op))
                        .into_iter()
                        .enumerate()
                    {
                        assert!(result.is_ok());
                        assert_eq!(
                            out, expected,
                            "allreduce from input {algorithm} {size} count {count} rank {rank} commutative {commutative}"
                        );
                    }
                }
            }
        }
    });
}

#[test]
fn allgather_every_algorithm_uniform_and_uneven() {
    for &algorithm in algorithms(Collective::Allgather) {
        for size in SIZES {
            for counts in [
                vec![2usize; size as usize],
                vec![0; size as usize],
                uneven(size, 1),
            ] {
                let inputs: Vec<Vec<u64>> = (0..size)
                    .map(|r| (0..counts[r as usize]).map(|i| value(r, i)).collect())
                    .collect();
                let expected: Vec<u64> = inputs.concat();
                let schedules = world(size, |r| build::allgather(algorithm, r, size, &counts));
                let outputs = vec![vec![0; expected.len()]; size as usize];
                for (rank, (out, result)) in run_world(&schedules, &inputs, outputs, None)
                    .into_iter()
                    .enumerate()
                {
                    assert!(result.is_ok());
                    assert_eq!(
                        out, expected,
                        "allgather {algorithm} {size} counts {counts:?} rank {rank}"
                    );
                }
            }
        }
    }
}

#[test]
fn alltoall_every_algorithm_transposes() {
    for &algorithm in algorithms(Collective::Alltoall) {
        for size in SIZES {
            for block in [0usize, 1, 2] {
                let p = size as usize;
                let inputs: Vec<Vec<u64>> = (0..size)
                    .map(|r| (0..p * block).map(|i| value(r, i)).collect())
                    .collect();
                let schedules = world(size, |r| build::alltoall(algorithm, r, size, block));
                let results = run_world(&schedules, &inputs, vec![vec![0; p * block]; p], None);
                for (j, (out, result)) in results.into_iter().enumerate() {
                    assert!(result.is_ok());
                    let expected: Vec<u64> = (0..p)
                        .flat_map(|i| inputs[i][j * block..(j + 1) * block].to_vec())
                        .collect();
                    assert_eq!(
                        out, expected,
                        "alltoall {algorithm} {size} block {block} rank {j}"
                    );
                }
            }
        }
    }
}

#[test]
fn alltoallv_every_algorithm_with_uneven_counts() {
    let count = |from: usize, to: usize| (from * 3 + to * 5) % 4;
    for &algorithm in algorithms(Collective::Alltoallv) {
        for size in SIZES {
            let p = size as usize;
            let send_counts = |r: usize| (0..p).map(|to| count(r, to)).collect::<Vec<_>>();
            let recv_counts = |r: usize| (0..p).map(|from| count(from, r)).collect::<Vec<_>>();
            let inputs: Vec<Vec<u64>> = (0..p)
                .map(|r| {
                    (0..send_counts(r).iter().sum())
                        .map(|i| value(r as u32, i))
                        .collect()
                })
                .collect();
            let schedules = world(size, |r| {
                build::alltoallv(
                    algorithm,
                    r,
                    size,
                    &send_counts(r as usize),
                    &recv_counts(r as usize),
                )
            });
            let outputs = (0..p)
                .map(|r| vec![0; recv_counts(r).iter().sum()])
                .collect();
            for (j, (out, result)) in run_world(&schedules, &inputs, outputs, None)
                .into_iter()
                .enumerate()
            {
                assert!(result.is_ok());
                let expected: Vec<u64> = (0..p)
                    .flat_map(|i| {
                        let offset: usize = send_counts(i)[..j].iter().sum();
                        inputs[i][offset..offset + count(i, j)].to_vec()
                    })
                    .collect();
                assert_eq!(out, expected, "alltoallv {algorithm} {size} rank {j}");
            }
        }
    }
}

#[test]
fn scan_and_exscan_are_rank_ordered_prefixes() {
    with_ops(|make, op, _| {
        for size in SIZES {
            for count in COUNTS {
                let inputs: Vec<Vec<[u64; 2]>> = (0..size)
                    .map(|r| (0..count).map(|i| make(r, i)).collect())
                    .collect();
                let sentinel = vec![[9, 9]; count];
                for exclusive in [false, true] {
                    let schedules = world(size, |r| {
                        if exclusive {
                            build::exscan(r, size, count)
                        } else {
                            build::scan(r, size, count)
                        }
                    });
                    let results = run_world(
                        &schedules,
                        &inputs,
                        vec![sentinel.clone(); size as usize],
                        Some(op),
                    );
                    for (rank, (out, result)) in results.into_iter().enumerate() {
                        assert!(result.is_ok());
                        let upto = if exclusive { rank } else { rank + 1 };
                        let expected = if upto == 0 {
                            sentinel.clone()
                        } else {
                            fold(op, inputs[..upto].iter().cloned())
                        };
                        assert_eq!(
                            out, expected,
                            "scan exclusive={exclusive} {size} count {count} rank {rank}"
                        );
                    }
                }
            }
        }
    });
}

#[test]
fn reduce_scatter_every_algorithm() {
    with_ops(|make, op, commutative| {
        for &algorithm in algorithms(Collective::ReduceScatter) {
            if !Collective::ReduceScatter.supports(algorithm, commutative) {
                continue;
            }
            for size in SIZES {
                for block in [0usize, 1, 3] {
                    let p = size as usize;
                    let inputs: Vec<Vec<[u64; 2]>> = (0..size)
                        .map(|r| (0..p * block).map(|i| make(r, i)).collect())
                        .collect();
                    let total = fold(op, inputs.iter().cloned());
                    let schedules = world(size, |r| {
                        build::reduce_scatter(algorithm, r, size, block, commutative)
                    });
                    let results =
                        run_world(&schedules, &inputs, vec![vec![[0, 0]; block]; p], Some(op));
                    for (rank, (out, result)) in results.into_iter().enumerate() {
                        assert!(result.is_ok());
                        let expected = if p * block == 0 {
                            Vec::new()
                        } else {
                            total[rank * block..(rank + 1) * block].to_vec()
                        };
                        assert_eq!(
                            out, expected,
                            "reduce_scatter {algorithm} {size} block {block} rank {rank} commutative {commutative}"
                        );
                    }
                }
            }
        }
    });
}

#[test]
fn mismatched_counts_fail_everywhere_instead_of_hanging() {
    // Rank 1 thinks the broadcast is longer: it gets an error; the poisoned
    // schedule then makes every rank below it in the tree fail too.
    for size in 2..=9u32 {
        let schedules: Vec<Schedule> = (0..size)
            .map(|r| build::bcast(Algorithm::Binomial, r, size, 0, if r == 1 { 5 } else { 4 }))
            .collect();
        let world = super::World::new(size);
        let results: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..size)
                .map(|r| {
                    let (world, schedule) = (&world, &schedules[r as usize]);
                    scope.spawn(move || {
                        let endpoint = super::Endpoint { world, rank: r };
                        let mut out = vec![1u64; schedule.extent(crate::Buf::Output)];
                        crate::execute(&endpoint, schedule, &[], &mut out, None).is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(!results[1], "the rank with the wrong count fails ({size})");
        assert!(results[0], "the root sends and finishes ({size})");
    }
}

#[test]
fn a_rank_with_bad_arguments_poisons_its_subtree() {
    // The root of a scatter found its arguments wrong: it runs the schedule
    // poisoned, and every other rank fails rather than waiting.
    for size in 2..=9u32 {
        let schedules = world(size, |r| build::scatter(Algorithm::Binomial, r, size, 0, 2));
        let world = super::World::new(size);
        let failed: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..size)
                .map(|r| {
                    let (world, schedule) = (&world, &schedules[r as usize]);
                    scope.spawn(move || {
                        let endpoint = super::Endpoint { world, rank: r };
                        if r == 0 {
                            crate::execute_poisoned(&endpoint, schedule, 8);
                            return true;
                        }
                        let mut out = vec![0u64; 2];
                        crate::execute::<u64, _>(&endpoint, schedule, &[], &mut out, None).is_err()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            failed.iter().all(|&f| f),
            "every rank failed at size {size}: {failed:?}"
        );
    }
}

#[test]
fn every_listed_algorithm_builds_a_checked_world_at_every_size() {
    for size in SIZES {
        let counts = uneven(size, 2);
        for collective in Collective::ALL {
            for &algorithm in collective.algorithms() {
                for root in 0..size {
                    let schedules: Vec<Schedule> = (0..size)
                        .map(|r| match collective {
                            Collective::Barrier => build::barrier(algorithm, r, size),
                            Collective::Bcast => build::bcast(algorithm, r, size, root, 10),
                            Collective::Scatter => build::scatter(algorithm, r, size, root, 3),
                            Collective::Scatterv => {
                                build::scatterv(r, size, root, &counts, counts[r as usize])
                            }
                            Collective::Gather => build::gather(algorithm, r, size, root, 3),
                            Collective::Gatherv => {
                                build::gatherv(r, size, root, &counts, counts[r as usize])
                            }
                            Collective::Reduce => {
                                build::reduce(r, size, root, 10, root % 2 == 0, 0)
                            }
                            Collective::Allreduce => build::allreduce(algorithm, r, size, 10, true),
                            Collective::Allgather | Collective::Allgatherv => {
                                build::allgather(algorithm, r, size, &counts)
                            }
                            Collective::Alltoall => build::alltoall(algorithm, r, size, 2),
                            Collective::Alltoallv => build::alltoallv(
                                algorithm,
                                r,
                                size,
                                &vec![2; size as usize],
                                &vec![2; size as usize],
                            ),
                            Collective::Scan => build::scan(r, size, 4),
                            Collective::Exscan => build::exscan(r, size, 4),
                            Collective::ReduceScatter => {
                                build::reduce_scatter(algorithm, r, size, 2, true)
                            }
                        })
                        .collect();
                    if let Err(why) = check_world(&schedules) {
                        panic!("{collective} {algorithm} size {size} root {root}: {why}");
                    }
                }
            }
        }
    }
}

#[test]
fn checker_catches_mismatches_and_deadlocks() {
    let mut a = Schedule::new();
    a.recv(1, 0, crate::Region::output(0, 1));
    a.send(1, 0, crate::Region::output(0, 1));
    let b = a.clone();
    let b = Schedule {
        steps: b
            .steps
            .into_iter()
            .map(|mut s| {
                for t in s.sends.iter_mut().chain(s.recvs.iter_mut()) {
                    t.peer = 0;
                }
                s
            })
            .collect(),
        ..b
    };
    assert!(
        check_world(&[a.clone(), b])
            .unwrap_err()
            .contains("deadlock")
    );
    let mut c = Schedule::new();
    c.send(0, 0, crate::Region::output(0, 2));
    c.recv(0, 0, crate::Region::output(0, 1));
    assert!(check_world(&[a, c]).unwrap_err().contains("sends"));
}

#[test]
fn bcast_selection_follows_the_measurements_and_the_transport() {
    let bcast = |p, bytes, shared| select(Collective::Bcast, p, bytes, 0, true, shared);
    assert_eq!(bcast(4, 1 << 20, false), Algorithm::Linear);
    assert_eq!(bcast(8, 64 << 10, false), Algorithm::Linear);
    assert_eq!(bcast(8, 1 << 20, false), Algorithm::Linear);
    assert_eq!(bcast(8, 256 << 10, true), Algorithm::Linear);
    assert_eq!(bcast(8, 1 << 20, true), Algorithm::Binomial);
    assert_eq!(bcast(16, 8, true), Algorithm::Binomial);
    assert_eq!(bcast(16, 1 << 20, false), Algorithm::ScatterAllgather);
}

#[test]
fn allgather_goes_linear_with_large_blocks_on_three_or_four_ranks() {
    const KIB: usize = 1024;
    let allgather = |p, bytes| select(Collective::Allgather, p, bytes, 0, true, false);
    assert_eq!(allgather(4, 256 * KIB), Algorithm::Linear);
    assert_eq!(allgather(4, 2048 * KIB), Algorithm::Linear);
    assert_eq!(allgather(4, 4096 * KIB), Algorithm::Ring);
    assert_eq!(allgather(4, 64 * KIB), Algorithm::RecursiveDoubling);
    assert_eq!(allgather(3, 1536 * KIB), Algorithm::Linear);
    assert_eq!(allgather(3, 3072 * KIB), Algorithm::Ring);
    assert_eq!(allgather(8, 1024 * KIB), Algorithm::RecursiveDoubling);
    // Shared memory moves large blocks by single copy instead.
    let shared = select(Collective::Allgather, 4, 1024 * KIB, 0, true, true);
    assert_eq!(shared, Algorithm::RecursiveDoubling);
}

#[test]
fn selection_picks_supported_algorithms() {
    for collective in Collective::ALL {
        for p in 1..=64 {
            for bytes in [0usize, 8, 4096, 100_000, 1 << 20] {
                for commutative in [false, true] {
                    let shared = p % 2 == 0;
                    let chosen = select(collective, p, bytes, bytes / 8, commutative, shared);
                    assert!(
                        collective.supports(chosen, commutative),
                        "{collective} p {p} bytes {bytes}: {chosen}"
                    );
                }
            }
        }
    }
    assert_eq!(
        "Recursive-Doubling".parse::<Algorithm>(),
        Ok(Algorithm::RecursiveDoubling)
    );
    assert!("nope".parse::<Algorithm>().is_err());
    assert_eq!(
        Collective::ReduceScatter.env_var(),
        "MPR_COLL_REDUCE_SCATTER"
    );
}

#[test]
fn builtin_ops_follow_mpi() {
    assert_eq!(op::Sum.combine(250u8, 10), 4);
    assert_eq!(op::Prod.combine(3.0f64, 2.5), 7.5);
    assert_eq!(op::Min.combine(-1i32, 4), -1);
    assert_eq!(op::Max.combine(f32::MIN, -0.5), -0.5);
    assert_eq!(op::LogicalAnd.combine(2u32, 0), 0);
    assert_eq!(op::LogicalOr.combine(0i64, -5), 1);
    assert_eq!(op::LogicalXor.combine(3u16, 4), 0);
    assert_eq!(op::BitAnd.combine(0b1100u8, 0b1010), 0b1000);
    assert_eq!(op::BitOr.combine(0b1100u8, 0b1010), 0b1110);
    assert_eq!(op::BitXor.combine(0b1100u8, 0b1010), 0b0110);
    let (a, b) = (op::Loc::new(2.0f64, 3), op::Loc::new(2.0f64, 1));
    assert_eq!(op::MinLoc.combine(a, b), op::Loc::new(2.0, 1));
    assert_eq!(
        op::MaxLoc.combine(op::Loc::new(1u8, 0), op::Loc::new(7u8, 5)),
        op::Loc::new(7, 5)
    );
    assert_eq!(std::mem::size_of::<op::Loc<f64>>(), 12);
    assert!(Op::<u32>::is_commutative(&op::Sum));
}

#[test]
fn only_a_linear_gathers_sends_converge_on_their_receiver() {
    let fan_in = |schedule: &Schedule| -> Vec<bool> {
        schedule
            .steps
            .iter()
            .filter(|step| !step.sends.is_empty())
            .map(|step| step.fan_in)
            .collect()
    };
    // Every non-root of a linear gather (and gatherv) sends once, fanned in.
    for rank in 1..4 {
        assert_eq!(
            fan_in(&build::gather(Algorithm::Linear, rank, 4, 0, 8)),
            [true]
        );
    }
    assert_eq!(fan_in(&build::gatherv(2, 4, 0, &[1, 2, 3, 4], 3)), [true]);
    // A tree's messages go to one parent each; a bcast's fan out.
    assert!(!fan_in(&build::gather(Algorithm::Binomial, 1, 4, 0, 8)).contains(&true));
    assert!(!fan_in(&build::bcast(Algorithm::Linear, 0, 4, 0, 8)).contains(&true));
}

#[test]
fn rooted_collectives_mark_the_sends_their_receivers_wait_for() {
    // Whether any send of a rank's schedule is marked expected.
    let marks = |schedule: &Schedule| schedule.steps.iter().any(|step| step.expected);
    for algorithm in [Algorithm::Binomial, Algorithm::Linear] {
        assert!(marks(&build::bcast(algorithm, 0, 8, 0, 64)), "{algorithm}");
        assert!(
            marks(&build::scatter(algorithm, 3, 8, 3, 64)),
            "{algorithm}"
        );
        assert!(marks(&build::gather(algorithm, 5, 8, 3, 64)), "{algorithm}");
    }
    assert!(marks(&build::reduce(1, 8, 0, 64, true, 0)));
    // An alltoall's single round, up to 4 ranks.
    assert!(marks(&build::alltoall(Algorithm::Linear, 1, 4, 64)));
    assert!(!marks(&build::alltoall(Algorithm::Linear, 1, 5, 64)));
    // Rounds after the first are not expected: a ring allgather's, a
    // reduce_then_scatter's scatter, van de Geijn's allgather half.
    assert!(!marks(&build::allgather(Algorithm::Ring, 2, 8, &[8; 8])));
    assert!(!marks(&build::reduce_scatter(
        Algorithm::ReduceThenScatter,
        0,
        8,
        64,
        true
    )));
    let van_de_geijn = build::bcast(Algorithm::ScatterAllgather, 4, 8, 0, 64);
    assert!(!van_de_geijn.steps.last().is_some_and(|step| step.expected));
    // And every world is checked by `check_world` (`check_expected`).
    for size in SIZES {
        for root in 0..size {
            for algorithm in algorithms(Collective::Bcast) {
                let world = world(size, |rank| build::bcast(*algorithm, rank, size, root, 13));
                assert_eq!(check_world(&world), Ok(()), "{algorithm} {size} {root}");
            }
        }
    }
}
