//! Schedules as data: what one rank sends, receives, copies and reduces,
//! step by step.

use std::ops::Range;

/// Which buffer a region lies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Buf {
    /// The caller's send buffer (read only).
    Input,
    /// The caller's receive buffer.
    Output,
    /// Temporary space owned by the executor.
    Scratch,
}

/// A run of elements of one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    /// The buffer.
    pub buf: Buf,
    /// First element.
    pub offset: usize,
    /// Number of elements.
    pub len: usize,
}

impl Region {
    /// Elements `offset..offset + len` of the input buffer.
    pub fn input(offset: usize, len: usize) -> Region {
        Region {
            buf: Buf::Input,
            offset,
            len,
        }
    }

    /// Elements `offset..offset + len` of the output buffer.
    pub fn output(offset: usize, len: usize) -> Region {
        Region {
            buf: Buf::Output,
            offset,
            len,
        }
    }

    /// Elements `offset..offset + len` of the scratch buffer.
    pub fn scratch(offset: usize, len: usize) -> Region {
        Region {
            buf: Buf::Scratch,
            offset,
            len,
        }
    }

    /// The element range.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }

    /// One past the last element.
    pub fn end(&self) -> usize {
        self.offset + self.len
    }

    /// The sub-region `offset..offset + len`, relative to this one.
    pub(crate) fn sub(&self, offset: usize, len: usize) -> Region {
        debug_assert!(offset + len <= self.len, "sub-region out of its region");
        Region {
            buf: self.buf,
            offset: self.offset + offset,
            len,
        }
    }

    /// Whether two regions share an element.
    pub fn overlaps(&self, other: &Region) -> bool {
        self.buf == other.buf
            && self.len > 0
            && other.len > 0
            && self.offset < other.end()
            && other.offset < self.end()
    }
}

/// One message of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// The other rank (of the communicator).
    pub peer: u32,
    /// Tag of the message (any value: collectives have their own context).
    pub tag: i32,
    /// What is sent, or where it lands.
    pub region: Region,
}

/// Work done locally once a step's messages have completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// `to = from`.
    Copy {
        /// Source.
        from: Region,
        /// Destination (same length).
        to: Region,
    },
    /// `into = from ∘ into` if `from_first` (the data in `from` comes from
    /// lower ranks), else `into = into ∘ from`.
    Reduce {
        /// The operand that is read.
        from: Region,
        /// The operand that is read and overwritten with the result.
        into: Region,
        /// Whether `from` is the left operand.
        from_first: bool,
    },
}

impl Local {
    /// The region this operation writes.
    pub fn target(&self) -> Region {
        match *self {
            Local::Copy { to, .. } => to,
            Local::Reduce { into, .. } => into,
        }
    }
}

/// One round: start every send and receive, wait for all of them, then run
/// the local operations in order.
///
/// A *streamed* step runs each local operation as soon as the receive it
/// reads has arrived, while later receives are still in flight: every
/// receive is posted ahead, so that no message waits unmatched (and is
/// copied twice), and the work on early messages overlaps the transfer of
/// later ones. Receives are taken in their order in `recvs`, and each
/// local runs once the last receive it involves has arrived. A local
/// involves one or two receives (its `from`, its target, or both, each
/// exactly a receive's region); whatever else it touches it only writes
/// (a target no receive or send of the step touches) or only reads (a
/// region the step does not write, such as the input).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Messages sent.
    pub sends: Vec<Transfer>,
    /// Messages received. Their regions must not overlap each other or any
    /// send of the step.
    pub recvs: Vec<Transfer>,
    /// Work after the messages completed (after each receive, if `streamed`).
    pub locals: Vec<Local>,
    /// Whether the locals run as their receives arrive.
    pub streamed: bool,
    /// Whether the step's sends converge on one rank that receives from
    /// many at once (a linear gather's root): a transport should not leave
    /// that rank to copy every message itself (see [`Outgoing::fan_in`]).
    ///
    /// [`Outgoing::fan_in`]: crate::Outgoing::fan_in
    pub fan_in: bool,
    /// Whether every send of the step is received in the receiver's first
    /// step with messages, whose receives it posts as it enters the call
    /// (the tree or fan of a rooted collective, a linear alltoall of up to
    /// 4 ranks): the receiver most likely waits for it already (see
    /// [`Outgoing::expected`]).
    ///
    /// [`Outgoing::expected`]: crate::Outgoing::expected
    pub expected: bool,
}

impl Step {
    /// Whether the step moves messages.
    pub fn communicates(&self) -> bool {
        !self.sends.is_empty() || !self.recvs.is_empty()
    }
}

