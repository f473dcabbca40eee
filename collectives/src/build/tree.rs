//! Binomial trees over relative ranks: relative rank `v` hangs below
//! `v - lowbit(v)`, and its subtree is `v..min(v + lowbit(v), p)` (the
//! root's is everything). Children are `v + m` for the powers of two
//! `m < lowbit(v)` with `v + m < p`.

use super::level;
use crate::schedule::{Local, Region, Schedule, Transfer};

/// A tree over relative ranks; `peer` maps them to ranks.
pub(super) struct Tree<P> {
    /// This rank, relative.
    pub(super) v: u32,
    pub(super) size: u32,
    pub(super) peer: P,
    /// Added to every level's tag.
    pub(super) tag: i32,
}

impl<P: Fn(u32) -> u32> Tree<P> {
    /// `lowbit(v)`, or for the root the smallest power of two `>= p`.
    fn mask(&self) -> u32 {
        if self.v == 0 {
            self.size.next_power_of_two()
        } else {
            self.v & self.v.wrapping_neg()
        }
    }

    /// End of this rank's subtree (exclusive).
    pub(super) fn subtree_end(&self) -> u32 {
        (self.v + self.mask()).min(self.size)
    }

    /// Parent (relative) and the tag of the edge to it.
    fn parent(&self) -> Option<(u32, i32)> {
        (self.v != 0).then(|| (self.v - self.mask(), self.tag + level(self.mask())))
    }

    /// Children (relative), smallest subtree first: (child, subtree end, tag).
    pub(super) fn children(&self) -> Vec<(u32, u32, i32)> {
        let mut children = Vec::new();
        let mut m = 1;
        while m < self.mask() {
            let child = self.v + m;
            if child < self.size {
                children.push((child, (child + m).min(self.size), self.tag + level(m)));
            }
            m <<= 1;
        }
        children
    }

    /// Broadcast of `data` down the tree: receive it from the parent, then
    /// send it to every child (largest subtree first) in one step. Every
    /// rank's receive is its first step, so the sends are expected.
    pub(super) fn bcast(&self, s: &mut Schedule, data: Region) {
        if let Some((parent, tag)) = self.parent() {
            s.recv((self.peer)(parent), tag, data);
        }
        let sends: Vec<Transfer> = self
            .children()
            .into_iter()
            .rev()
            .map(|(child, _, tag)| Transfer {
                peer: (self.peer)(child),
                tag,
                region: data,
            })
            .collect();
        if !sends.is_empty() {
            s.exchange(sends, Vec::new());
            s.expected();
        }
    }

    /// Scatter down the tree: `hold(first, last)` is where this rank keeps
    /// the blocks of relative ranks `first..last` (its subtree's, contiguous).
    pub(super) fn scatter(&self, s: &mut Schedule, hold: impl Fn(u32, u32) -> Region) {
        if let Some((parent, tag)) = self.parent() {
            s.recv((self.peer)(parent), tag, hold(self.v, self.subtree_end()));
        }
        let sends: Vec<Transfer> = self
            .children()
            .into_iter()
            .rev()
            .map(|(child, end, tag)| Transfer {
                peer: (self.peer)(child),
                tag,
                region: hold(child, end),
            })
            .collect();
        if !sends.is_empty() {
            s.exchange(sends, Vec::new());
            s.expected();
        }
    }

    /// Gather up the tree (mirror of [`Tree::scatter`]); this rank's own
    /// block must be in `hold(v, v + 1)` before the call's first step ends.
    pub(super) fn gather(&self, s: &mut Schedule, hold: impl Fn(u32, u32) -> Region) {
        let recvs: Vec<Transfer> = self
            .children()
            .into_iter()
            .map(|(child, end, tag)| Transfer {
                peer: (self.peer)(child),
                tag,
                region: hold(child, end),
            })
            .collect();
        if !recvs.is_empty() {
            s.exchange(Vec::new(), recvs);
        }
        if let Some((parent, tag)) = self.parent() {
            s.send((self.peer)(parent), tag, hold(self.v, self.subtree_end()));
            s.expected();
        }
    }

    /// Whether [`Tree::reduce_streamed`] applies: the root of a tree with
    /// children, reducing a vector of `len` elements in `segment`-element
    /// pieces (more than one).
    pub(super) fn streams(&self, len: usize, segment: usize) -> bool {
        segment > 0 && segment < len && self.parent().is_none() && !self.children().is_empty()
    }

