//! The one executor: runs a [`Schedule`] over a [`Channel`].

use bytemuck::Pod;

use crate::op::Op;
use crate::schedule::{Buf, Local, Region, Schedule, Step, Transfer};

/// A message to send in one round.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// Destination rank.
    pub peer: u32,
    /// Tag.
    pub tag: i32,
    /// Payload.
    pub data: &'a [u8],
    /// The schedule writes this payload's memory again later in the call
    /// (a reduction into it, a receive over it). A transport should then
    /// copy it out rather than let the receiver read it in place: the
    /// receiver's reads leave its lines shared, and every later write here
    /// would first have to take them back (measured: a 2-rank 32 KiB
    /// allreduce took 20 us read in place, 8 us copied out).
    pub transient: bool,
    /// The receiver takes messages from many ranks at once (a linear
    /// gather's root, see [`Step::fan_in`](crate::schedule::Step::fan_in)).
    /// A transport whose receivers copy large messages themselves should
    /// keep to its usual size limit for that here; every other message of
    /// a collective may be copied by its receiver at any size, since the
    /// receivers of a collective copy in parallel.
    pub fan_in: bool,
    /// The receiver posts the matching receive as it enters the call (see
    /// [`Step::expected`](crate::schedule::Step::expected)), so it most
    /// likely waits for this message already: a transport may send it
    /// eagerly at sizes where it would otherwise ask the receiver first,
    /// since it will rarely have to be buffered there.
    pub expected: bool,
}

/// A message to receive in one round.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// Source rank.
    pub peer: u32,
    /// Tag.
    pub tag: i32,
    /// Where the message lands; it must fill it exactly.
    pub data: &'a mut [u8],
}

/// Point-to-point messaging among the ranks of one communicator, reserved
/// for collectives (no other traffic matches its messages).
pub trait Channel {
    /// Why a round failed.
    type Error;

    /// This rank.
    fn rank(&self) -> u32;

    /// Number of ranks.
    fn size(&self) -> u32;

