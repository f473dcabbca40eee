//! Collective operations on a [`Comm`]: barrier, broadcast, scatter,
//! gather, reductions, all-to-all, scans, over plain-old-data slices (and
//! serde objects for broadcast, gather, scatter and allgather).
//!
//! # Contract
//!
//! - Every rank of the communicator makes the same collective calls in the
//!   same order, with the same root, op and agreeing counts (MPI's rule).
//!   Concurrent collectives on one communicator from several threads of a
//!   rank are not allowed; on different communicators they are.
//! - Arguments a rank does not use (the send buffer of a non-root scatter,
//!   the receive buffer of a non-root gather or reduce, the counts of a
//!   non-root scatterv/gatherv) may be empty; they are ignored.
//! - Collectives move messages on the communicator's collective context, so
//!   they never match point-to-point traffic, whatever its tags.
//!
//! # Errors
//!
//! What one rank can check, it checks: a root out of range
//! ([`Error::InvalidRoot`], returned at once: every rank sees the same
//! root), buffers and counts that do not fit each other
//! ([`Error::BufferLength`]). A rank that finds its own arguments wrong still
//! plays its part in the communication, *poisoned* (each message one byte
//! too long), so that ranks waiting on it fail too instead of hanging.
//! What only the receiver can see (ranks disagreeing on counts) is a
//! [`Error::CountMismatch`] (short message) or [`Error::Truncated`] (long
//! one) there, and is passed on poisoned the same way. Limit: if ranks
//! disagree so much that they pick different algorithms (sizes on both
//! sides of a selection threshold), they may wait for each other forever.
//!
//! # Algorithms
//!
//! On a communicator whose ranks all share one host (the world of a
//! one-host job, or one made with `dup`, `split` or `split_shared`, see
//! `collective/board_number.rs`), barrier and small bcast, scatter,
//! gather, reduce, allreduce, allgather and alltoall run on shared-memory
//! *boards* (`MPR_SHM_BOARD_MAX`, see `collective/board.rs`): each rank
//! publishes its operand in its own segment and reads the others'. Larger
//! operands of the same collectives (of reduce, on ranks bound to cores)
//! publish the addresses of their buffers
//! there instead, and ranks copy straight between the processes
//! (`MPR_SHM_DIRECT_MIN`, see `collective/direct.rs`). There, ranks
//! disagreeing on counts fail together even across the board limit.
//! Everything else runs as message schedules.
//!
//! The algorithms live in `mpr-collectives` (see its selection table).
//! `MPR_COLL_<NAME>=<algorithm>` (e.g. `MPR_COLL_ALLREDUCE=ring`) forces
//! one for the whole process; [`Comm::set_algorithm`] forces one on a
//! communicator. A forced ring for a non-commutative reduction falls back to
//! the default choice.

mod board;
pub(crate) mod board_number;
pub(crate) mod cache;
mod channel;
mod direct;
mod gather;
mod obj;
mod reduce;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use bytemuck::Pod;
use mpr_collectives::op::Op;
use mpr_collectives::{Algorithm, Collective, Schedule};

use crate::Rank;
use crate::comm::{Comm, CommInner};
use crate::error::{Argument, Error};
use crate::vector_op::Vectorized;
use board::{BoardOutcome, Spread};
use cache::ScheduleKey;
use channel::CollChannel;

/// Per-communicator forced algorithms (0: none, else index + 1).
#[derive(Debug, Default)]
pub(crate) struct Forced([AtomicU8; Collective::ALL.len()]);

impl Forced {
    fn get(&self, collective: Collective) -> Option<Algorithm> {
        match self.0[collective.index()].load(Ordering::Relaxed) {
            0 => None,
            n => Algorithm::ALL.get(n as usize - 1).copied(),
        }
    }

    fn set(&self, collective: Collective, algorithm: Option<Algorithm>) {
        let value = algorithm.map_or(0, |a| a.index() as u8 + 1);
        self.0[collective.index()].store(value, Ordering::Relaxed);
    }
}

