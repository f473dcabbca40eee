//! Collective boards for communicators made from the world (`dup`,
//! `split`): which of the segment's boards each one uses.
//!
//! Each rank's segment holds [`BOARDS`] boards; board 0 is the world's.
//! When a communicator is made whose members share one host's memory (all
//! of a one-host job, or those of one host in a larger job, see
//! [`Comm::split_shared`](crate::Comm::split_shared)), its members
//! exchange (by messages, on the new communicator) whether each mapped
//! every other's segment, the board numbers each has free and the highest
//! call each ever made on every board. They take the lowest number free on all of them, and number
//! their calls past the highest call any of them made on it (the *base*,
//! see `transport/shm/board.rs`), so counters left by earlier users never
//! pass for a new call. With no number free on all (or a segment some
//! member could not map), the communicator's collectives go by messages,
//! as they do across hosts.
//!
//! A number is free again once its communicator is dropped *and* every
//! other member has said it is done with the last call (its *done*
//! counter): until then a slow peer may still read the buffers. Only the
//! owner's own board matters for that, and only the owner writes it, so
//! the check needs no agreement. A member that died never says it is
//! done; its numbers stay taken, which costs nothing but boards.
//!
//! Communicators of several ranks sharing memory each hold one number
//! while they live: a program with more than `BOARDS - 1` of them alive at
//! once runs the extra ones by messages.

use std::sync::atomic::Ordering;

use mpr_collectives::{Algorithm, Schedule};

use crate::comm::CommInner;
use crate::error::Error;
use crate::transport::shm::board::Boards;

use crate::transport::shm::segment::BOARDS;

/// What one board number of this rank's segment serves.
#[derive(Debug)]
enum Use {
    /// Nothing: a new communicator may take it.
    Free,
    /// A live communicator (or the world, for number 0).
    Taken,
    /// A dropped communicator whose peers may still read call `last` or
    /// an earlier one.
    Retiring { last: u64, boards: Boards },
}

/// The board numbers of this rank's segment.
#[derive(Debug)]
pub(crate) struct BoardNumbers {
    uses: Vec<Use>,
    /// The highest call this rank made on each board number.
    high: [u64; BOARDS],
}

impl Default for BoardNumbers {
    fn default() -> Self {
        let mut uses: Vec<Use> = (0..BOARDS).map(|_| Use::Free).collect();
        uses[0] = Use::Taken;
        BoardNumbers {
            uses,
            high: [0; BOARDS],
        }
    }
}

impl BoardNumbers {
    /// The numbers this rank can give a new communicator (bit `n`: number
    /// `n` is free) and the highest call it made on each.
    fn offer(&mut self) -> (u64, [u64; BOARDS]) {
        let mut free = 0u64;
        for (number, used) in self.uses.iter_mut().enumerate() {
            if let Use::Retiring { last, boards } = used {
                if boards.all_done(*last) {
                    *used = Use::Free;
                }
            }
            if matches!(used, Use::Free) {
                free |= 1 << number;
            }
        }
        (free, self.high)
    }

    /// Gives `number` to a new communicator.
    fn take(&mut self, number: usize) {
        self.uses[number] = Use::Taken;
    }

    /// The communicator on `boards` is gone after call `last`. One that
    /// made no call gives its number back at once: nobody read its board
    /// (and a member whose counters start below the communicator's base
    /// never says it is done with it).
    pub(crate) fn retire(&mut self, boards: Boards, last: u64) {
        let number = boards.number();
        self.high[number] = self.high[number].max(last);
        self.uses[number] = if last > boards.base() {
            Use::Retiring { last, boards }
        } else {
            Use::Free
        };
    }
}

/// Words each member contributes to the exchange: whether it mapped
/// every member's segment ([`MAPS_ALL`]) and can read their memory
/// ([`READS_ALL`]), the numbers it has free, then its highest call on
/// each number.
const OFFER_WORDS: usize = 2 + BOARDS;
const MAPS_ALL: u64 = 1;
const READS_ALL: u64 = 2;

impl CommInner {
    /// Gives this new communicator (made by dup or split) a board of its
    /// own, if its members share one host's memory, each mapped every
    /// other's segment, and a number is free on all of them; every member
    /// calls it, and all get the same answer. Collective, by messages on
    /// this communicator, for members that share memory.
    pub(crate) fn claim_boards(&mut self) -> Result<(), Error> {
        let size = self.group.size();
        if size < 2 || !self.shares_memory() {
            return Ok(());
        }
        let members: Vec<usize> = self.group.members().iter().map(|r| r.index()).collect();
        let host = self.rt.host_boards();
        let maps = host.is_some_and(|host| host.maps_all(&members));
        let reads = maps && host.is_some_and(|host| host.reads_all(&members));
        let mut mine = [0u64; OFFER_WORDS];
        if maps {
            let (free, high) = self.rt.board_numbers().offer();
            mine[0] = MAPS_ALL | if reads { READS_ALL } else { 0 };
            mine[1] = free;
            mine[2..].copy_from_slice(&high);
        }
        let mut all = vec![0u64; OFFER_WORDS * size as usize];
        let counts = vec![OFFER_WORDS; size as usize];
        let schedule: Schedule =
            mpr_collectives::allgather(Algorithm::Bruck, self.rank.0, size, &counts);
        self.run(&schedule, &mine, &mut all, None)?;
        let offers = all.chunks_exact(OFFER_WORDS);
        let flags = offers
            .clone()
            .fold(u64::MAX, |flags, offer| flags & offer[0]);
        let common = offers.clone().fold(u64::MAX, |free, offer| free & offer[1]);
        let (Some(host), true, false) = (host, flags & MAPS_ALL != 0, common == 0) else {
            return Ok(());
        };
        let number = common.trailing_zeros() as usize;
        let base = offers.map(|offer| offer[2 + number]).max().unwrap_or(0);
        let direct = flags & READS_ALL != 0;
        self.boards = host.view(&members, number, base, Some(direct));
        if self.boards.is_some() {
            self.rt.board_numbers().take(number);
        }
        Ok(())
    }
}

