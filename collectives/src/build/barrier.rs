//! Barriers: empty messages whose pattern makes every rank's exit depend
//! on every rank's entry.

use super::tree::Tree;
use crate::algorithm::Algorithm;
use crate::schedule::{Region, Schedule, Transfer};

/// Barrier of `size` ranks.
///
/// - [`Algorithm::Dissemination`]: in round k, send to `rank + 2^k` and
///   receive from `rank - 2^k`; ⌈log₂ p⌉ rounds, every rank leaves at once.
/// - [`Algorithm::LinearTree`]: every rank reports to rank 0 directly, and
///   rank 0 releases them down a binomial tree; 1 + ⌈log₂ p⌉ hops, rank 0
///   leaves first.
/// - [`Algorithm::Binomial`]: fan in up a binomial tree to rank 0, then fan
///   out down it; 2·⌈log₂ p⌉ hops.
/// - [`Algorithm::Linear`]: every rank reports to rank 0, which releases
///   them all directly; two hops.
/// - [`Algorithm::RecursiveDoubling`]: pairwise exchanges with `rank ^ 2^k`
///   among the largest power of two of ranks; each of the others first
///   reports to its partner `rank - 2^k` and is released by it at the end.
///   Partners of a round wait for each other only, so on shared cores a
///   rank that yields finds its partner's message when it runs again.
pub fn barrier(algorithm: Algorithm, rank: u32, size: u32) -> Schedule {
    let mut s = Schedule::new();
    let empty = Region::output(0, 0);
    let tree = Tree {
        v: rank,
        size,
        peer: |v| v,
        tag: 0,
    };
    match algorithm {
        Algorithm::Linear => {
            report_to_root(&mut s, rank, size);
            if rank == 0 {
                if size > 1 {
                    s.exchange(everyone_but_root(size, RELEASE), Vec::new());
                }
            } else {
                s.recv(0, RELEASE, empty);
            }
        }
        Algorithm::LinearTree => {
            report_to_root(&mut s, rank, size);
            let release = s.steps.len();
            tree.bcast(&mut s, empty);
            // The release follows the reports: not expected.
            s.unexpected_from(release);
        }
        Algorithm::Binomial => {
            tree.gather(&mut s, |_, _| empty);
            let release = s.steps.len();
            tree.bcast(&mut s, empty);
            s.unexpected_from(release);
        }
        Algorithm::RecursiveDoubling => {
            let pow2 = 1u32 << (31 - size.leading_zeros());
            if rank >= pow2 {
                s.send(rank - pow2, REPORT, empty);
                s.recv(rank - pow2, RELEASE, empty);
                return s;
            }
            if rank + pow2 < size {
                s.recv(rank + pow2, REPORT, empty);
            }
            let (mut distance, mut round) = (1u32, 0);
            while distance < pow2 {
                let partner = rank ^ distance;
                s.sendrecv(partner, empty, partner, empty, round);
                distance <<= 1;
                round += 1;
            }
            if rank + pow2 < size {
                s.send(rank + pow2, RELEASE, empty);
            }
        }
        _ => {
            let (mut distance, mut round) = (1u32, 0);
            while distance < size {
                s.sendrecv(
                    (rank + distance) % size,
                    empty,
                    (rank + size - distance) % size,
                    empty,
                    round,
                );
                distance <<= 1;
                round += 1;
            }
        }
    }
    s
}

/// Tag of the reports to rank 0 (the tree's tags are its levels, from 0).
const REPORT: i32 = -1;
/// Tag of rank 0's direct releases.
const RELEASE: i32 = -2;

/// Every rank but 0 sends an empty message to rank 0, which takes them all
/// in one step.
fn report_to_root(s: &mut Schedule, rank: u32, size: u32) {
    if rank != 0 {
        s.send(0, REPORT, Region::output(0, 0));
    } else if size > 1 {
        s.exchange(Vec::new(), everyone_but_root(size, REPORT));
    }
}

/// Empty transfers with every rank but 0.
fn everyone_but_root(size: u32, tag: i32) -> Vec<Transfer> {
    (1..size)
        .map(|peer| Transfer {
            peer,
            tag,
            region: Region::output(0, 0),
        })
        .collect()
}