/// Algorithms forced through `MPR_COLL_<NAME>`, read once per process.
fn forced_by_env(collective: Collective) -> Option<Algorithm> {
    static FROM_ENV: OnceLock<Vec<Option<Algorithm>>> = OnceLock::new();
    FROM_ENV.get_or_init(|| {
        Collective::ALL
            .iter()
            .map(|&collective| {
                let value = std::env::var(collective.env_var()).ok()?;
                match value.parse::<Algorithm>() {
                    Ok(algorithm) if collective.algorithms().contains(&algorithm) => {
                        Some(algorithm)
                    }
                    _ => {
                        let names: Vec<&str> =
                            collective.algorithms().iter().map(|a| a.name()).collect();
                        eprintln!(
                            "mpr: ignoring {}={value}: {collective} implements {}",
                            collective.env_var(),
                            names.join(", ")
                        );
                        None
                    }
                }
            })
            .collect()
    })[collective.index()]
}

impl CommInner {
    /// The algorithm for a call: forced on the communicator, else by the
    /// environment, else the default table; a forced algorithm that cannot
    /// serve this op falls back to the table.
    fn algorithm(
        &self,
        collective: Collective,
        bytes: usize,
        count: usize,
        commutative: bool,
    ) -> Algorithm {
        let forced = self
            .forced
            .get(collective)
            .or_else(|| forced_by_env(collective));
        match forced {
            Some(algorithm) if collective.supports(algorithm, commutative) => algorithm,
            _ => mpr_collectives::select(
                collective,
                self.group.size(),
                bytes,
                count,
                commutative,
                self.shares_memory(),
            ),
        }
    }

    /// The schedule of a call shaped by `key`, from this communicator's
    /// cache (built by `build` the first time).
    fn schedule(&self, key: ScheduleKey, build: impl FnOnce() -> Schedule) -> Arc<Schedule> {
        self.schedules.get_or_build(key, build)
    }

    /// Runs a schedule on the collective context.
    pub(crate) fn run<T: Pod>(
        &self,
        schedule: &Schedule,
        input: &[T],
        output: &mut [T],
        op: Option<&dyn Op<T>>,
    ) -> Result<(), Error> {
        let channel = CollChannel { comm: self };
        mpr_collectives::execute(&channel, schedule, input, output, op)
            .map_err(|error| self.error(error))
    }

    /// This rank's arguments are wrong: play the schedule poisoned (so that
    /// nobody waits for us forever), then report `error`.
    pub(crate) fn reject<T>(&self, schedule: &Schedule, error: Error) -> Error {
        if self.rt.error_mode() == crate::ErrorMode::Return {
            mpr_collectives::execute_poisoned(
                &CollChannel { comm: self },
                schedule,
                std::mem::size_of::<T>(),
            );
        }
        self.error(error)
    }

    /// What a collective does after its part on the boards: its result
    /// (`Some`), or `None` to go on by messages; when another rank moves
    /// `count` elements by messages while this one cannot take part, it
    /// plays `schedule(count)` poisoned first.
    fn after_boards<T>(
        &self,
        outcome: BoardOutcome,
        schedule: impl FnOnce(usize) -> Arc<Schedule>,
    ) -> Option<Result<(), Error>> {
        match outcome {
            BoardOutcome::Done(result) => Some(result),
            BoardOutcome::Messages => None,
            BoardOutcome::Reject { count, error } => {
                Some(Err(self.reject::<T>(&schedule(count), error)))
            }
        }
    }

    /// The root as a rank of this communicator.
    fn root(&self, root: Rank) -> Result<u32, Error> {
        if root.0 < self.group.size() {
            Ok(root.0)
        } else {
            Err(self.error(Error::InvalidRoot {
                root,
                size: self.group.size(),
            }))
        }
    }

    fn size(&self) -> usize {
        self.group.size() as usize
    }
}

/// `Ok` if `actual == expected`, else the length error.
fn expect_len(argument: Argument, expected: usize, actual: usize) -> Result<(), Error> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::BufferLength {
            argument,
            expected,
            actual,
        })
    }
}

/// Per-rank counts checked against the communicator size, and padded or
/// cut to it (for a poisoned run).
fn counts_for(
    counts: &[usize],
    size: usize,
    argument: Argument,
) -> (Vec<usize>, Result<(), Error>) {
    let check = expect_len(argument, size, counts.len());
    let mut fitted = counts.to_vec();
    fitted.resize(size, 0);
    (fitted, check)
}

