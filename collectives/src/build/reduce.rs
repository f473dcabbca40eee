//! Reductions: reduce, allreduce, reduce_scatter, scan, exscan.
//!
//! Combining follows rank order whenever the op may be non-commutative:
//! every partial result covers a contiguous range of ranks and is combined
//! with its neighbour range on the correct side.

use super::tree::Tree;
use super::{abs, rel};
use crate::algorithm::Algorithm;
use crate::schedule::{Region, Schedule, Transfer, even_chunks, pof2_below, span};

/// Reduce of `count` input elements of every rank into the root's output.
///
/// Binomial tree. For a commutative op the tree is rooted at `root`; for
/// any other op it is rooted at rank 0 (so that subtrees are rank ranges
/// combined in order), which then sends the result to `root`.
///
/// With `segment` > 0 (and shorter than the vector), the tree works in a
/// pipeline of `segment`-element pieces: a rank passes piece `j` up while
/// it receives piece `j + 1`, so the levels of the tree and the combining
/// overlap (see [`reduce_segment`](crate::reduce_segment)).
pub fn reduce(
    rank: u32,
    size: u32,
    root: u32,
    count: usize,
    commutative: bool,
    segment: usize,
) -> Schedule {
    let mut s = Schedule::new();
    let tree_root = if commutative { root } else { 0 };
    let tree = Tree {
        v: rel(rank, tree_root, size),
        size,
        peer: |v| abs(v, tree_root, size),
        tag: 0,
    };
    let out = Region::output(0, count);
    let input = Region::input(0, count);
    let acc = if rank == root && rank == tree_root {
        out
    } else if tree.children().is_empty() && rank != tree_root {
        // A leaf sends its operand as it is.
        input
    } else {
        s.alloc(count)
    };
    if tree.streams(count, segment) {
        tree.reduce_streamed(&mut s, input, acc, segment);
    } else if segment == 0 || segment >= count {
        tree.reduce_operand(&mut s, input, acc);
    } else {
        s.copy(input, acc);
        tree.reduce_in_pieces(&mut s, acc, segment);
    }
    if tree_root != root {
        if rank == tree_root {
            s.send(root, 64, acc);
        } else if rank == root {
            s.recv(tree_root, 64, out);
        }
    }
    s
}

/// Allreduce, in place on `count` elements of the output buffer (the
/// caller puts its operand there).
///
/// - [`Algorithm::RecursiveDoubling`]: fold to a power of two, ⌈log₂ p⌉
///   full-vector exchanges, unfold. Any op.
/// - [`Algorithm::Ring`]: ring reduce-scatter of `p` chunks, then ring
///   allgather; `2(p-1)` rounds of `count/p`. Commutative ops only.
/// - [`Algorithm::Rabenseifner`]: fold, recursive-halving reduce-scatter,
///   recursive-doubling allgather, unfold. Any op.
pub fn allreduce(
    algorithm: Algorithm,
    rank: u32,
    size: u32,
    count: usize,
    commutative: bool,
) -> Schedule {
    allreduce_of(algorithm, rank, size, count, commutative, None)
}

/// [`allreduce`] of the `count` elements of the input buffer into the
/// output buffer. Recursive doubling and Rabenseifner send from the input
/// itself in their first exchange (or fold) and receive into the output,
/// so the operand is never copied (measured over TCP, 2 ranks, 1 MiB: the
/// copy was 6-7% of each rank's time); the ring copies it first.
pub fn allreduce_from_input(
    algorithm: Algorithm,
    rank: u32,
    size: u32,
    count: usize,
    commutative: bool,
) -> Schedule {
    allreduce_of(
        algorithm,
        rank,
        size,
        count,
        commutative,
        Some(Region::input(0, count)),
    )
}

/// [`allreduce`] with this rank's operand in `operand` if given, else
/// already in the output.
fn allreduce_of(
    algorithm: Algorithm,
    rank: u32,
    size: u32,
    count: usize,
    commutative: bool,
    operand: Option<Region>,
) -> Schedule {
    let mut s = Schedule::new();
    let data = Region::output(0, count);
    match algorithm {
        Algorithm::Ring if commutative => {
            if let Some(operand) = operand {
                s.copy(operand, data);
            }
            ring(&mut s, rank, size, data);
        }
        Algorithm::Rabenseifner => folded(&mut s, rank, size, data, operand, rabenseifner),
        _ => folded(&mut s, rank, size, data, operand, doubling),
    }
    s
}

/// The body of an allreduce among the virtual ranks of [`folded`]: `me`,
/// `pof2`, the real rank of a virtual one, the vector, and this rank's
/// operand if it is not in the vector yet.
type Body = fn(&mut Schedule, u32, u32, &dyn Fn(u32) -> u32, Region, Option<Region>);