impl Drop for CommInner {
    fn drop(&mut self) {
        if let Some(boards) = self.boards.take() {
            let last = boards.base() + self.board_calls.load(Ordering::Acquire);
            self.rt.board_numbers().retire(boards, last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BOARDS;
    use crate::Comm;
    use crate::op::Sum;

    fn number(comm: &Comm) -> Option<usize> {
        comm.inner.boards.as_ref().map(|boards| boards.number())
    }

    /// Communicators made and dropped in turn each get a board (numbers
    /// come back once every member is done with them), `BOARDS - 1` alive
    /// at once take every number, and one more goes by messages; all of
    /// them compute right. Over TCP nobody has boards.
    #[test]
    fn dropped_communicators_give_their_board_back_for_the_next() {
        crate::local::run(3, |world| {
            let boards = world.inner.rt.boards().is_some();
            let rank = world.rank();
            // Every rank of `local::run` shares the host (unless over TCP).
            let host = world.split_shared(0).unwrap();
            assert_eq!(host.size(), if boards { 3 } else { 1 });
            assert_eq!(number(&host), boards.then_some(1));
            drop(host);
            let check = |comm: &Comm, what: &str| {
                let mut word = [u64::from(comm.rank()) + 1];
                comm.allreduce_in_place(&mut word, Sum).unwrap();
                let n = u64::from(comm.size());
                assert_eq!(word, [n * (n + 1) / 2], "{what}");
            };
            for round in 0..3 * BOARDS {
                let comm = if round % 2 == 0 {
                    world.dup().unwrap()
                } else {
                    world.split(Some(0), -(rank as i32)).unwrap().unwrap()
                };
                assert_eq!(number(&comm).is_some(), boards, "round {round}");
                check(&comm, "a communicator made after others were dropped");
            }
            let alive: Vec<Comm> = (1..BOARDS).map(|_| world.dup().unwrap()).collect();
            let mut numbers: Vec<Option<usize>> = alive.iter().map(number).collect();
            numbers.sort_unstable();
            numbers.dedup();
            let expected = if boards { BOARDS - 1 } else { 1 };
            assert_eq!(numbers.len(), expected, "{numbers:?}");
            assert!(numbers.iter().all(|&n| n != Some(0)));
            let extra = world.dup().unwrap();
            assert_eq!(number(&extra), None);
            for comm in alive.iter().chain([&extra]).rev() {
                check(comm, "one of many communicators alive at once");
            }
            drop(alive);
            // The numbers come back: a new communicator has a board again.
            let again = world.dup().unwrap();
            assert_eq!(number(&again).is_some(), boards);
            check(&again, "a communicator after many were dropped");
        });
    }

    /// A communicator that made no call gives its board back although its
    /// base is past what some member ever counted on that board.
    #[test]
    fn a_communicator_without_calls_gives_its_board_back() {
        crate::local::run(3, |world| {
            let boards = world.inner.rt.boards().is_some();
            let rank = world.rank();
            // Ranks 0 and 1 count far on board 1; rank 2 never does.
            let pair = world.split(Some(u32::from(rank == 2)), 0).unwrap().unwrap();
            for _ in 0..40 {
                pair.barrier().unwrap();
            }
            assert_eq!(number(&pair), (boards && rank < 2).then_some(1));
            drop(pair);
            // Board 1 again, numbered past the pair's calls; no call.
            let idle = world.dup().unwrap();
            assert_eq!(number(&idle), boards.then_some(1));
            drop(idle);
            let next = world.dup().unwrap();
            assert_eq!(number(&next), boards.then_some(1));
            let mut word = [1u32];
            next.allreduce_in_place(&mut word, Sum).unwrap();
            assert_eq!(word, [3]);
        });
    }

    /// Ranks that share no communicator but the world may hold different
    /// numbers: halves of a split pick their numbers apart, and a later
    /// communicator of everyone numbers its calls past both.
    #[test]
    fn halves_and_a_later_whole_agree_on_their_boards() {
        crate::local::run(4, |world| {
            let rank = world.rank();
            // The odd half holds a communicator longer, so the halves offer
            // different numbers next.
            let odd_only = world.split(Some(rank % 2), 0).unwrap().unwrap();
            let kept = (rank % 2 == 1).then_some(odd_only);
            let half = world.split(Some(rank % 2), 0).unwrap().unwrap();
            for _ in 0..50 {
                let mut word = [1u32];
                half.allreduce_in_place(&mut word, Sum).unwrap();
                assert_eq!(word, [2]);
                half.barrier().unwrap();
            }
            drop(half);
            let whole = world.dup().unwrap();
            for step in 0..50u32 {
                let mut word = [rank + step];
                whole.allreduce_in_place(&mut word, Sum).unwrap();
                assert_eq!(word, [6 + 4 * step]);
                let mut root_word = [if rank == step % 4 { step } else { 0 }];
                whole.bcast(&mut root_word, step % 4).unwrap();
                assert_eq!(root_word, [step]);
            }
            drop(kept);
        });
    }
}