impl Comm {
    /// Forces `algorithm` for `collective` on this communicator (`None`:
    /// back to `MPR_COLL_<NAME>` or the default choice). Every rank must
    /// force the same. For benchmarks and tests; process-wide forcing is
    /// `MPR_COLL_<NAME>`.
    pub fn set_algorithm(
        &self,
        collective: Collective,
        algorithm: Option<Algorithm>,
    ) -> Result<(), Error> {
        if let Some(algorithm) = algorithm {
            if !collective.algorithms().contains(&algorithm) {
                return Err(self.inner.error(Error::UnsupportedAlgorithm {
                    collective,
                    algorithm,
                }));
            }
        }
        self.inner.forced.set(collective, algorithm);
        Ok(())
    }

    /// Blocks until every rank of the communicator has called `barrier`
    /// (`MPI_Barrier`), with empty messages: see the selection table of
    /// `mpr-collectives` for the algorithm (`MPR_COLL_BARRIER` forces one).
    ///
    /// ```
    /// mpr::local::run(3, |world| world.barrier().unwrap());
    /// ```
    pub fn barrier(&self) -> Result<(), Error> {
        let inner = &*self.inner;
        if let Some(boards) = inner.boards(Collective::Barrier) {
            return inner.board_barrier(boards);
        }
        let algorithm = inner.algorithm(Collective::Barrier, 0, 0, true);
        let key = ScheduleKey::new(Collective::Barrier, Some(algorithm), 0, 0, true);
        let schedule = inner.schedule(key, || {
            mpr_collectives::barrier(algorithm, inner.rank.0, inner.group.size())
        });
        inner.run::<u8>(&schedule, &[], &mut [], None)
    }

    /// Broadcasts `buf` from `root` to every rank (`MPI_Bcast`): on return,
    /// every rank's `buf` holds the root's. Every rank passes a buffer of the
    /// same length.
    ///
    /// ```
    /// mpr::local::run(4, |world| {
    ///     let mut params = if world.rank() == 2 { [0.5f64, 8.0] } else { [0.0; 2] };
    ///     world.bcast(&mut params, 2)?;
    ///     assert_eq!(params, [0.5, 8.0]);
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn bcast<T: Pod>(&self, buf: &mut [T], root: impl Into<Rank>) -> Result<(), Error> {
        let inner = &*self.inner;
        let root = inner.root(root.into())?;
        let schedule = |count: usize| {
            let bytes = count * size_of::<T>();
            let algorithm = inner.algorithm(Collective::Bcast, bytes, count, true);
            let key = ScheduleKey::new(Collective::Bcast, Some(algorithm), root, count, true);
            inner.schedule(key, || {
                mpr_collectives::bcast(algorithm, inner.rank.0, inner.group.size(), root, count)
            })
        };
        if let Some(boards) = inner.boards(Collective::Bcast) {
            let max = inner.rt.tuning().shm_board_bcast_max;
            let outcome = inner.board_bcast(boards, buf, root, max);
            if let Some(result) = inner.after_boards::<T>(outcome, schedule) {
                return result;
            }
        }
        inner.run(&schedule(buf.len()), &[], buf, None)
    }

    /// Sends block `r` of the root's `send` (`size × recv.len()` elements)
    /// to rank `r`'s `recv` (`MPI_Scatter`). `send` is ignored elsewhere.
    ///
    /// ```
    /// mpr::local::run(3, |world| {
    ///     let all: Vec<u32> = if world.rank() == 0 { (0..6).collect() } else { Vec::new() };
    ///     let mut mine = [0u32; 2];
    ///     world.scatter(&all, &mut mine, 0)?;
    ///     assert_eq!(mine, [2 * world.rank(), 2 * world.rank() + 1]);
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn scatter<T: Pod>(
        &self,
        send: &[T],
        recv: &mut [T],
        root: impl Into<Rank>,
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        let root = inner.root(root.into())?;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let schedule = |count: usize| {
            let bytes = count * std::mem::size_of::<T>();
            let algorithm = inner.algorithm(Collective::Scatter, bytes, count, true);
            let key = ScheduleKey::new(Collective::Scatter, Some(algorithm), root, count, true);
            inner.schedule(key, || {
                mpr_collectives::scatter(algorithm, rank, size, root, count)
            })
        };
        let count = recv.len();
        let check = || {
            if rank == root {
                expect_len(Argument::SendBuffer, inner.size() * count, send.len())
            } else {
                Ok(())
            }
        };
        if let Some(boards) = inner.boards(Collective::Scatter) {
            let max = inner.rt.tuning().shm_board_bcast_max;
            let outcome = inner.board_scatter(boards, (send, &mut *recv), root, check(), max);
            if let Some(result) = inner.after_boards::<T>(outcome, schedule) {
                return result;
            }
        }
        match check() {
            Ok(()) => inner.run(&schedule(count), send, recv, None),
            Err(error) => Err(inner.reject::<T>(&schedule(count), error)),
        }
    }

