//! Streamed steps: each local runs as soon as its receive has arrived,
//! while later receives are still outstanding.

use std::cell::{Cell, RefCell};

use crate::build;
use crate::exec::{Channel, Incoming, Outgoing, execute};
use crate::op::Op;
use crate::schedule::{Local, Region, Schedule, Step, Transfer};

/// Completes receive `i` with every element `i + 1`, one receive at a
/// time, noting how many combinations had run before each arrival.
struct OneByOne<'a> {
    combined: &'a Cell<usize>,
    seen: RefCell<Vec<usize>>,
}

impl Channel for OneByOne<'_> {
    type Error = ();

    fn rank(&self) -> u32 {
        0
    }

    fn size(&self) -> u32 {
        4
    }

    fn exchange(&self, sends: &[Outgoing<'_>], recvs: &mut [Incoming<'_>]) -> Result<(), ()> {
        assert!(
            sends.is_empty() && recvs.is_empty(),
            "the root of a reduce only receives, and in streamed steps"
        );
        Ok(())
    }

    fn exchange_each(
        &self,
        _: &[Outgoing<'_>],
        recvs: &mut [Incoming<'_>],
        arrived: &mut dyn FnMut(&mut [Incoming<'_>]),
    ) -> Result<(), ()> {
        for i in 0..recvs.len() {
            let value = (i as u32 + 1).to_le_bytes();
            for element in recvs[i].data.chunks_mut(4) {
                element.copy_from_slice(&value);
            }
            self.seen.borrow_mut().push(self.combined.get());
            arrived(&mut recvs[..=i]);
        }
        Ok(())
    }
}

/// `a * 10 + b` (not commutative), counting the slices it combines.
struct Counting<'a>(&'a Cell<usize>);

impl Op<u32> for Counting<'_> {
    fn combine(&self, a: u32, b: u32) -> u32 {
        a * 10 + b
    }

    fn reduce(&self, from: &[u32], into: &mut [u32], from_first: bool) {
        self.0.set(self.0.get() + 1);
        for (dst, &src) in into.iter_mut().zip(from) {
            *dst = if from_first {
                self.combine(src, *dst)
            } else {
                self.combine(*dst, src)
            };
        }
    }
}

/// Runs the root's schedule of a pipelined reduce of 8 elements in pieces
/// of 2 on `ranks` ranks; returns the result and, per arrival, how many
/// combinations had run before it.
fn root_of_pipelined_reduce(ranks: u32) -> (Vec<u32>, Vec<usize>) {
    let schedule = build::reduce(0, ranks, 0, 8, false, 2);
    assert!(
        schedule.steps.iter().any(|step| step.streamed),
        "the root takes its pieces in a streamed step"
    );
    let combined = Cell::new(0);
    let channel = OneByOne {
        combined: &combined,
        seen: RefCell::new(Vec::new()),
    };
    let input = vec![5u32; 8];
    let mut output = vec![0u32; 8];
    execute(
        &channel,
        &schedule,
        &input,
        &mut output,
        Some(&Counting(&combined)),
    )
    .expect("the channel never fails");
    (output, channel.seen.into_inner())
}

#[test]
fn the_root_combines_each_piece_as_it_arrives_in_rank_order() {
    // One child: piece j is receive j; it lands in the output and this
    // rank's operand goes on its left.
    let (output, seen) = root_of_pipelined_reduce(2);
    assert_eq!(output, [51, 51, 52, 52, 53, 53, 54, 54]);
    assert_eq!(
        seen,
        [0, 1, 2, 3],
        "piece j was combined before piece j + 1 arrived"
    );
    // Two children (ranks 1 and 2 of 4): piece j comes from rank 1 as
    // receive 2j and from rank 2 as receive 2j + 1, combined in that order.
    let (output, seen) = root_of_pipelined_reduce(4);
    let expected: Vec<u32> = (0..8)
        .map(|i| {
            let j = i as u32 / 2;
            (5 * 10 + 2 * j + 1) * 10 + 2 * j + 2
        })
        .collect();
    assert_eq!(output, expected);
    // The first child's piece is combined with the operand on arrival, the
    // second child's on its own arrival.
    assert_eq!(seen, [0, 1, 2, 3, 4, 5, 6, 7]);
}

#[test]
#[should_panic(expected = "a streamed local must involve its step's receives")]
fn a_streamed_local_that_involves_no_receive_is_refused() {
    let schedule = Schedule {
        scratch: 0,
        steps: vec![Step {
            sends: Vec::new(),
            recvs: vec![Transfer {
                peer: 1,
                tag: 0,
                region: Region::output(0, 2),
            }],
            locals: vec![Local::Copy {
                from: Region::input(0, 2),
                to: Region::output(2, 2),
            }],
            streamed: true,
            fan_in: false,
            expected: false,
        }],
    };
    let combined = Cell::new(0);
    let channel = OneByOne {
        combined: &combined,
        seen: RefCell::new(Vec::new()),
    };
    let mut output = vec![0u32; 4];
    let _ = execute(&channel, &schedule, &[1u32, 2], &mut output, None);
}
