//! All-to-all personalized exchange.

use super::with_every_other;
use crate::algorithm::Algorithm;
use crate::schedule::{Region, Schedule, Transfer, packed};

/// Alltoall of `block` elements between every pair: block `j` of rank `i`'s
/// input lands in block `i` of rank `j`'s output.
///
/// - [`Algorithm::Bruck`]: rotate, then ⌈log₂ p⌉ rounds each moving the
///   blocks whose index has bit k set by `2^k` ranks (packed into one
///   message), then unrotate. For small blocks.
/// - [`Algorithm::Pairwise`]: in round `s`, send to `rank + s` and receive
///   from `rank - s`; `p - 1` rounds.
/// - [`Algorithm::Linear`]: every send and receive at once.
pub fn alltoall(algorithm: Algorithm, rank: u32, size: u32, block: usize) -> Schedule {
    if algorithm == Algorithm::Bruck {
        return bruck(rank, size, block);
    }
    let counts = vec![block; size as usize];
    alltoallv(algorithm, rank, size, &counts, &counts)
}

/// Alltoallv: rank `i` sends `send_counts[j]` elements to rank `j` (blocks
/// back to back in its input, in rank order) and receives `recv_counts[j]`
/// from rank `j` (likewise in its output). [`Algorithm::Pairwise`] or
/// [`Algorithm::Linear`] (the default for anything else).
pub fn alltoallv(
    algorithm: Algorithm,
    rank: u32,
    size: u32,
    send_counts: &[usize],
    recv_counts: &[usize],
) -> Schedule {
    let mut s = Schedule::new();
    let sends = packed(send_counts);
    let recvs = packed(recv_counts);
    let r = rank as usize;
    let outgoing = |peer: u32, tag: i32| Transfer {
        peer,
        tag,
        region: Region::input(sends[peer as usize].0, sends[peer as usize].1),
    };
    let incoming = |peer: u32, tag: i32| Transfer {
        peer,
        tag,
        region: Region::output(recvs[peer as usize].0, recvs[peer as usize].1),
    };
    s.copy(
        Region::input(sends[r].0, sends[r].1),
        Region::output(recvs[r].0, recvs[r].1),
    );
    if algorithm == Algorithm::Pairwise {
        for step in 1..size {
            let (dest, source) = ((rank + step) % size, (rank + size - step) % size);
            s.exchange(
                vec![outgoing(dest, step as i32)],
                vec![incoming(source, step as i32)],
            );
        }
    } else {
        with_every_other(
            &mut s,
            rank,
            size,
            |peer| outgoing(peer, 0).region,
            |peer| incoming(peer, 0).region,
        );
    }
    s
}

fn bruck(rank: u32, size: u32, block: usize) -> Schedule {
    let mut s = Schedule::new();
    let (p, r) = (size as usize, rank as usize);
    // work[i] = the block for rank (rank + i); after the rounds, work[i] is
    // the block from rank (rank - i).
    let work = s.alloc(p * block);
    let slot = |i: usize| work.sub(i * block, block);
    s.copy(
        Region::input(r * block, (p - r) * block),
        work.sub(0, (p - r) * block),
    );
    s.copy(
        Region::input(0, r * block),
        work.sub((p - r) * block, r * block),
    );
    let distances = || std::iter::successors(Some(1usize), |d| Some(d << 1)).take_while(|&d| d < p);
    let most = distances()
        .map(|d| (0..p).filter(|i| i & d != 0).count())
        .max()
        .unwrap_or(0);
    let pack = s.alloc(most * block);
    let unpack = s.alloc(most * block);
    let mut distance = 1;
    let mut tag = 0;
    while distance < p {
        let moving: Vec<usize> = (0..p).filter(|i| i & distance != 0).collect();
        for (j, &i) in moving.iter().enumerate() {
            s.copy(slot(i), pack.sub(j * block, block));
        }
        let len = moving.len() * block;
        s.sendrecv(
            ((r + distance) % p) as u32,
            pack.sub(0, len),
            ((r + p - distance) % p) as u32,
            unpack.sub(0, len),
            tag,
        );
        for (j, &i) in moving.iter().enumerate() {
            s.copy(unpack.sub(j * block, block), slot(i));
        }
        distance <<= 1;
        tag += 1;
    }
    for i in 0..p {
        s.copy(slot(i), Region::output(((r + p - i) % p) * block, block));
    }
    s
}