    /// Like [`Comm::scatter`] with blocks of different lengths
    /// (`MPI_Scatterv`): the root sends `counts[r]` elements to rank `r`, the
    /// blocks lying back to back in `send` in rank order; each rank's `recv`
    /// is exactly its count. `send` and `counts` are ignored off the root.
    pub fn scatterv<T: Pod>(
        &self,
        send: &[T],
        counts: &[usize],
        recv: &mut [T],
        root: impl Into<Rank>,
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        let root = inner.root(root.into())?;
        let (rank, size) = (inner.rank.0, inner.group.size());
        if rank != root {
            let schedule = mpr_collectives::scatterv(rank, size, root, &[], recv.len());
            return inner.run(&schedule, send, recv, None);
        }
        let (counts, check) = counts_for(counts, inner.size(), Argument::Counts);
        let schedule = mpr_collectives::scatterv(rank, size, root, &counts, counts[root as usize]);
        let check = check
            .and_then(|()| expect_len(Argument::SendBuffer, counts.iter().sum(), send.len()))
            .and_then(|()| expect_len(Argument::RecvBuffer, counts[root as usize], recv.len()));
        match check {
            Ok(()) => inner.run(&schedule, send, recv, None),
            Err(error) => Err(inner.reject::<T>(&schedule, error)),
        }
    }

    /// Collects every rank's `send` into the root's `recv` (`size ×
    /// send.len()` elements, in rank order) (`MPI_Gather`). `recv` is
    /// ignored elsewhere.
    ///
    /// ```
    /// mpr::local::run(3, |world| {
    ///     let mut all = vec![0u32; if world.rank() == 1 { 3 } else { 0 }];
    ///     world.gather(&[world.rank() * 10], &mut all, 1)?;
    ///     if world.rank() == 1 {
    ///         assert_eq!(all, [0, 10, 20]);
    ///     }
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn gather<T: Pod>(
        &self,
        send: &[T],
        recv: &mut [T],
        root: impl Into<Rank>,
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        let root = inner.root(root.into())?;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let schedule = |count: usize| {
            let bytes = count * size_of::<T>();
            let algorithm = inner.algorithm(Collective::Gather, bytes, count, true);
            let key = ScheduleKey::new(Collective::Gather, Some(algorithm), root, count, true);
            inner.schedule(key, || {
                mpr_collectives::gather(algorithm, rank, size, root, count)
            })
        };
        let recv_len = recv.len();
        let check = || {
            if rank == root {
                expect_len(Argument::RecvBuffer, inner.size() * send.len(), recv_len)
            } else {
                Ok(())
            }
        };
        if let Some(boards) = inner.boards(Collective::Gather) {
            let max = inner.rt.tuning().shm_board_gather_max;
            let outcome = inner.board_gather(boards, send, recv, root, check(), max);
            if let Some(result) = inner.after_boards::<T>(outcome, schedule) {
                return result;
            }
        }
        let schedule = schedule(send.len());
        if let Err(error) = check() {
            return Err(inner.reject::<T>(&schedule, error));
        }
        inner.run(&schedule, send, recv, None)
    }

