//! Rooted collectives that move data without reducing it: bcast, scatter(v),
//! gather(v).

use super::allgather::ring_blocks;
use super::tree::Tree;
use super::{abs, rel};
use crate::algorithm::Algorithm;
use crate::schedule::{Region, Schedule, Transfer, even_chunks, packed, span};

fn tree(rank: u32, size: u32, root: u32) -> Tree<impl Fn(u32) -> u32> {
    Tree {
        v: rel(rank, root, size),
        size,
        peer: move |v| abs(v, root, size),
        tag: 0,
    }
}

/// Broadcast of `count` elements of the output buffer from `root`.
///
/// - [`Algorithm::Binomial`]: down a binomial tree, ⌈log₂ p⌉ rounds.
/// - [`Algorithm::ScatterAllgather`] (van de Geijn): binomial scatter of `p`
///   chunks, then a ring allgather of them.
/// - [`Algorithm::Linear`]: the root sends to every rank directly, one round.
pub fn bcast(algorithm: Algorithm, rank: u32, size: u32, root: u32, count: usize) -> Schedule {
    let mut s = Schedule::new();
    let data = Region::output(0, count);
    let tree = tree(rank, size, root);
    if algorithm == Algorithm::ScatterAllgather && size > 1 {
        let chunks = even_chunks(count, size as usize);
        tree.scatter(&mut s, |first, last| {
            span(data, &chunks, first as usize, last as usize)
        });
        ring_blocks(
            &mut s,
            tree.v,
            size,
            data,
            &chunks,
            |v| abs(v, root, size),
            64,
        );
    } else if algorithm == Algorithm::Linear {
        if rank == root {
            let sends: Vec<Transfer> = (0..size)
                .filter(|&peer| peer != root)
                .map(|peer| Transfer {
                    peer,
                    tag: 0,
                    region: data,
                })
                .collect();
            if !sends.is_empty() {
                s.exchange(sends, Vec::new());
                s.expected();
            }
        } else {
            s.recv(root, 0, data);
        }
    } else {
        tree.bcast(&mut s, data);
    }
    s
}

/// Scatter of `block` elements to each rank from the root's input
/// (`size * block` elements, in rank order) into each output.
///
/// - [`Algorithm::Binomial`]: down a binomial tree; the root first rotates
///   its input so that every subtree's blocks are contiguous (unless it is
///   rank 0), inner ranks stage their subtree's blocks in scratch.
/// - [`Algorithm::Linear`]: the root sends every block directly.
pub fn scatter(algorithm: Algorithm, rank: u32, size: u32, root: u32, block: usize) -> Schedule {
    if algorithm == Algorithm::Linear {
        return scatterv(rank, size, root, &vec![block; size as usize], block);
    }
    let mut s = Schedule::new();
    let out = Region::output(0, block);
    let tree = tree(rank, size, root);
    let blocks = |base: Region, first: u32, v0: u32, last: u32| {
        base.sub(
            (first - v0) as usize * block,
            (last - first) as usize * block,
        )
    };
    if tree.v == 0 {
        let p = size as usize;
        let all = if root == 0 {
            Region::input(0, p * block)
        } else {
            let rotated = s.alloc(p * block);
            let split = (size - root) as usize * block;
            s.copy(
                Region::input(root as usize * block, split),
                rotated.sub(0, split),
            );
            s.copy(
                Region::input(0, root as usize * block),
                rotated.sub(split, root as usize * block),
            );
            rotated
        };
        tree.scatter(&mut s, |first, last| blocks(all, first, 0, last));
        s.copy(Region::input(root as usize * block, block), out);
    } else if tree.subtree_end() == tree.v + 1 {
        tree.scatter(&mut s, |_, _| out);
    } else {
        let staged = s.alloc((tree.subtree_end() - tree.v) as usize * block);
        tree.scatter(&mut s, |first, last| blocks(staged, first, tree.v, last));
        s.copy(staged.sub(0, block), out);
    }
    s
}

/// Gather of `block` elements from each rank's input into the root's
/// output (`size * block` elements, in rank order). Algorithms as for
/// [`scatter`], in reverse.
pub fn gather(algorithm: Algorithm, rank: u32, size: u32, root: u32, block: usize) -> Schedule {
    if algorithm == Algorithm::Linear {
        return gatherv(rank, size, root, &vec![block; size as usize], block);
    }
    let mut s = Schedule::new();
    let input = Region::input(0, block);
    let tree = tree(rank, size, root);
    let blocks = |base: Region, first: u32, v0: u32, last: u32| {
        base.sub(
            (first - v0) as usize * block,
            (last - first) as usize * block,
        )
    };
    let p = size as usize;
    if tree.v == 0 && root == 0 {
        let all = Region::output(0, p * block);
        s.copy(input, all.sub(0, block));
        tree.gather(&mut s, |first, last| blocks(all, first, 0, last));
    } else if tree.v == 0 {
        let rotated = s.alloc(p * block);
        s.copy(input, rotated.sub(0, block));
        tree.gather(&mut s, |first, last| blocks(rotated, first, 0, last));
        let split = (size - root) as usize * block;
        s.copy(
            rotated.sub(0, split),
            Region::output(root as usize * block, split),
        );
        s.copy(
            rotated.sub(split, root as usize * block),
            Region::output(0, root as usize * block),
        );
    } else if tree.subtree_end() == tree.v + 1 {
        tree.gather(&mut s, |_, _| input);
    } else {
        let staged = s.alloc((tree.subtree_end() - tree.v) as usize * block);
        s.copy(input, staged.sub(0, block));
        tree.gather(&mut s, |first, last| blocks(staged, first, tree.v, last));
    }
    s
}

/// Linear scatterv: the root sends `counts[r]` elements (blocks back to
/// back in its input, in rank order) to each rank `r`, which receives `own`
/// elements. `counts` is read at the root only.
pub fn scatterv(rank: u32, size: u32, root: u32, counts: &[usize], own: usize) -> Schedule {
    let mut s = Schedule::new();
    let out = Region::output(0, own);
    if rank == root {
        let blocks = packed(counts);
        let sends: Vec<Transfer> = (0..size)
            .filter(|&r| r != root)
            .map(|r| Transfer {
                peer: r,
                tag: 0,
                region: Region::input(blocks[r as usize].0, blocks[r as usize].1),
            })
            .collect();
        if !sends.is_empty() {
            s.exchange(sends, Vec::new());
            s.expected();
        }
        let (offset, len) = blocks[root as usize];
        s.copy(Region::input(offset, len), out);
    } else {
        s.recv(root, 0, out);
    }
    s
}

/// Linear gatherv: each rank sends its `own` input elements; the root
/// receives `counts[r]` from rank `r` into its output (back to back, in rank
/// order). `counts` is read at the root only.
pub fn gatherv(rank: u32, size: u32, root: u32, counts: &[usize], own: usize) -> Schedule {
    let mut s = Schedule::new();
    let input = Region::input(0, own);
    if rank == root {
        let blocks = packed(counts);
        let (offset, len) = blocks[root as usize];
        s.copy(input, Region::output(offset, len));
        let recvs: Vec<Transfer> = (0..size)
            .filter(|&r| r != root)
            .map(|r| Transfer {
                peer: r,
                tag: 0,
                region: Region::output(blocks[r as usize].0, blocks[r as usize].1),
            })
            .collect();
        if !recvs.is_empty() {
            s.exchange(Vec::new(), recvs);
        }
    } else {
        s.send_fan_in(root, 0, input);
    }
    s
}