    /// One round: starts every receive and send, and returns once all have
    /// completed, even when some failed (then with the first error). A
    /// message that does not fill its receive buffer exactly is an error.
    fn exchange(
        &self,
        sends: &[Outgoing<'_>],
        recvs: &mut [Incoming<'_>],
    ) -> Result<(), Self::Error>;

    /// As [`exchange`](Channel::exchange), taking the receives in order:
    /// as soon as receive `i` has completed, while later ones may still be
    /// in flight, calls `arrived(&mut recvs[..=i])`. After a failed
    /// receive, `arrived` is not called again. The default waits for the
    /// whole round first; a transport that can wait for one receive at a
    /// time overrides it, so that the caller's work on early messages
    /// overlaps later transfers.
    fn exchange_each(
        &self,
        sends: &[Outgoing<'_>],
        recvs: &mut [Incoming<'_>],
        arrived: &mut dyn FnMut(&mut [Incoming<'_>]),
    ) -> Result<(), Self::Error> {
        self.exchange(sends, recvs)?;
        for i in 0..recvs.len() {
            arrived(&mut recvs[..=i]);
        }
        Ok(())
    }
}

/// Runs `schedule` with the caller's `input` and `output` buffers; `op` is
/// needed by schedules that reduce.
///
/// On the first failed round the rest of the schedule still runs, but
/// *poisoned*: every later send carries one byte more than its receiver
/// expects and local work is skipped, so every rank that depends on this one
/// fails too instead of waiting forever, and no message is left unreceived.
/// The first error is returned.
///
/// # Panics
///
/// If the buffers are shorter than the schedule's regions, or the schedule
/// is malformed (overlapping receives, a reduction without `op`): bugs of
/// the caller, not of peers.
pub fn execute<T: Pod, C: Channel + ?Sized>(
    channel: &C,
    schedule: &Schedule,
    input: &[T],
    output: &mut [T],
    op: Option<&dyn Op<T>>,
) -> Result<(), C::Error> {
    assert!(
        input.len() >= schedule.extent(Buf::Input) && output.len() >= schedule.extent(Buf::Output),
        "buffers shorter than the schedule's regions (input {} < {} or output {} < {})",
        input.len(),
        schedule.extent(Buf::Input),
        output.len(),
        schedule.extent(Buf::Output),
    );
    let elem = std::mem::size_of::<T>();
    let mut pool = SCRATCH.take();
    let mut fresh = Vec::new();
    let scratch = scratch_from(&mut pool, &mut fresh, schedule.scratch);
    let mut first_error = None;
    for (index, step) in schedule.steps.iter().enumerate() {
        if first_error.is_some() {
            let _ = poisoned_step(channel, step, elem);
            continue;
        }
        let later = &schedule.steps[index + 1..];
        if step.streamed {
            if let Err(error) = streamed_step(channel, step, later, input, output, scratch, op) {
                first_error = Some(error);
            }
            continue;
        }
        if step.communicates() {
            if let Err(error) = exchange_step(channel, step, later, input, output, scratch) {
                first_error = Some(error);
                continue;
            }
        }
        for local in &step.locals {
            apply(local, input, output, scratch, op);
        }
    }
    SCRATCH.set(pool);
    first_error.map_or(Ok(()), Err)
}

thread_local! {
    /// Scratch memory kept between collective calls of a thread: a fresh
    /// allocation per call costs its page faults and zeroing every time
    /// (measured: a 1 MiB reduce at 2 ranks spent ~60 µs of 234 on it).
    static SCRATCH: std::cell::Cell<Vec<u128>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` on `len` elements of the thread's collective scratch (the
/// pool [`execute`] keeps between calls), whose contents are whatever was
/// there: for callers outside a schedule that would otherwise allocate
/// (and fault in) a large buffer on every call.
pub fn with_scratch<T: Pod, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    let mut pool = SCRATCH.take();
    let mut fresh = Vec::new();
    let result = f(scratch_from(&mut pool, &mut fresh, len));
    SCRATCH.set(pool);
    result
}

/// Largest scratch kept between calls, in bytes.
const MAX_POOLED_SCRATCH: usize = 64 << 20;

/// `len` elements of scratch: carved from the thread's pool (16-byte
/// aligned, so any `Pod` type up to that alignment fits), or, for types
/// that do not fit or sizes over [`MAX_POOLED_SCRATCH`], from `fresh`.
fn scratch_from<'a, T: Pod>(
    pool: &'a mut Vec<u128>,
    fresh: &'a mut Vec<T>,
    len: usize,
) -> &'a mut [T] {
    let bytes = len * std::mem::size_of::<T>();
    if std::mem::align_of::<T>() <= 16 && bytes <= MAX_POOLED_SCRATCH {
        let words = bytes.div_ceil(16);
        if pool.len() < words {
            pool.resize(words, 0);
        }
        let raw: &mut [u8] = bytemuck::cast_slice_mut(&mut pool[..words]);
        if let Ok(typed) = bytemuck::try_cast_slice_mut::<u8, T>(&mut raw[..bytes]) {
            return typed;
        }
    }
    *fresh = vec![T::zeroed(); len];
    fresh
}

/// Runs the messages of `schedule` poisoned from the start (see
/// [`execute`]): for a rank that found its own arguments wrong and must
/// still play its part so that no peer waits forever. `elem_size` is the
/// size of the schedule's element type.
pub fn execute_poisoned<C: Channel + ?Sized>(channel: &C, schedule: &Schedule, elem_size: usize) {
    for step in &schedule.steps {
        let _ = poisoned_step(channel, step, elem_size);
    }
}

/// Sends one byte more than expected to every destination and swallows
/// whatever arrives (into empty buffers: long messages move no data).
fn poisoned_step<C: Channel + ?Sized>(
    channel: &C,
    step: &Step,
    elem: usize,
) -> Result<(), C::Error> {
    if !step.communicates() {
        return Ok(());
    }
    let payloads: Vec<Vec<u8>> = step
        .sends
        .iter()
        .map(|t| vec![0u8; t.region.len * elem + 1])
        .collect();
    let sends: Inline<Outgoing<'_>> = step
        .sends
        .iter()
        .zip(&payloads)
        .map(|(t, data)| Outgoing {
            peer: t.peer,
            tag: t.tag,
            data,
            transient: false,
            fan_in: false,
            expected: false,
        })
        .collect();
    let mut recvs: Inline<Incoming<'_>> = step
        .recvs
        .iter()
        .map(|t| Incoming {
            peer: t.peer,
            tag: t.tag,
            data: &mut [],
        })
        .collect();
    channel.exchange(&sends, &mut recvs)
}

/// Carves the regions (of a step's receives, and of what a streamed step
/// writes) that lie in `buf` out of it; returns the gaps between them
/// (start offset and elements), which sends may read.
fn carve<'a, T>(
    buf: &'a mut [T],
    which: Buf,
    regions: &[Region],
    pieces: &mut [Option<&'a mut [T]>],
) -> Inline<(usize, &'a [T])> {
    let mut order: Inline<usize> = (0..regions.len())
        .filter(|&i| regions[i].buf == which && regions[i].len > 0)
        .collect();
    order.sort_by_key(|&i| regions[i].offset);
    let mut gaps = Inline::with_capacity(order.len() + 1);
    let mut rest = buf;
    let mut pos = 0;
    for i in order {
        let region = regions[i];
        assert!(
            region.offset >= pos,
            "receive regions of one step overlap: {region:?}"
        );
        let (gap, tail) = rest.split_at_mut(region.offset - pos);
        let (piece, tail) = tail.split_at_mut(region.len);
        gaps.push((pos, &*gap));
        pieces[i] = Some(piece);
        rest = tail;
        pos = region.end();
    }
    gaps.push((pos, &*rest));
    gaps
}

/// A short list kept on the stack: the per-step lists of a collective
/// (peers, pieces, gaps) rarely exceed a few entries, and allocating them
/// on every step cost a measurable share of a small collective.
type Inline<T> = smallvec::SmallVec<[T; 8]>;

/// Finds `region` inside one of the gaps.
fn in_gaps<'a, T>(gaps: &[(usize, &'a [T])], region: Region) -> &'a [T] {
    for &(start, gap) in gaps {
        if region.offset >= start && region.end() <= start + gap.len() {
            return &gap[region.offset - start..region.end() - start];
        }
    }
    panic!("a send overlaps a receive of the same step: {region:?}")
}

/// Sends shorter than this are never marked transient: a transport copies
/// them anyway.
const TRANSIENT_MIN_BYTES: usize = 4096;

/// Whether the schedule writes `region` after `step`'s messages: in the
/// step's local work or in a later step.
fn written_after(step: &Step, later: &[Step], region: Region, elem: usize) -> bool {
    if region.len * elem < TRANSIENT_MIN_BYTES {
        return false;
    }
    let overlaps = |target: Region| target.overlaps(&region);
    step.locals.iter().any(|local| overlaps(local.target()))
        || later.iter().any(|step| {
            step.recvs.iter().any(|t| overlaps(t.region))
                || step.locals.iter().any(|local| overlaps(local.target()))
        })
}

/// The message of send `t` with payload `data`.
fn outgoing<'a, T: Pod>(t: &Transfer, data: &'a [T], step: &Step, later: &[Step]) -> Outgoing<'a> {
    Outgoing {
        peer: t.peer,
        tag: t.tag,
        data: bytemuck::cast_slice(data),
        transient: written_after(step, later, t.region, std::mem::size_of::<T>()),
        fan_in: step.fan_in,
        expected: step.expected,
    }
}

fn exchange_step<T: Pod, C: Channel + ?Sized>(
    channel: &C,
    step: &Step,
    later: &[Step],
    input: &[T],
    output: &mut [T],
    scratch: &mut [T],
) -> Result<(), C::Error> {
    if step.sends.len() <= 1 && step.recvs.len() <= 1 {
        return pair_step(channel, step, later, input, output, scratch);
    }
    let mut pieces: Inline<Option<&mut [T]>> = (0..step.recvs.len()).map(|_| None).collect();
    assert!(
        step.recvs
            .iter()
            .all(|t| t.region.buf != Buf::Input || t.region.len == 0),
        "a schedule receives into the input buffer"
    );
    let regions: Inline<Region> = step.recvs.iter().map(|t| t.region).collect();
    let out_gaps = carve(output, Buf::Output, &regions, &mut pieces);
    let scratch_gaps = carve(scratch, Buf::Scratch, &regions, &mut pieces);
    let sends = gap_sends(step, later, input, &out_gaps, &scratch_gaps);
    let mut recvs = incoming(&step.recvs, pieces);
    channel.exchange(&sends, &mut recvs)
}

/// The receives of a step, landing in the carved `pieces` (in order).
fn incoming<'a, T: Pod>(
    recvs: &[Transfer],
    pieces: impl IntoIterator<Item = Option<&'a mut [T]>>,
) -> Inline<Incoming<'a>> {
    recvs
        .iter()
        .zip(pieces)
        .map(|(t, piece)| Incoming {
            peer: t.peer,
            tag: t.tag,
            data: bytemuck::cast_slice_mut(piece.unwrap_or(&mut [])),
        })
        .collect()
}

/// The sends of `step`, read from the input or from the gaps left between
/// the regions the step writes.
fn gap_sends<'a, T: Pod>(
    step: &Step,
    later: &[Step],
    input: &'a [T],
    out_gaps: &[(usize, &'a [T])],
    scratch_gaps: &[(usize, &'a [T])],
) -> Inline<Outgoing<'a>> {
    step.sends
        .iter()
        .map(|t| {
            let r = t.region;
            let data: &[T] = match r.buf {
                Buf::Input => &input[r.range()],
                Buf::Output => in_gaps(out_gaps, r),
                Buf::Scratch => in_gaps(scratch_gaps, r),
            };
            outgoing(t, data, step, later)
        })
        .collect()
}

/// A streamed step (see [`Step`]): every receive is posted at once, and
/// each local runs as soon as the last receive it involves has arrived.
/// Whatever a local touches outside the step's receives, it writes only
/// there (a target no receive or send of the step touches) or only reads
/// (a region the step does not write, such as the input).
///
/// # Panics
///
/// If a local involves no receive of its step, or writes where a send of
/// the step or another kind of operand lies.
fn streamed_step<T: Pod, C: Channel + ?Sized>(
    channel: &C,
    step: &Step,
    later: &[Step],
    input: &[T],
    output: &mut [T],
    scratch: &mut [T],
    op: Option<&dyn Op<T>>,
) -> Result<(), C::Error> {
    let received = step.recvs.len();
    let receive_of = |region: Region| step.recvs.iter().position(|t| t.region == region);
    // What the step writes: its receives, then the distinct local targets.
    let mut regions: Vec<Region> = step.recvs.iter().map(|t| t.region).collect();
    let mut plan = Vec::with_capacity(step.locals.len());
    for local in &step.locals {
        let (from, into) = match *local {
            Local::Copy { from, to } => (from, to),
            Local::Reduce { from, into, .. } => (from, into),
        };
        let read = receive_of(from).map_or(Operand::Fixed(from), Operand::Receive);
        let write = receive_of(into).map_or_else(
            || {
                let at = regions[received..].iter().position(|&r| r == into);
                Operand::Target(at.unwrap_or_else(|| {
                    regions.push(into);
                    regions.len() - 1 - received
                }))
            },
            Operand::Receive,
        );
        let trigger = match (read, write) {
            (Operand::Receive(a), Operand::Receive(b)) if a != b => a.max(b),
            (Operand::Receive(a), Operand::Target(_))
            | (Operand::Fixed(_), Operand::Receive(a)) => a,
            _ => panic!("a streamed local must involve its step's receives: {local:?}"),
        };
        plan.push((trigger, read, write));
    }
    assert!(
        regions.iter().all(|r| r.buf != Buf::Input || r.len == 0),
        "a schedule writes to the input buffer"
    );
    let mut pieces: Vec<Option<&mut [T]>> = (0..regions.len()).map(|_| None).collect();
    let out_gaps = carve(output, Buf::Output, &regions, &mut pieces);
    let scratch_gaps = carve(scratch, Buf::Scratch, &regions, &mut pieces);
    let sends = gap_sends(step, later, input, &out_gaps, &scratch_gaps);
    let read_only = |r: Region| -> &[T] {
        match r.buf {
            Buf::Input => &input[r.range()],
            Buf::Output => in_gaps(&out_gaps, r),
            Buf::Scratch => in_gaps(&scratch_gaps, r),
        }
    };
    let mut targets = pieces.split_off(received);
    let mut recvs = incoming(&step.recvs, pieces);
    let mut arrived = |arrived: &mut [Incoming<'_>]| {
        let newest = arrived.len() - 1;
        for (local, &(trigger, read, write)) in step.locals.iter().zip(&plan) {
            if trigger != newest {
                continue;
            }
            let (src, dst): (&[T], &mut [T]) = match (read, write) {
                (Operand::Receive(a), Operand::Receive(b)) => {
                    let (low, high) = arrived.split_at_mut(a.max(b));
                    let (first, second) = (&mut *low[a.min(b)].data, &mut *high[0].data);
                    let (src, dst) = if a < b {
                        (first, second)
                    } else {
                        (second, first)
                    };
                    (bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst))
                }
                (Operand::Receive(a), Operand::Target(t)) => match targets[t].as_deref_mut() {
                    Some(target) => (bytemuck::cast_slice(arrived[a].data), target),
                    None => continue, // an empty target: nothing to do
                },
                (Operand::Fixed(from), Operand::Receive(b)) => {
                    (read_only(from), bytemuck::cast_slice_mut(arrived[b].data))
                }
                _ => continue,
            };
            match *local {
                Local::Copy { .. } => dst.copy_from_slice(src),
                Local::Reduce { from_first, .. } => {
                    let op = op.expect("a reducing schedule was run without an operation");
                    op.reduce(src, dst, from_first);
                }
            }
        }
    };
    channel.exchange_each(&sends, &mut recvs, &mut arrived)
}

/// An operand of a local in a streamed step.
#[derive(Debug, Clone, Copy)]
enum Operand {
    /// The region of the step's receive with this index.
    Receive(usize),
    /// The step's local target with this index (written only by locals).
    Target(usize),
    /// A region the step does not write.
    Fixed(Region),
}

/// Elements of `region`, read-only.
fn region_of<'a, T>(region: Region, input: &'a [T], output: &'a [T], scratch: &'a [T]) -> &'a [T] {
    match region.buf {
        Buf::Input => &input[region.range()],
        Buf::Output => &output[region.range()],
        Buf::Scratch => &scratch[region.range()],
    }
}

/// A step of at most one send and one receive (most steps of most
/// algorithms): the same work as the general path, without its lists.
fn pair_step<T: Pod, C: Channel + ?Sized>(
    channel: &C,
    step: &Step,
    later: &[Step],
    input: &[T],
    output: &mut [T],
    scratch: &mut [T],
) -> Result<(), C::Error> {
    let send = step.sends.first();
    let Some(recv) = step.recvs.first() else {
        let sends =
            send.map(|t| outgoing(t, region_of(t.region, input, output, scratch), step, later));
        return channel.exchange(sends.as_slice(), &mut []);
    };
    let to = recv.region;
    assert!(
        to.buf != Buf::Input || to.len == 0,
        "a schedule receives into the input buffer"
    );
    let (from, into): (&[T], &mut [T]) = match send {
        None => (&[], receive_region(to, output, scratch)),
        Some(t) if t.region.len == 0 => (&[], receive_region(to, output, scratch)),
        Some(t) if to.len == 0 => (region_of(t.region, input, output, scratch), &mut []),
        Some(t) => operands(input, output, scratch, t.region, to),
    };
    let sends = send.map(|t| outgoing(t, from, step, later));
    let mut recvs = [Incoming {
        peer: recv.peer,
        tag: recv.tag,
        data: bytemuck::cast_slice_mut(into),
    }];
    channel.exchange(sends.as_slice(), &mut recvs)
}

/// Where a receive lands (the empty slice for an empty region).
fn receive_region<'a, T>(to: Region, output: &'a mut [T], scratch: &'a mut [T]) -> &'a mut [T] {
    match to.buf {
        Buf::Input => &mut [],
        Buf::Output => &mut output[to.range()],
        Buf::Scratch => &mut scratch[to.range()],
    }
}

/// A read-only source and a writable destination, from any two buffers.
fn operands<'a, T>(
    input: &'a [T],
    output: &'a mut [T],
    scratch: &'a mut [T],
    from: Region,
    to: Region,
) -> (&'a [T], &'a mut [T]) {
    match (from.buf, to.buf) {
        (_, Buf::Input) => panic!("a schedule writes to the input buffer"),
        (Buf::Input, Buf::Output) => (&input[from.range()], &mut output[to.range()]),
        (Buf::Input, Buf::Scratch) => (&input[from.range()], &mut scratch[to.range()]),
        (Buf::Output, Buf::Scratch) => (&output[from.range()], &mut scratch[to.range()]),
        (Buf::Scratch, Buf::Output) => (&scratch[from.range()], &mut output[to.range()]),
        (Buf::Output, Buf::Output) => disjoint(output, from, to),
        (Buf::Scratch, Buf::Scratch) => disjoint(scratch, from, to),
    }
}

fn disjoint<T>(buf: &mut [T], from: Region, to: Region) -> (&[T], &mut [T]) {
    assert!(
        !from.overlaps(&to),
        "local operands overlap: {from:?} {to:?}"
    );
    if from.offset < to.offset {
        let (low, high) = buf.split_at_mut(to.offset);
        (&low[from.range()], &mut high[..to.len])
    } else {
        let (low, high) = buf.split_at_mut(from.offset);
        (&high[..from.len], &mut low[to.range()])
    }
}

fn apply<T: Pod>(
    local: &Local,
    input: &[T],
    output: &mut [T],
    scratch: &mut [T],
    op: Option<&dyn Op<T>>,
) {
    match *local {
        Local::Copy { from, to } => {
            let (src, dst) = operands(input, output, scratch, from, to);
            dst.copy_from_slice(src);
        }
        Local::Reduce {
            from,
            into,
            from_first,
        } => {
            let op = op.expect("a reducing schedule was run without an operation");
            let (src, dst) = operands(input, output, scratch, from, into);
            op.reduce(src, dst, from_first);
        }
    }
}

#[cfg(test)]
mod transient_tests {
    use std::cell::RefCell;

    use super::*;
    use crate::{Algorithm, allreduce, reduce};

    /// Records which sends were marked transient; completes every round
    /// with zeroed receives.
    struct Recorder {
        rank: u32,
        size: u32,
        marks: RefCell<Vec<(usize, bool)>>,
    }

    impl Channel for Recorder {
        type Error = ();
        fn rank(&self) -> u32 {
            self.rank
        }
        fn size(&self) -> u32 {
            self.size
        }
        fn exchange(&self, sends: &[Outgoing<'_>], _: &mut [Incoming<'_>]) -> Result<(), ()> {
            let mut marks = self.marks.borrow_mut();
            marks.extend(sends.iter().map(|s| (s.data.len(), s.transient)));
            Ok(())
        }
    }

    fn marks(schedule: &Schedule, count: usize) -> Vec<(usize, bool)> {
        let channel = Recorder {
            rank: 0,
            size: 2,
            marks: RefCell::new(Vec::new()),
        };
        let input = vec![1.0f32; count];
        let mut output = vec![0.0f32; count];
        let op = |a: f32, b: f32| a + b;
        execute(&channel, schedule, &input, &mut output, Some(&op)).unwrap();
        channel.marks.into_inner()
    }

    #[test]
    fn sends_the_schedule_writes_again_are_transient() {
        // Recursive doubling sends the running result, then reduces into it.
        let count = 16 * 1024;
        let schedule = allreduce(Algorithm::RecursiveDoubling, 0, 2, count, true);
        assert_eq!(marks(&schedule, count), [(4 * count, true)]);
        // Small sends are never marked.
        let schedule = allreduce(Algorithm::RecursiveDoubling, 0, 2, 8, true);
        assert_eq!(marks(&schedule, 8), [(32, false)]);
    }

    #[test]
    fn sends_left_alone_afterwards_are_not_transient() {
        // Rank 0 of a reduce to rank 1 sends its input and is done.
        let count = 16 * 1024;
        let schedule = reduce(0, 2, 1, count, true, 0);
        assert_eq!(marks(&schedule, count), [(4 * count, false)]);
    }
}