/// Folds `p = 2^k + rem` ranks to `2^k` (the first `2·rem` ranks pair up,
/// the even one hands its vector to the odd one and waits), runs `body`
/// on the virtual ranks, then unfolds. Virtual rank `i` covers ranks
/// `2i, 2i+1` if `i < rem`, else `i + rem`: a contiguous rank range.
/// With `operand`, this rank's operand is there rather than in `data`.
fn folded(
    s: &mut Schedule,
    rank: u32,
    size: u32,
    data: Region,
    operand: Option<Region>,
    body: Body,
) {
    let pof2 = pof2_below(size);
    let rem = size - pof2;
    let real = |i: u32| if i < rem { 2 * i + 1 } else { i + rem };
    let virt = if rank < 2 * rem {
        if rank % 2 == 0 {
            s.send(rank + 1, 0, operand.unwrap_or(data));
            None
        } else {
            match operand {
                // The lower rank's vector lands in place, then this rank's
                // operand goes on its right.
                Some(operand) => {
                    s.recv(rank - 1, 0, data);
                    s.reduce(operand, data, false);
                }
                None => {
                    let temp = s.alloc(data.len);
                    s.recv(rank - 1, 0, temp);
                    s.reduce(temp, data, true);
                }
            }
            Some((rank / 2, None))
        }
    } else {
        Some((rank - rem, operand))
    };
    if let Some((me, operand)) = virt {
        body(s, me, pof2, &real, data, operand);
    }
    if rank < 2 * rem {
        if rank % 2 == 1 {
            s.send(rank - 1, 100, data);
        } else {
            s.recv(rank + 1, 100, data);
        }
    }
}

/// Recursive doubling among `pof2` virtual ranks. With `operand`, the
/// first exchange sends it and receives the partner's vector into `data`.
fn doubling(
    s: &mut Schedule,
    me: u32,
    pof2: u32,
    real: &dyn Fn(u32) -> u32,
    data: Region,
    operand: Option<Region>,
) {
    let (mut mask, mut tag) = (1, 1);
    if let Some(operand) = operand {
        if pof2 == 1 {
            s.copy(operand, data);
            return;
        }
        let partner = me ^ mask;
        s.sendrecv(real(partner), operand, real(partner), data, tag);
        s.reduce(operand, data, me < partner);
        mask <<= 1;
        tag += 1;
    }
    if mask >= pof2 {
        return;
    }
    let temp = s.alloc(data.len);
    while mask < pof2 {
        let partner = me ^ mask;
        s.sendrecv(real(partner), data, real(partner), temp, tag);
        s.reduce(temp, data, partner < me);
        mask <<= 1;
        tag += 1;
    }
}

/// Recursive halving then doubling among `pof2` virtual ranks, over `pof2`
/// chunks of the vector.
fn rabenseifner(
    s: &mut Schedule,
    me: u32,
    pof2: u32,
    real: &dyn Fn(u32) -> u32,
    data: Region,
    operand: Option<Region>,
) {
    if let (Some(operand), 1) = (operand, pof2) {
        s.copy(operand, data);
        return;
    }
    let chunks = even_chunks(data.len, pof2 as usize);
    let temp = s.alloc(data.len);
    let mirror = |region: Region| temp.sub(region.offset - data.offset, region.len);
    // With the operand in the input, the first halving sends from there and
    // receives the partner's half in place; the half given away is filled
    // by the allgather at the end, so the operand is never copied.
    let operand_of =
        |region: Region| operand.map(|o| o.sub(region.offset - data.offset, region.len));
    let (mut lo, mut hi) = (0usize, pof2 as usize);
    let (mut mask, mut tag) = (1, 1);
    let mut history = Vec::new();
    while mask < pof2 {
        let partner = me ^ mask;
        let mid = (lo + hi) / 2;
        let (keep, give) = if me < partner {
            ((lo, mid), (mid, hi))
        } else {
            ((mid, hi), (lo, mid))
        };
        let keep_region = span(data, &chunks, keep.0, keep.1);
        let give_region = span(data, &chunks, give.0, give.1);
        match (mask, operand_of(give_region), operand_of(keep_region)) {
            (1, Some(give_operand), Some(keep_operand)) => {
                s.sendrecv(real(partner), give_operand, real(partner), keep_region, tag);
                s.reduce(keep_operand, keep_region, me < partner);
            }
            _ => {
                s.sendrecv(
                    real(partner),
                    give_region,
                    real(partner),
                    mirror(keep_region),
                    tag,
                );
                s.reduce(mirror(keep_region), keep_region, partner < me);
            }
        }
        history.push((partner, keep_region, give_region));
        (lo, hi) = keep;
        mask <<= 1;
        tag += 1;
    }
    for (partner, keep, give) in history.into_iter().rev() {
        s.sendrecv(real(partner), keep, real(partner), give, tag);
        tag += 1;
    }
}

/// Ring reduce-scatter then ring allgather (commutative ops).
fn ring(s: &mut Schedule, rank: u32, size: u32, data: Region) {
    let chunks = even_chunks(data.len, size as usize);
    ring_reduce_scatter(s, rank, size, data, &chunks, 1);
    super::allgather::ring_blocks(
        s,
        (rank + 1) % size,
        size,
        data,
        &chunks,
        |v| (v + size - 1) % size,
        1000,
    );
}