    /// Like [`Comm::gather`] with blocks of different lengths
    /// (`MPI_Gatherv`): rank `r` sends `counts[r]` elements, which land back
    /// to back in the root's `recv` in rank order. `recv` and `counts` are
    /// ignored off the root.
    pub fn gatherv<T: Pod>(
        &self,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
        root: impl Into<Rank>,
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        let root = inner.root(root.into())?;
        let (rank, size) = (inner.rank.0, inner.group.size());
        if rank != root {
            let schedule = mpr_collectives::gatherv(rank, size, root, &[], send.len());
            return inner.run(&schedule, send, recv, None);
        }
        let (counts, check) = counts_for(counts, inner.size(), Argument::Counts);
        let schedule = mpr_collectives::gatherv(rank, size, root, &counts, counts[root as usize]);
        let check = check
            .and_then(|()| expect_len(Argument::RecvBuffer, counts.iter().sum(), recv.len()))
            .and_then(|()| expect_len(Argument::SendBuffer, counts[root as usize], send.len()));
        match check {
            Ok(()) => inner.run(&schedule, send, recv, None),
            Err(error) => Err(inner.reject::<T>(&schedule, error)),
        }
    }

    /// Combines every rank's `send` elementwise with `op`, in rank order,
    /// into the root's `recv` (`MPI_Reduce`). `recv` is ignored elsewhere.
    ///
    /// ```
    /// use mpr::op;
    /// mpr::local::run(4, |world| {
    ///     let mut best = [op::Loc::new(0.0, 0)];
    ///     let mine = [op::Loc::new((world.rank() % 3) as f64, world.rank() as i32)];
    ///     world.reduce(&mine, &mut best, op::MaxLoc, 0)?;
    ///     if world.rank() == 0 {
    ///         assert_eq!((best[0].value(), best[0].index()), (2.0, 2));
    ///     }
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn reduce<T: Pod>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: impl Op<T>,
        root: impl Into<Rank>,
    ) -> Result<(), Error> {
        let op = Vectorized(op);
        let inner = &*self.inner;
        let root = inner.root(root.into())?;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let commutative = op.is_commutative();
        let shared = || inner.shares_memory();
        let schedule = |count: usize| {
            let segment = mpr_collectives::reduce_segment(size, count, size_of::<T>(), shared);
            let key = ScheduleKey::new(Collective::Reduce, None, root, count, commutative)
                .segmented(segment);
            inner.schedule(key, || {
                mpr_collectives::reduce(rank, size, root, count, commutative, segment)
            })
        };
        let recv_len = recv.len();
        let check = || {
            if rank == root {
                expect_len(Argument::RecvBuffer, send.len(), recv_len)
            } else {
                Ok(())
            }
        };
        if let Some(boards) = inner.boards(Collective::Reduce) {
            let max = inner.rt.tuning().shm_board_reduce_max;
            let outcome = inner.board_reduce(boards, send, recv, &op, root, check(), max);
            if let Some(result) = inner.after_boards::<T>(outcome, schedule) {
                return result;
            }
        }
        match check() {
            Ok(()) => inner.run(&schedule(send.len()), send, recv, Some(&op)),
            Err(error) => Err(inner.reject::<T>(&schedule(send.len()), error)),
        }
    }

    /// Combines every rank's `send` elementwise with `op`, in rank order,
    /// into every rank's `recv` (`MPI_Allreduce`). `op` is a built-in from
    /// [`mpr::op`](crate::op) or any closure `Fn(T, T) -> T` (combined in
    /// rank order; wrap it in [`op::commutative`](crate::op::commutative) to
    /// allow faster orders).
    ///
    /// ```
    /// use mpr::op;
    /// mpr::local::run(3, |world| {
    ///     let r = world.rank() as u64;
    ///     let mut total = [0u64; 2];
    ///     world.allreduce(&[r, 1], &mut total, op::Sum)?;
    ///     assert_eq!(total, [3, 3]);
    ///     // A non-commutative closure: combined as rank 0 ∘ rank 1 ∘ rank 2.
    ///     let mut digits = [0u64];
    ///     world.allreduce(&[r + 1], &mut digits, |a: u64, b: u64| a * 10 + b)?;
    ///     assert_eq!(digits, [123]);
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn allreduce<T: Pod>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: impl Op<T>,
    ) -> Result<(), Error> {
        let op = Vectorized(op);
        let inner = &*self.inner;
        let commutative = op.is_commutative();
        if let Some(result) = self.allreduce_on_boards(Some(send), recv, &op) {
            return result;
        }
        let schedule = self.allreduce_schedule::<T>(send.len(), commutative, true);
        if let Err(error) = expect_len(Argument::RecvBuffer, send.len(), recv.len()) {
            return Err(inner.reject::<T>(&schedule, error));
        }
        inner.run(&schedule, send, recv, Some(&op))
    }

    /// [`Comm::allreduce`] with `buf` as both operand and result
    /// (`MPI_IN_PLACE`).
    pub fn allreduce_in_place<T: Pod>(&self, buf: &mut [T], op: impl Op<T>) -> Result<(), Error> {
        let op = Vectorized(op);
        if let Some(result) = self.allreduce_on_boards(None, buf, &op) {
            return result;
        }
        let schedule = self.allreduce_schedule::<T>(buf.len(), op.is_commutative(), false);
        self.inner.run(&schedule, &[], buf, Some(&op))
    }

    /// The allreduce on the collective boards, if this communicator uses
    /// them and the call ends there (`None`: run the message schedule).
    fn allreduce_on_boards<T: Pod>(
        &self,
        send: Option<&[T]>,
        recv: &mut [T],
        op: &dyn Op<T>,
    ) -> Option<Result<(), Error>> {
        let inner = &*self.inner;
        let boards = inner.boards(Collective::Allreduce)?;
        let max = inner.rt.tuning().shm_board_max;
        match inner.board_allreduce(boards, send, recv, op, max) {
            BoardOutcome::Done(result) => Some(result),
            BoardOutcome::Messages => None,
            BoardOutcome::Reject { count, error } => {
                let from_input = send.is_some();
                let schedule = self.allreduce_schedule::<T>(count, op.is_commutative(), from_input);
                Some(Err(inner.reject::<T>(&schedule, error)))
            }
        }
    }

    /// The allreduce schedule for `count` elements, reading the operand
    /// from the input buffer if `from_input`, else from the output.
    fn allreduce_schedule<T>(
        &self,
        count: usize,
        commutative: bool,
        from_input: bool,
    ) -> Arc<Schedule> {
        let inner = &*self.inner;
        let bytes = count * std::mem::size_of::<T>();
        let algorithm = inner.algorithm(Collective::Allreduce, bytes, count, commutative);
        let key = ScheduleKey::new(
            Collective::Allreduce,
            Some(algorithm),
            0,
            count,
            commutative,
        );
        let (rank, size) = (inner.rank.0, inner.group.size());
        if from_input {
            inner.schedule(key.reading_input(), || {
                mpr_collectives::allreduce_from_input(algorithm, rank, size, count, commutative)
            })
        } else {
            inner.schedule(key, || {
                mpr_collectives::allreduce(algorithm, rank, size, count, commutative)
            })
        }
    }

    /// Collects every rank's `send` into every rank's `recv` (`size ×
    /// send.len()` elements, in rank order) (`MPI_Allgather`).
    ///
    /// ```
    /// mpr::local::run(3, |world| {
    ///     let mut all = [0u32; 3];
    ///     world.allgather(&[world.rank() + 1], &mut all)?;
    ///     assert_eq!(all, [1, 2, 3]);
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn allgather<T: Pod>(&self, send: &[T], recv: &mut [T]) -> Result<(), Error> {
        let inner = &*self.inner;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let block = send.len();
        let total = block * inner.size();
        // Equal blocks: the schedule depends on the block length only, so
        // it is cached (allgatherv builds one per call).
        let schedule = |block: usize| {
            let total = block * inner.size();
            let bytes = total * std::mem::size_of::<T>();
            let algorithm = inner.algorithm(Collective::Allgather, bytes, total, true);
            let key = ScheduleKey::new(Collective::Allgather, Some(algorithm), 0, block, true);
            inner.schedule(key, || {
                mpr_collectives::allgather(algorithm, rank, size, &vec![block; size as usize])
            })
        };
        let recv_len = recv.len();
        let check = || expect_len(Argument::RecvBuffer, total, recv_len);
        if let Some(boards) = inner.boards(Collective::Allgather) {
            let max = inner.rt.tuning().shm_board_allgather_max;
            let outcome = inner.board_exchange(boards, Spread::Same, send, recv, check(), max);
            if let Some(result) = inner.after_boards::<T>(outcome, schedule) {
                return result;
            }
        }
        match check() {
            Ok(()) => inner.run(&schedule(block), send, recv, None),
            Err(error) => Err(inner.reject::<T>(&schedule(block), error)),
        }
    }

    /// Like [`Comm::allgather`] with blocks of different lengths
    /// (`MPI_Allgatherv`): rank `r` contributes `counts[r]` elements; they
    /// land back to back in every `recv`, in rank order.
    pub fn allgatherv<T: Pod>(
        &self,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
    ) -> Result<(), Error> {
        self.allgather_counts(Collective::Allgatherv, send, recv, counts)
    }

    fn allgather_counts<T: Pod>(
        &self,
        which: Collective,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let (counts, check) = counts_for(counts, inner.size(), Argument::Counts);
        let total: usize = counts.iter().sum();
        let algorithm = inner.algorithm(which, total * std::mem::size_of::<T>(), total, true);
        let schedule = mpr_collectives::allgather(algorithm, rank, size, &counts);
        let check = check
            .and_then(|()| expect_len(Argument::SendBuffer, counts[rank as usize], send.len()))
            .and_then(|()| expect_len(Argument::RecvBuffer, total, recv.len()));
        match check {
            Ok(()) => inner.run(&schedule, send, recv, None),
            Err(error) => Err(inner.reject::<T>(&schedule, error)),
        }
    }

    /// Sends block `j` of `send` to rank `j` and receives rank `j`'s block
    /// into block `j` of `recv`; both are `size × block` elements
    /// (`MPI_Alltoall`).
    ///
    /// ```
    /// mpr::local::run(3, |world| {
    ///     let r = world.rank();
    ///     let send = [10 * r, 10 * r + 1, 10 * r + 2];
    ///     let mut recv = [0u32; 3];
    ///     world.alltoall(&send, &mut recv)?;
    ///     assert_eq!(recv, [r, 10 + r, 20 + r]);
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn alltoall<T: Pod>(&self, send: &[T], recv: &mut [T]) -> Result<(), Error> {
        let inner = &*self.inner;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let block = send.len() / inner.size();
        let schedule = |block: usize| {
            let bytes = block * std::mem::size_of::<T>();
            let algorithm = inner.algorithm(Collective::Alltoall, bytes, block, true);
            let key = ScheduleKey::new(Collective::Alltoall, Some(algorithm), 0, block, true);
            inner.schedule(key, || {
                mpr_collectives::alltoall(algorithm, rank, size, block)
            })
        };
        let recv_len = recv.len();
        let check = || {
            expect_len(Argument::SendBuffer, block * inner.size(), send.len())
                .and_then(|()| expect_len(Argument::RecvBuffer, send.len(), recv_len))
        };
        if let Some(boards) = inner.boards(Collective::Alltoall) {
            let max = inner.rt.tuning().shm_board_alltoall_max;
            let outcome = inner.board_exchange(boards, Spread::Personal, send, recv, check(), max);
            if let Some(result) = inner.after_boards::<T>(outcome, schedule) {
                return result;
            }
        }
        match check() {
            Ok(()) => inner.run(&schedule(block), send, recv, None),
            Err(error) => Err(inner.reject::<T>(&schedule(block), error)),
        }
    }

    /// All-to-all with per-pair lengths (`MPI_Alltoallv`): `send_counts[j]`
    /// elements go to rank `j` and `recv_counts[j]` come from it; blocks lie
    /// back to back in rank order in `send` and `recv`.
    pub fn alltoallv<T: Pod>(
        &self,
        send: &[T],
        send_counts: &[usize],
        recv: &mut [T],
        recv_counts: &[usize],
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let (send_counts, send_check) = counts_for(send_counts, inner.size(), Argument::SendCounts);
        let (recv_counts, recv_check) = counts_for(recv_counts, inner.size(), Argument::RecvCounts);
        let me = rank as usize;
        let algorithm = inner.algorithm(
            Collective::Alltoallv,
            std::mem::size_of_val(send),
            send.len(),
            true,
        );
        let mut fitted = recv_counts.clone();
        fitted[me] = send_counts[me];
        let schedule = mpr_collectives::alltoallv(algorithm, rank, size, &send_counts, &fitted);
        let check = send_check
            .and(recv_check)
            .and_then(|()| expect_len(Argument::SendBuffer, send_counts.iter().sum(), send.len()))
            .and_then(|()| expect_len(Argument::RecvBuffer, recv_counts.iter().sum(), recv.len()))
            .and_then(|()| expect_len(Argument::RecvCounts, send_counts[me], recv_counts[me]));
        match check {
            Ok(()) => inner.run(&schedule, send, recv, None),
            Err(error) => Err(inner.reject::<T>(&schedule, error)),
        }
    }

    /// Inclusive prefix reduction (`MPI_Scan`): rank `r`'s `recv` is
    /// `send₀ ∘ send₁ ∘ … ∘ send_r`, combined in rank order.
    ///
    /// ```
    /// mpr::local::run(4, |world| {
    ///     let mut upto = [0u32];
    ///     world.scan(&[world.rank() + 1], &mut upto, mpr::op::Sum)?;
    ///     assert_eq!(upto[0], (1..=world.rank() + 1).sum::<u32>());
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn scan<T: Pod>(&self, send: &[T], recv: &mut [T], op: impl Op<T>) -> Result<(), Error> {
        let op = Vectorized(op);
        self.prefix(send, recv, &op, false)
    }

    /// Exclusive prefix reduction (`MPI_Exscan`): rank `r > 0`'s `recv` is
    /// `send₀ ∘ … ∘ send_{r-1}`; rank 0's `recv` is left as it was.
    pub fn exscan<T: Pod>(&self, send: &[T], recv: &mut [T], op: impl Op<T>) -> Result<(), Error> {
        let op = Vectorized(op);
        self.prefix(send, recv, &op, true)
    }

    fn prefix<T: Pod>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: &dyn Op<T>,
        exclusive: bool,
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let collective = if exclusive {
            Collective::Exscan
        } else {
            Collective::Scan
        };
        let key = ScheduleKey::new(collective, None, 0, send.len(), true);
        let schedule = inner.schedule(key, || {
            if exclusive {
                mpr_collectives::exscan(rank, size, send.len())
            } else {
                mpr_collectives::scan(rank, size, send.len())
            }
        });
        match expect_len(Argument::RecvBuffer, send.len(), recv.len()) {
            Ok(()) => inner.run(&schedule, send, recv, Some(op)),
            Err(error) => Err(inner.reject::<T>(&schedule, error)),
        }
    }

    /// Reduces every rank's `send` (`size × recv.len()` elements) with `op`
    /// and leaves block `r` of the result in rank `r`'s `recv`
    /// (`MPI_Reduce_scatter_block`).
    ///
    /// ```
    /// mpr::local::run(2, |world| {
    ///     let mut mine = [0i32; 2];
    ///     world.reduce_scatter(&[1, 2, 3, 4], &mut mine, mpr::op::Sum)?;
    ///     assert_eq!(mine, if world.rank() == 0 { [2, 4] } else { [6, 8] });
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn reduce_scatter<T: Pod>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: impl Op<T>,
    ) -> Result<(), Error> {
        let op = Vectorized(op);
        let inner = &*self.inner;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let commutative = op.is_commutative();
        let bytes = std::mem::size_of_val(recv) * inner.size();
        let algorithm = inner.algorithm(
            Collective::ReduceScatter,
            bytes,
            recv.len() * inner.size(),
            commutative,
        );
        let key = ScheduleKey::new(
            Collective::ReduceScatter,
            Some(algorithm),
            0,
            recv.len(),
            commutative,
        );
        let schedule = inner.schedule(key, || {
            mpr_collectives::reduce_scatter(algorithm, rank, size, recv.len(), commutative)
        });
        match expect_len(Argument::SendBuffer, recv.len() * inner.size(), send.len()) {
            Ok(()) => inner.run(&schedule, send, recv, Some(&op)),
            Err(error) => Err(inner.reject::<T>(&schedule, error)),
        }
    }
}
