//! Allgather(v): every rank ends with every rank's block.

use super::with_every_other;
use crate::algorithm::Algorithm;
use crate::schedule::{Region, Schedule, packed, pof2_below, span};

/// Allgather of `counts[r]` elements from each rank `r` (its whole input)
/// into every output (blocks back to back, in rank order). Uniform
/// allgather is the case of equal counts.
///
/// - [`Algorithm::RecursiveDoubling`]: for `p = 2^k + rem`, the first `2·rem`
///   ranks fold pairwise (even into odd), `2^k` ranks double their
///   contiguous range in `k` exchanges, then the folded ranks get the whole.
/// - [`Algorithm::Bruck`]: ⌈log₂ p⌉ rounds for any `p`, in scratch rotated
///   so that slot `i` holds rank `rank + i`'s block, then unrotated.
/// - [`Algorithm::Ring`]: `p - 1` rounds, each passing one block on.
/// - [`Algorithm::Linear`]: one round, every rank sends its block to every
///   other; the receives are the call's first, so the sends are expected
///   up to 4 ranks (see [`Step::expected`](crate::schedule::Step::expected)).
pub fn allgather(algorithm: Algorithm, rank: u32, size: u32, counts: &[usize]) -> Schedule {
    let mut s = Schedule::new();
    let blocks = packed(counts);
    let total: usize = counts.iter().sum();
    let out = Region::output(0, total);
    let own = blocks[rank as usize];
    match algorithm {
        Algorithm::Bruck => bruck(&mut s, rank, size, counts),
        Algorithm::Ring => {
            s.copy(Region::input(0, own.1), out.sub(own.0, own.1));
            ring_blocks(&mut s, rank, size, out, &blocks, |r| r, 0);
        }
        Algorithm::Linear => {
            s.copy(Region::input(0, own.1), out.sub(own.0, own.1));
            with_every_other(
                &mut s,
                rank,
                size,
                |_| Region::input(0, own.1),
                |peer| span(out, &blocks, peer as usize, peer as usize + 1),
            );
        }
        _ => {
            s.copy(Region::input(0, own.1), out.sub(own.0, own.1));
            doubling(&mut s, rank, size, out, &blocks);
        }
    }
    s
}

/// Ring allgather over virtual ranks (`peer` maps them to ranks): `v` holds
/// block `v` of `base` (layout `blocks`) and ends with all of them.
pub(super) fn ring_blocks(
    s: &mut Schedule,
    v: u32,
    size: u32,
    base: Region,
    blocks: &[(usize, usize)],
    peer: impl Fn(u32) -> u32,
    tag: i32,
) {
    let (next, prev) = (peer((v + 1) % size), peer((v + size - 1) % size));
    for step in 0..size.saturating_sub(1) {
        let send = ((v + size - step) % size) as usize;
        let recv = ((v + 2 * size - step - 1) % size) as usize;
        s.sendrecv(
            next,
            span(base, blocks, send, send + 1),
            prev,
            span(base, blocks, recv, recv + 1),
            tag + step as i32,
        );
    }
}

/// Recursive doubling with a fold for non-powers of two; `rank` holds its
/// block of `base`.
fn doubling(s: &mut Schedule, rank: u32, size: u32, base: Region, blocks: &[(usize, usize)]) {
    let pof2 = pof2_below(size);
    let rem = size - pof2;
    let whole = span(base, blocks, 0, size as usize);
    // First rank of virtual rank `i`'s group (virtual `i < rem` is ranks
    // 2i and 2i+1); `first(pof2) == size`.
    let first = |i: u32| if i < rem { 2 * i } else { i + rem } as usize;
    let real = |i: u32| if i < rem { 2 * i + 1 } else { i + rem };
    let virt = if rank < 2 * rem {
        if rank % 2 == 0 {
            s.send(
                rank + 1,
                0,
                span(base, blocks, rank as usize, rank as usize + 1),
            );
            None
        } else {
            s.recv(
                rank - 1,
                0,
                span(base, blocks, rank as usize - 1, rank as usize),
            );
            Some(rank / 2)
        }
    } else {
        Some(rank - rem)
    };
    if let Some(me) = virt {
        let mut mask = 1;
        let mut tag = 1;
        while mask < pof2 {
            let partner = me ^ mask;
            let mine = me & !(mask - 1);
            let theirs = partner & !(mask - 1);
            s.sendrecv(
                real(partner),
                span(base, blocks, first(mine), first(mine + mask)),
                real(partner),
                span(base, blocks, first(theirs), first(theirs + mask)),
                tag,
            );
            mask <<= 1;
            tag += 1;
        }
    }
    if rank < 2 * rem {
        if rank % 2 == 1 {
            s.send(rank - 1, 100, whole);
        } else {
            s.recv(rank + 1, 100, whole);
        }
    }
}

/// Bruck's allgather for any `p`.
fn bruck(s: &mut Schedule, rank: u32, size: u32, counts: &[usize]) {
    let p = size as usize;
    let r = rank as usize;
    // Slot i holds the block of rank (rank + i) % p.
    let slot_counts: Vec<usize> = (0..p).map(|i| counts[(r + i) % p]).collect();
    let slots = packed(&slot_counts);
    let total: usize = counts.iter().sum();
    let work = s.alloc(total);
    s.copy(Region::input(0, counts[r]), span(work, &slots, 0, 1));
    let mut distance = 1;
    let mut tag = 0;
    while distance < p {
        let n = distance.min(p - distance);
        s.sendrecv(
            ((r + p - distance) % p) as u32,
            span(work, &slots, 0, n),
            ((r + distance) % p) as u32,
            span(work, &slots, distance, distance + n),
            tag,
        );
        distance <<= 1;
        tag += 1;
    }
    // Slots 0..p-r hold ranks r..p, slots p-r..p hold ranks 0..r.
    let blocks = packed(counts);
    let out = Region::output(0, total);
    s.copy(span(work, &slots, 0, p - r), span(out, &blocks, r, p));
    s.copy(span(work, &slots, p - r, p), span(out, &blocks, 0, r));
}