/// Ring reduce-scatter over chunks of `data` (commutative ops): after
/// `p - 1` rounds rank `r` holds the full result of chunk `(r + shift) % p`.
fn ring_reduce_scatter(
    s: &mut Schedule,
    rank: u32,
    size: u32,
    data: Region,
    chunks: &[(usize, usize)],
    shift: u32,
) {
    let p = size;
    let largest = chunks.iter().map(|c| c.1).max().unwrap_or(0);
    let temp = s.alloc(largest);
    let (next, prev) = ((rank + 1) % p, (rank + p - 1) % p);
    for step in 0..p.saturating_sub(1) {
        // Sends the chunk it completed last round (its own at first).
        let send = ((rank + shift + 2 * p - step - 1) % p) as usize;
        let recv = ((rank + shift + 2 * p - step - 2) % p) as usize;
        let into = span(data, chunks, recv, recv + 1);
        s.sendrecv(
            next,
            span(data, chunks, send, send + 1),
            prev,
            temp.sub(0, into.len),
            step as i32,
        );
        s.reduce(temp.sub(0, into.len), into, true);
    }
}

/// Reduce-scatter (block variant): every rank's input is `size * block`
/// elements; rank `r` gets block `r` of the reduction in its output.
///
/// - [`Algorithm::Ring`]: ring reduce-scatter over a scratch copy of the
///   input, `p - 1` rounds of one block. Commutative ops only.
/// - [`Algorithm::ReduceThenScatter`]: binomial reduce to rank 0 (rank
///   ordered), then binomial scatter. Any op.
pub fn reduce_scatter(
    algorithm: Algorithm,
    rank: u32,
    size: u32,
    block: usize,
    commutative: bool,
) -> Schedule {
    let p = size as usize;
    let out = Region::output(0, block);
    if algorithm == Algorithm::Ring && commutative {
        let mut s = Schedule::new();
        let work = s.alloc(p * block);
        s.copy(Region::input(0, p * block), work);
        let chunks: Vec<(usize, usize)> = (0..p).map(|i| (i * block, block)).collect();
        ring_reduce_scatter(&mut s, rank, size, work, &chunks, 0);
        s.copy(work.sub(rank as usize * block, block), out);
        return s;
    }
    // Reduce to rank 0 (any op), landing in scratch there, then scatter.
    let mut s = Schedule::new();
    let tree = Tree {
        v: rank,
        size,
        peer: |v| v,
        tag: 0,
    };
    let acc = s.alloc(p * block);
    tree.reduce_operand(&mut s, Region::input(0, p * block), acc);
    let tree = Tree {
        v: rank,
        size,
        peer: |v| v,
        tag: 64,
    };
    let end = tree.subtree_end();
    let scatter_from = s.steps.len();
    if rank == 0 {
        tree.scatter(&mut s, |first, last| {
            acc.sub(first as usize * block, (last - first) as usize * block)
        });
        s.copy(acc.sub(0, block), out);
    } else if end == rank + 1 {
        tree.scatter(&mut s, |_, _| out);
    } else {
        let staged = s.alloc((end - rank) as usize * block);
        tree.scatter(&mut s, |first, last| {
            staged.sub(
                (first - rank) as usize * block,
                (last - first) as usize * block,
            )
        });
        s.copy(staged.sub(0, block), out);
    }
    // The scatter's receives follow the reduce: not expected.
    s.unexpected_from(scatter_from);
    s
}

/// Inclusive scan: rank `r`'s output is `in₀ ∘ in₁ ∘ … ∘ in_r`. Recursive
/// doubling (any op).
pub fn scan(rank: u32, size: u32, count: usize) -> Schedule {
    prefix(rank, size, count, false)
}

/// Exclusive scan: rank `r > 0`'s output is `in₀ ∘ … ∘ in_{r-1}`; rank 0's
/// output is not written. Recursive doubling (any op).
pub fn exscan(rank: u32, size: u32, count: usize) -> Schedule {
    prefix(rank, size, count, true)
}

fn prefix(rank: u32, size: u32, count: usize, exclusive: bool) -> Schedule {
    let mut s = Schedule::new();
    let out = Region::output(0, count);
    // `group`: the reduction of this rank's aligned group so far.
    let group = s.alloc(count);
    let received = s.alloc(count);
    s.copy(Region::input(0, count), group);
    let mut have_partial = !exclusive;
    if !exclusive {
        s.copy(Region::input(0, count), out);
    }
    let (mut mask, mut tag) = (1u32, 0);
    while mask < size {
        let partner = rank ^ mask;
        if partner < size {
            s.exchange(
                vec![Transfer {
                    peer: partner,
                    tag,
                    region: group,
                }],
                vec![Transfer {
                    peer: partner,
                    tag,
                    region: received,
                }],
            );
            if partner < rank {
                if have_partial {
                    s.reduce(received, out, true);
                } else {
                    s.copy(received, out);
                    have_partial = true;
                }
                s.reduce(received, group, true);
            } else {
                s.reduce(received, group, false);
            }
        }
        mask <<= 1;
        tag += 1;
    }
    s
}