/// Everything one rank does for one collective call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Scratch elements the executor allocates.
    pub scratch: usize,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Schedule {
    pub(crate) fn new() -> Schedule {
        Schedule::default()
    }

    /// Reserves `len` scratch elements.
    pub(crate) fn alloc(&mut self, len: usize) -> Region {
        let region = Region::scratch(self.scratch, len);
        self.scratch += len;
        region
    }

    /// Appends a step with these messages.
    pub(crate) fn exchange(&mut self, sends: Vec<Transfer>, recvs: Vec<Transfer>) {
        self.steps.push(Step {
            sends,
            recvs,
            locals: Vec::new(),
            streamed: false,
            fan_in: false,
            expected: false,
        });
    }

    /// A step that sends one message to a rank that receives from many at
    /// once, in its first step (see [`Step::fan_in`], [`Step::expected`]).
    pub(crate) fn send_fan_in(&mut self, peer: u32, tag: i32, region: Region) {
        self.send(peer, tag, region);
        if let Some(step) = self.steps.last_mut() {
            step.fan_in = true;
            step.expected = true;
        }
    }

    /// Marks the last step's sends as received in their receivers' first
    /// step (see [`Step::expected`]).
    pub(crate) fn expected(&mut self) {
        if let Some(step) = self.steps.last_mut() {
            step.expected = !step.sends.is_empty();
        }
    }

    /// Unmarks the sends of step `first` and later (see [`Step::expected`]):
    /// for a tree round that follows other rounds.
    pub(crate) fn unexpected_from(&mut self, first: usize) {
        for step in self.steps.iter_mut().skip(first) {
            step.expected = false;
        }
    }

    /// Appends a streamed step (see [`Step`]): `locals` run as the
    /// receives they read arrive.
    pub(crate) fn streamed(
        &mut self,
        sends: Vec<Transfer>,
        recvs: Vec<Transfer>,
        locals: Vec<Local>,
    ) {
        self.steps.push(Step {
            sends,
            recvs,
            locals,
            streamed: true,
            fan_in: false,
            expected: false,
        });
    }

    /// A step that sends one message.
    pub(crate) fn send(&mut self, peer: u32, tag: i32, region: Region) {
        self.exchange(vec![Transfer { peer, tag, region }], Vec::new());
    }

    /// A step that receives one message.
    pub(crate) fn recv(&mut self, peer: u32, tag: i32, region: Region) {
        self.exchange(Vec::new(), vec![Transfer { peer, tag, region }]);
    }

    /// A step that sends one message and receives one.
    pub(crate) fn sendrecv(
        &mut self,
        dest: u32,
        send: Region,
        source: u32,
        recv: Region,
        tag: i32,
    ) {
        self.exchange(
            vec![Transfer {
                peer: dest,
                tag,
                region: send,
            }],
            vec![Transfer {
                peer: source,
                tag,
                region: recv,
            }],
        );
    }

    /// Appends local work after the last step (or as a step without
    /// messages, first or after a streamed step).
    pub(crate) fn then(&mut self, local: Local) {
        if self.steps.last().is_none_or(|step| step.streamed) {
            self.steps.push(Step::default());
        }
        if let Some(step) = self.steps.last_mut() {
            step.locals.push(local);
        }
    }

    /// `to = from` after the last step.
    pub(crate) fn copy(&mut self, from: Region, to: Region) {
        debug_assert_eq!(from.len, to.len);
        if from.len > 0 && from != to {
            self.then(Local::Copy { from, to });
        }
    }

    /// A reduction after the last step.
    pub(crate) fn reduce(&mut self, from: Region, into: Region, from_first: bool) {
        debug_assert_eq!(from.len, into.len);
        if from.len > 0 {
            self.then(Local::Reduce {
                from,
                into,
                from_first,
            });
        }
    }

    /// Elements of `buf` the schedule touches (one past the furthest).
    pub fn extent(&self, buf: Buf) -> usize {
        let mut end = 0;
        let mut see = |region: &Region| {
            if region.buf == buf && region.len > 0 {
                end = end.max(region.end());
            }
        };
        for step in &self.steps {
            step.sends
                .iter()
                .chain(&step.recvs)
                .for_each(|t| see(&t.region));
            for local in &step.locals {
                match local {
                    Local::Copy { from, to } => {
                        see(from);
                        see(to);
                    }
                    Local::Reduce { from, into, .. } => {
                        see(from);
                        see(into);
                    }
                }
            }
        }
        end
    }

    /// Number of messages this rank sends.
    pub fn sends(&self) -> usize {
        self.steps.iter().map(|s| s.sends.len()).sum()
    }
}

/// Splits `n` elements into `parts` runs as even as possible (the first
/// `n % parts` get one more), as (offset, len).
pub(crate) fn even_chunks(n: usize, parts: usize) -> Vec<(usize, usize)> {
    let parts = parts.max(1);
    let (base, extra) = (n / parts, n % parts);
    let mut offset = 0;
    (0..parts)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let chunk = (offset, len);
            offset += len;
            chunk
        })
        .collect()
}

/// Back-to-back blocks of the given lengths, as (offset, len).
pub(crate) fn packed(counts: &[usize]) -> Vec<(usize, usize)> {
    let mut offset = 0;
    counts
        .iter()
        .map(|&len| {
            let block = (offset, len);
            offset += len;
            block
        })
        .collect()
}

/// The region of `base` covering blocks `first..last` of a back-to-back
/// layout (`last > first`, or an empty region at `first`).
pub(crate) fn span(base: Region, blocks: &[(usize, usize)], first: usize, last: usize) -> Region {
    if last <= first {
        let offset = blocks
            .get(first)
            .map_or_else(|| blocks.last().map_or(0, |b| b.0 + b.1), |b| b.0);
        return base.sub(offset, 0);
    }
    let start = blocks[first].0;
    let end = blocks[last - 1].0 + blocks[last - 1].1;
    base.sub(start, end - start)
}

/// Largest power of two not above `n` (`n >= 1`).
pub(crate) fn pof2_below(n: u32) -> u32 {
    1 << (31 - n.leading_zeros())
}