    /// The root's side of [`Tree::reduce_in_pieces`] (see
    /// [`Tree::streams`]), as one streamed step: every piece of every child
    /// is received at once, and each is combined as it arrives, so no piece
    /// waits unmatched (and is copied twice) and combining overlaps the
    /// transfer. The first child's pieces land in `acc` itself and are
    /// combined with this rank's `input` there (no copy of the input
    /// first); the other children's land in scratch.
    pub(super) fn reduce_streamed(
        &self,
        s: &mut Schedule,
        input: Region,
        acc: Region,
        segment: usize,
    ) {
        let children = self.children();
        let mut recvs = Vec::new();
        let mut locals = Vec::new();
        for offset in (0..acc.len).step_by(segment) {
            let len = segment.min(acc.len - offset);
            let piece = acc.sub(offset, len);
            for (index, &(child, _, tag)) in children.iter().enumerate() {
                let peer = (self.peer)(child);
                if index == 0 {
                    recvs.push(Transfer {
                        peer,
                        tag,
                        region: piece,
                    });
                    locals.push(Local::Reduce {
                        from: input.sub(offset, len),
                        into: piece,
                        from_first: true,
                    });
                } else {
                    let temp = s.alloc(len);
                    recvs.push(Transfer {
                        peer,
                        tag,
                        region: temp,
                    });
                    locals.push(Local::Reduce {
                        from: temp,
                        into: piece,
                        from_first: false,
                    });
                }
            }
        }
        s.streamed(Vec::new(), recvs, locals);
    }

    /// Reduction up the tree of this rank's `input` into `acc` (which must
    /// not overlap it): receive every child's partial result at once, the
    /// first one into `acc` itself, then combine in rank order (`input ∘
    /// child₁ ∘ child₂ ...`, children hold higher ranks; no copy of the
    /// input first) and send to the parent. Rank order holds when relative
    /// ranks are ranks (root 0) or the op is commutative. A rank without
    /// children copies its input into `acc` (nothing if they are the same
    /// region).
    pub(super) fn reduce_operand(&self, s: &mut Schedule, input: Region, acc: Region) {
        let children = self.children();
        if children.is_empty() {
            s.copy(input, acc);
        } else {
            let temps: Vec<Region> = children[1..].iter().map(|_| s.alloc(acc.len)).collect();
            let landing: Vec<Region> = std::iter::once(acc).chain(temps.iter().copied()).collect();
            s.exchange(Vec::new(), self.receives_from_children(&children, &landing));
            s.reduce(input, acc, true);
            for &temp in &temps {
                s.reduce(temp, acc, false);
            }
        }
        if let Some((parent, tag)) = self.parent() {
            s.send((self.peer)(parent), tag, acc);
            s.expected();
        }
    }

    /// One receive from each of `children` (as [`Tree::children`] lists
    /// them) into the matching region.
    fn receives_from_children(
        &self,
        children: &[(u32, u32, i32)],
        regions: &[Region],
    ) -> Vec<Transfer> {
        children
            .iter()
            .zip(regions)
            .map(|(&(child, _, tag), &region)| Transfer {
                peer: (self.peer)(child),
                tag,
                region,
            })
            .collect()
    }

    /// [`Tree::reduce_operand`] in a pipeline of `segment`-element pieces
    /// of `acc` (which holds this rank's operand; `0 < segment < acc.len`):
    /// in step `j` a rank receives its children's piece `j`, sends its
    /// parent piece `j - 1` (combined in the step before), then combines
    /// piece `j`. A leaf sends every piece at once. Pieces are combined in
    /// the same order as the whole vector would be.
    pub(super) fn reduce_in_pieces(&self, s: &mut Schedule, acc: Region, segment: usize) {
        debug_assert!(
            segment > 0 && segment < acc.len,
            "a whole vector goes by reduce_operand"
        );
        let segment = segment.max(1);
        let pieces: Vec<Region> = (0..acc.len)
            .step_by(segment)
            .map(|offset| acc.sub(offset, segment.min(acc.len - offset)))
            .collect();
        let children = self.children();
        let parent = self.parent();
        let to_parent = |piece: Region| {
            parent.map(|(parent, tag)| Transfer {
                peer: (self.peer)(parent),
                tag,
                region: piece,
            })
        };
        if children.is_empty() {
            let sends: Vec<Transfer> = pieces.iter().filter_map(|&p| to_parent(p)).collect();
            if !sends.is_empty() {
                s.exchange(sends, Vec::new());
            }
            return;
        }
        let temps: Vec<Region> = children.iter().map(|_| s.alloc(segment)).collect();
        for j in 0..=pieces.len() {
            let sends: Vec<Transfer> = j
                .checked_sub(1)
                .and_then(|previous| to_parent(pieces[previous]))
                .into_iter()
                .collect();
            let Some(&piece) = pieces.get(j) else {
                if !sends.is_empty() {
                    s.exchange(sends, Vec::new());
                }
                break;
            };
            let landing: Vec<Region> = temps.iter().map(|t| t.sub(0, piece.len)).collect();
            let recvs = self.receives_from_children(&children, &landing);
            s.exchange(sends, recvs);
            for &temp in &landing {
                s.reduce(temp, piece, false);
            }
        }
    }
}
