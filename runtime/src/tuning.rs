//! Tunables read from `MPR_*` environment variables (see the crate docs).

use std::time::Duration;

use crate::engine::EngineConfig;

/// What the runtime does when an operation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorMode {
    /// Abort the whole job (MPI's `MPI_ERRORS_ARE_FATAL`), the default in a
    /// launched job.
    Abort,
    /// Hand the error back to the caller (`MPI_ERRORS_RETURN`), the default
    /// for singletons and [`crate::local::run`].
    Return,
}

/// Every tunable of a rank's runtime.
#[derive(Debug, Clone)]
pub(crate) struct Tuning {
    pub(crate) engine: EngineConfig,
    /// How long a waiting thread polls before it sleeps in the poller.
    pub(crate) spin: Duration,
    /// More ranks than cores on this host: yield the core while spinning.
    pub(crate) oversubscribed: bool,
    /// Largest lone message this rank sends eagerly over TCP: the engine's
    /// lone limit, or its stream limit on an oversubscribed host (see
    /// [`DEFAULT_EAGER_LIMIT_LONE_SHARED`]) unless `MPR_EAGER_LIMIT_LONE`
    /// is set. Receivers accept the engine's lone limit whatever this is.
    pub(crate) tcp_eager_limit_lone: usize,
    /// `SO_SNDBUF`/`SO_RCVBUF`.
    pub(crate) socket_buffer: Option<usize>,
    /// Congestion control of data sockets.
    pub(crate) tcp_congestion: crate::transport::tcp_socket::Congestion,
    /// Error policy.
    pub(crate) errors: ErrorMode,
    /// Run a progress thread.
    pub(crate) async_progress: bool,
    /// Ranks on one host talk through shared memory (`MPR_TRANSPORT`).
    pub(crate) shared_memory: bool,
    /// Data bytes of each shared-memory ring (`MPR_SHM_RING`).
    pub(crate) shm_ring: usize,
    /// Largest message sent eagerly to a shared-memory peer
    /// (`MPR_SHM_EAGER_LIMIT`, at most `MPR_EAGER_LIMIT`).
    pub(crate) shm_eager_limit: usize,
    /// Largest lone message sent eagerly to a shared-memory peer
    /// (`MPR_SHM_EAGER_LIMIT_LONE`).
    pub(crate) shm_eager_limit_lone: usize,
    /// Largest record copied through a ring at once (`MPR_SHM_RECORD`).
    pub(crate) shm_record: usize,
    /// Smallest piece moved by single copy (`MPR_SHM_SINGLE_COPY`; 0: never).
    pub(crate) shm_single_copy: usize,
    /// Largest piece moved by single copy (`MPR_SHM_SINGLE_COPY_MAX`).
    pub(crate) shm_single_copy_max: usize,
    /// Smallest lone piece moved by single copy (`MPR_SHM_SINGLE_COPY_LONE`).
    pub(crate) shm_single_copy_lone: usize,
    /// Largest rendezvous message the receiver pulls (`MPR_SHM_PULL_MAX`).
    pub(crate) shm_pull_max: usize,
    /// The same for a lone message (`MPR_SHM_PULL_MAX_LONE`).
    pub(crate) shm_pull_max_lone: usize,
    /// Smallest pull both ranks copy at once (`MPR_SHM_COOP_MIN`;
    /// `usize::MAX`: never).
    pub(crate) shm_coop_min: usize,
    /// Largest operand of a collective run on the shared-memory boards
    /// (`MPR_SHM_BOARD_MAX`; 0: never, at most the board's 64 KiB).
    pub(crate) shm_board_max: usize,
    /// The same for a bcast (`MPR_SHM_BOARD_BCAST_MAX`, at most 64 KiB).
    pub(crate) shm_board_bcast_max: usize,
    /// The same for an alltoall's whole send buffer (`MPR_SHM_BOARD_MAX`
    /// too, whose default differs between two ranks).
    pub(crate) shm_board_alltoall_max: usize,
    /// The same for a gather's block (as for alltoall).
    pub(crate) shm_board_gather_max: usize,
    /// The same for a reduce's operand (as for alltoall).
    pub(crate) shm_board_reduce_max: usize,
    /// The same for an allgather's block (as for alltoall).
    pub(crate) shm_board_allgather_max: usize,
    /// Operands above the board limits that a board collective copies
    /// straight between the processes (`MPR_SHM_DIRECT_MIN`), by
    /// collective.
    pub(crate) shm_direct: DirectRanges,
}

impl Tuning {
    /// Reads the tunables through `lookup`; `launched` picks the error
    /// policy default; `local_size` decides oversubscription.
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        launched: bool,
        local_size: u32,
    ) -> Tuning {
        let bytes = |name: &str| lookup(name).and_then(|v| parse_bytes(&v));
        let mut engine = EngineConfig::default();
        if let Some(limit) = bytes("MPR_EAGER_LIMIT") {
            engine.eager_limit = limit;
        }
        let lone_set = bytes("MPR_EAGER_LIMIT_LONE");
        if let Some(limit) = lone_set {
            engine.eager_limit_lone = limit;
        }
        if let Some(limit) = bytes("MPR_EAGER_LIMIT_EXPECTED") {
            engine.eager_limit_expected = limit;
        }
        if let Some(window) = bytes("MPR_CREDIT_WINDOW") {
            engine.credit_window = window;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let oversubscribed = local_size as usize > cores;
        // A dedicated core spins up to 1 ms (a wake-up from the poller costs
        // ~30 us here); a shared core gives up sooner, since its spinning
        // delays the very rank it waits for (measured: `mprun -n 8 hello` on
        // 2 cores takes 15 ms with 1 ms of spin, 12 ms with 50 us).
        let default_spin = if oversubscribed { 50 } else { 1000 };
        // A board limit: set, or the default for two ranks or for more
        // (the boards serve only jobs whose ranks all share this host).
        let board_limit = |name: &str, pair: usize, more: usize| {
            bytes(name)
                .unwrap_or(if local_size <= 2 { pair } else { more })
                .min(crate::transport::shm::board::CAPACITY)
        };
        let spin_us = lookup("MPR_SPIN_US")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(default_spin);
        let errors = match lookup("MPR_ERRORS").as_deref().map(str::trim) {
            Some("return") => ErrorMode::Return,
            Some("abort") | Some("fatal") => ErrorMode::Abort,
            _ if launched => ErrorMode::Abort,
            _ => ErrorMode::Return,
        };
        let coop_min = match bytes("MPR_SHM_COOP_MIN") {
            Some(0) => usize::MAX,
            Some(min) => min,
            // A sender that shares its core with the receiver cannot copy
            // at the same time, and a descheduled helper would make the
            // receiver wait.
            None if oversubscribed => usize::MAX,
            None => DEFAULT_SHM_COOP_MIN,
        };
        let default_pull_max = if coop_min == usize::MAX {
            DEFAULT_SHM_PULL_MAX
        } else {
            DEFAULT_SHM_PULL_MAX_COOP
        };
        let tcp_eager_limit_lone = match lone_set {
            Some(limit) => limit,
            None if oversubscribed => DEFAULT_EAGER_LIMIT_LONE_SHARED.min(engine.eager_limit),
            None => engine.eager_limit_lone,
        };
        Tuning {
            engine,
            spin: Duration::from_micros(spin_us),
            oversubscribed,
            tcp_eager_limit_lone,
            socket_buffer: match bytes("MPR_SOCKET_BUFFER") {
                Some(0) => None,
                Some(size) => Some(size),
                None => Some(4 << 20),
            },
            tcp_congestion: lookup("MPR_TCP_CONGESTION")
                .map(|value| crate::transport::tcp_socket::Congestion::parse(&value))
                .unwrap_or_default(),
            errors,
            async_progress: matches!(
                lookup("MPR_ASYNC_PROGRESS").as_deref(),
                Some("1") | Some("true") | Some("yes")
            ),
            shared_memory: !matches!(
                lookup("MPR_TRANSPORT").as_deref().map(str::trim),
                Some("tcp")
            ),
            shm_ring: bytes("MPR_SHM_RING")
                .unwrap_or(DEFAULT_SHM_RING)
                .clamp(4 << 10, 1 << 30),
            shm_record: bytes("MPR_SHM_RECORD").unwrap_or(DEFAULT_SHM_RECORD),
            shm_eager_limit: bytes("MPR_SHM_EAGER_LIMIT").unwrap_or(DEFAULT_SHM_EAGER_LIMIT),
            shm_eager_limit_lone: bytes("MPR_SHM_EAGER_LIMIT_LONE")
                .unwrap_or(DEFAULT_SHM_EAGER_LIMIT_LONE),
            shm_single_copy: bytes("MPR_SHM_SINGLE_COPY").unwrap_or(DEFAULT_SHM_SINGLE_COPY),
            shm_single_copy_max: bytes("MPR_SHM_SINGLE_COPY_MAX")
                .unwrap_or(DEFAULT_SHM_SINGLE_COPY_MAX),
            shm_single_copy_lone: bytes("MPR_SHM_SINGLE_COPY_LONE")
                .unwrap_or(DEFAULT_SHM_SINGLE_COPY_LONE),
            shm_pull_max: bytes("MPR_SHM_PULL_MAX").unwrap_or(default_pull_max),
            shm_pull_max_lone: bytes("MPR_SHM_PULL_MAX_LONE").unwrap_or(default_pull_max),
            shm_coop_min: coop_min,
            shm_board_max: board_limit(
                "MPR_SHM_BOARD_MAX",
                DEFAULT_SHM_BOARD_MAX_PAIR,
                DEFAULT_SHM_BOARD_MAX,
            ),
            shm_board_bcast_max: board_limit(
                "MPR_SHM_BOARD_BCAST_MAX",
                DEFAULT_SHM_BOARD_BCAST_MAX_PAIR,
                DEFAULT_SHM_BOARD_BCAST_MAX,
            ),
            shm_board_alltoall_max: board_limit(
                "MPR_SHM_BOARD_MAX",
                DEFAULT_SHM_BOARD_ALLTOALL_MAX_PAIR,
                DEFAULT_SHM_BOARD_MAX,
            ),
            shm_board_gather_max: board_limit(
                "MPR_SHM_BOARD_MAX",
                DEFAULT_SHM_BOARD_GATHER_MAX_PAIR,
                DEFAULT_SHM_BOARD_MAX,
            ),
            shm_board_reduce_max: board_limit(
                "MPR_SHM_BOARD_MAX",
                DEFAULT_SHM_BOARD_REDUCE_MAX_PAIR,
                DEFAULT_SHM_BOARD_MAX,
            ),
            shm_board_allgather_max: board_limit(
                "MPR_SHM_BOARD_MAX",
                DEFAULT_SHM_BOARD_ALLGATHER_MAX_PAIR,
                DEFAULT_SHM_BOARD_MAX,
            ),
            shm_direct: DirectRanges::new(bytes("MPR_SHM_DIRECT_MIN"), local_size),
        }
    }

    /// Reads the tunables from the process environment.
    pub(crate) fn from_env(launched: bool, local_size: u32) -> Tuning {
        Self::from_lookup(|name| std::env::var(name).ok(), launched, local_size)
    }
}

/// Largest lone message sent eagerly over TCP from an oversubscribed host
/// (more ranks than cores): the stream limit, so that a lone message
/// takes the rendezvous there too. Measured 2026-11-26 (8 ranks on 2
/// cores, TCP, medians of 5 alternating runs, µs, allgather of 256 KiB /
/// 512 KiB): with a 256 KiB lone limit 5 158-6 187 / 7 392-8 486, with
/// 64 KiB 2 811-3 270 / 5 510-6 214. Eager messages that reach a rank
/// which is not running wait unmatched and are copied twice; a rendezvous
/// moves them once the receiver asks.
const DEFAULT_EAGER_LIMIT_LONE_SHARED: usize = 64 << 10;

/// Default data bytes of a shared-memory ring.
const DEFAULT_SHM_RING: usize = 256 << 10;
/// Default largest operand of a collective on the shared-memory boards
/// (`collective/board.rs`) but bcast. Measured 2026-11-26,
/// medians of 5 alternating runs, µs, boards against messages:
///
/// | ranks | allreduce 8 B / 512 B / 2 KiB / 8 KiB | bcast 8 B / 512 B / 8 KiB | barrier |
/// |---|---|---|---|
/// | 2 | 0.46 / 0.69 / 1.62 / 3.07 against 0.45 / 0.74 / 1.23 / 2.29 | 0.26 / 0.42 / 1.54 against 0.33 / 0.55 / 1.49 | |
/// | 4 | 2.61 / 3.01 / 4.86 / 6.68 against 5.66 / 4.50 / 5.92 / 8.59 | 0.16 / 0.20 / 1.47 against 0.53 / 0.52 / 1.96 | 2.61 against 4.89 |
/// | 8 | 8.83 / 9.38 / 10.48 / 17.50 against 21.95 / 17.78 / 22.29 / 47.92 | 0.17 / 0.25 / 1.20 against 0.84 / 0.76 / 1.90 | 9.55 against 17.05 |
///
/// Gather, 4 B / 256 B / 8 KiB blocks: 2 ranks 0.42 / 0.53 / 1.47 against
/// 0.32 / 0.48 / 1.51, 4 ranks 1.00 / 1.60 / 2.51 against 1.47 / 1.69 /
/// 2.75, 8 ranks 2.13 / 2.49 / 2.81 against 3.08 / 3.15 / 3.91.
///
/// Above 8 KiB, with boards of 64 KiB (same method, 16 / 32 / 64 KiB):
///
/// | | ranks | boards | messages |
/// |---|---|---|---|
/// | allreduce | 4 | 12.0 / 23.3 / 45.7 | 60.9 / 40.0 / 75.1 |
/// | allreduce | 8 | 35.9 / 67.7 / 133 | 211 / 157 / 224 |
/// | gather (blocks) | 4 | 2.74 / 4.56 / 9.52 | 14.6 / 10.2 / 15.9 |
/// | gather (blocks) | 8 | 4.53 / 6.95 / 10.2 | 27.5 / 28.6 / 44.9 |
/// | alltoall (send buffer) | 4 | 5.29 / 8.82 / 14.0 | 9.62 / 13.6 / 26.4 |
/// | alltoall (send buffer) | 8 | 16.0 / 19.2 / 26.8 | 57.7 / 69.2 / 99.7 |
///
/// Between two ranks with a core each, messages win an allreduce from
/// 2 KiB: [`DEFAULT_SHM_BOARD_MAX_PAIR`] there.
const DEFAULT_SHM_BOARD_MAX: usize = 64 << 10;
/// Default largest bcast on the boards (the root copies in once, every
/// other rank copies out at once). Measured 2026-11-26, medians of 5
/// alternating runs, µs, boards against messages, 4 / 8 / 16 / 32 / 64 KiB:
///
/// | ranks | boards | messages |
/// |---|---|---|
/// | 2 | 0.99 / 1.75 / 2.73 / 5.24 / 9.48 | 1.33 / 1.74 / 2.25 / 2.74 / 4.07 |
/// | 4 | 0.58 / 1.03 / 1.98 / 4.01 / 9.22 | 1.77 / 1.64 / 4.75 / 6.51 / 8.96 |
/// | 8 | 0.71 / 1.24 / 2.30 / 4.83 / 10.07 | 3.06 / 3.50 / 7.44 / 9.29 / 14.68 |
///
/// Between two ranks the message's single copy wins from 16 KiB: the board
/// copies twice, one after the other.
const DEFAULT_SHM_BOARD_BCAST_MAX: usize = 32 << 10;
/// The operand sizes (in bytes, both ends included) that each board
/// collective copies straight between the processes when they are above
/// its board limit (`collective/direct.rs`); `None`: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirectRanges {
    bcast: Option<(usize, usize)>,
    /// By the root's whole send buffer.
    scatter: Option<(usize, usize)>,
    gather: Option<(usize, usize)>,
    allreduce: Option<(usize, usize)>,
    /// Only where ranks are bound to cores (see [`Self::after_binding`]).
    reduce: Option<(usize, usize)>,
    alltoall: Option<(usize, usize)>,
    /// Whether `reduce` holds its default, which an unbound rank drops.
    reduce_if_bound: bool,
}

impl DirectRanges {
    /// `MPR_SHM_DIRECT_MIN` if set (`0`: never; otherwise every operand of
    /// at least this size), or the defaults for a host of `local_size`
    /// ranks (see [`DEFAULT_SHM_DIRECT_MIN`] and [`PAIR_DIRECT`]).
    fn new(set: Option<usize>, local_size: u32) -> DirectRanges {
        let all = |range: Option<(usize, usize)>| DirectRanges {
            bcast: range,
            scatter: range,
            gather: range,
            allreduce: range,
            reduce: range,
            alltoall: range,
            reduce_if_bound: false,
        };
        match set {
            Some(0) => all(None),
            Some(min) => all(Some((min, usize::MAX))),
            None if local_size <= 2 => PAIR_DIRECT,
            None => DirectRanges {
                scatter: Some((DEFAULT_SHM_DIRECT_MIN, DEFAULT_SHM_DIRECT_SCATTER_MAX)),
                reduce: Some((DEFAULT_SHM_DIRECT_REDUCE_MIN, usize::MAX)),
                reduce_if_bound: true,
                ..all(Some((DEFAULT_SHM_DIRECT_MIN, usize::MAX)))
            },
        }
    }

    /// Drops the default direct reduce of a rank that is not `bound` to a
    /// core (see [`DEFAULT_SHM_DIRECT_REDUCE_MIN`]); `MPR_SHM_DIRECT_MIN`
    /// set keeps what it says.
    pub(crate) fn after_binding(&mut self, bound: bool) {
        if self.reduce_if_bound && !bound {
            self.reduce = None;
        }
    }

    /// Whether `collective`'s operand of `bytes` bytes goes directly.
    pub(crate) fn contains(&self, collective: mpr_collectives::Collective, bytes: usize) -> bool {
        use mpr_collectives::Collective;
        let range = match collective {
            Collective::Bcast => self.bcast,
            Collective::Scatter => self.scatter,
            Collective::Gather => self.gather,
            Collective::Allreduce => self.allreduce,
            Collective::Reduce => self.reduce,
            // An allgather moves its blocks as an all-to-all does.
            Collective::Alltoall | Collective::Allgather => self.alltoall,
            _ => None,
        };
        range.is_some_and(|(min, max)| (min..=max).contains(&bytes))
    }

    /// Whether any operand goes directly.
    pub(crate) fn any(&self) -> bool {
        [
            self.bcast,
            self.scatter,
            self.gather,
            self.allreduce,
            self.reduce,
            self.alltoall,
        ]
        .iter()
        .any(Option::is_some)
    }
}

/// Default direct ranges with two ranks on the host, each on its own core
/// (medians of 5 alternating runs, µs, messages against direct, 2026-11-26):
///
/// | collective | 2 KiB | 8 KiB | 32 KiB | 128 KiB | 256 KiB | 1 MiB |
/// |---|---|---|---|---|---|---|
/// | allreduce | 1.35 / 3.37 | 2.43 / 4.27 | 4.44 / 7.89 | 11.0 / 21.1 | 24.4 / 35.2 | 201 / 223 |
/// | alltoall | 1.35 / 1.88 | 2.41 / 2.19 | 4.31 / 3.86 | 9.88 / 9.38 | 24.0 / 18.6 | 253 / 225 |
/// | bcast | 0.85 / 0.89 | 1.54 / 1.00 | 2.74 / 2.14 | 6.64 / 5.78 | 8.66 / 11.3 | 35.5 / 70.6 |
///
/// Each direct call costs three system calls and two or three waits for
/// the peer, which a small operand does not repay; a message's pull does
/// the same copy with less. From 256 KiB a message's pull is copied by
/// both ranks at once (`MPR_SHM_COOP_MIN`), which a direct bcast cannot
/// do. A direct gather's sender writes its block into the root's buffer
/// while the root copies its own block: with 8, 16 and 128 KiB blocks
/// 1.28, 1.51 and 6.85 µs against 1.48, 2.10 and 8.44 by messages
/// (medians of 7 alternating runs); with 2 and 4 KiB, 1.14-1.37 and
/// 1.22-1.33 against 0.94-1.15 and 1.16-1.39 (3 runs each).
const PAIR_DIRECT: DirectRanges = DirectRanges {
    bcast: Some((8 << 10, 128 << 10)),
    // As bcast: the root's buffer, read by the peer (not measured apart).
    scatter: Some((8 << 10, 128 << 10)),
    gather: Some((8 << 10, usize::MAX)),
    allreduce: None,
    // Messages win at every size (see `DEFAULT_SHM_DIRECT_REDUCE_MIN`).
    reduce: None,
    alltoall: Some((8 << 10, usize::MAX)),
    reduce_if_bound: false,
};

/// Default smallest reduce operand copied directly from three ranks on,
/// where the ranks are bound to cores (`mprun --bind-to core`, or by
/// default when each has a core of its own); unbound ranks, and two ranks,
/// reduce by messages. Measured 2026-11-26 (medians of 6-10 alternating
/// runs, µs, messages against direct, pieces of 64 KiB claimed in turn;
/// 128 KiB / 256 KiB / 512 KiB / 1 MiB):
///
/// | ranks | messages | direct |
/// |---|---|---|
/// | 4 bound | 27.1 / 55.7 / 168 / 462 | 25.4 / 57.0 / 128 / 294 |
/// | 4 unbound | 32.2 / 50.8 / 107 / 284 | 27.5 / 61.1 / 131 / 297 |
/// | 8 bound | 70.7 / 177 / 376 / 900 | 60.2 / 133 / 300 / 583 |
/// | 8 unbound | 66.3 / 134 / 279 / 546 | 60.2 / 132 / 307 / 609 |
/// | 2 | 9.67 / 18.8 / 38.3 / 85.5 | 11.8 / 20.9 / 37.4 / 97.0 |
///
/// (The 2-rank direct figures are of one slice per rank.) By messages a
/// reduce climbs a binomial tree, and bound ranks that share a core with
/// an inner node of the tree wait for its work; directly, whichever ranks
/// hold a core claim the pieces, and every operand is read where it lies.
/// Unbound, the scheduler's uneven splits make the direct call wait for
/// its slowest rank to be scheduled again at the end.
const DEFAULT_SHM_DIRECT_REDUCE_MIN: usize = 512 << 10;

/// Default largest scatter (the root's whole send buffer) copied directly
/// from three ranks on; larger ones go by messages, whose pulls copy as
/// much but do not keep the root waiting for every rank. Measured
/// 2026-11-26 (medians of 5 alternating runs, µs, blocks, messages against
/// direct): 4 ranks 64 / 128 / 256 KiB 7.19 / 13.9 / 32.8 against 7.02 /
/// 14.2 / 39.2; 8 ranks 32 / 64 / 128 KiB 10.4 / 21.8 / 56.0 against 9.50
/// / 24.1 / 62.7.
const DEFAULT_SHM_DIRECT_SCATTER_MAX: usize = 256 << 10;

/// Default smallest operand copied directly between the processes by a
/// board collective, from three ranks on: every one above the board
/// limits. Measured
/// 2026-11-26 (medians of 3-7 alternating runs, µs, messages against
/// direct; full 4 B-1 MiB sweeps):
///
/// | ranks | collective | 128 KiB | 256 KiB | 512 KiB | 1 MiB |
/// |---|---|---|---|---|---|
/// | 4 | gather | 18.4 / 11.8 | 62.0 / 27.1 | 235 / 73.3 | 355 / 185 |
/// | 4 | alltoall | 231 / 102 | 248 / 247 | 483 / 493 | 985 / 931 |
/// | 4 | allreduce | 87.7 / 84.3 | 143 / 145 | 295 / 288 | 603 / 608 |
/// | 8 | allreduce | 306 / 331 | 466 / 444 | 905 / 798 | 1 930 / 1 550 |
/// | 8 | gather | 68.2 / 71.6 | 176 / 175 | 445 / 416 | 832 / 764 |
/// | 8 | alltoall | 585 / 629 | 1 066 / 1 069 | 2 363 / 2 586 | 7 638 / 7 658 |
///
/// A 4-rank bcast of 64 KiB (above its 32 KiB board limit) took 7.0 µs
/// directly against 9.0 by messages. With two ranks both ways are within
/// 5% from 2 KiB to 1 MiB. Where the sizes tie, the copies are the same
/// single copies as a message's pull (memory-bound here); the direct path
/// saves the steps of the schedule, which cost most where more ranks than
/// cores wait for each other.
const DEFAULT_SHM_DIRECT_MIN: usize = 1;
/// Default largest bcast on the boards with two ranks or fewer (above).
const DEFAULT_SHM_BOARD_BCAST_MAX_PAIR: usize = 4 << 10;
/// Default board limit of an alltoall's whole send buffer when the host
/// runs two ranks or fewer: the board wins up to 8 KiB there (medians of 9
/// alternating runs, µs, 1 / 2 / 4 KiB blocks, board limit 8 KiB against
/// 1 KiB: 0.85 / 0.94 / 1.47 against 1.36 / 1.37 / 1.77; 8 KiB blocks,
/// off the board either way, 1.93 / 1.87), where an allreduce already
/// loses from 2 KiB (1.61 against 1.46).
const DEFAULT_SHM_BOARD_ALLTOALL_MAX_PAIR: usize = 8 << 10;
/// Default board limit of an allgather's block when the host runs two
/// ranks or fewer: 1 KiB. Measured 2026-11-26, medians of 7-9 alternating
/// runs, µs, 512 B / 1 / 2 / 4 / 8 KiB blocks: by messages alone (before
/// allgather used the boards) 0.66 / 0.99 / 1.10 / 1.38 / 2.00; on the
/// board 0.67 / 0.89 / 1.30 / 1.67, the 8 KiB block copied directly 1.71;
/// 2 and 4 KiB directly 1.30 / 1.56; by messages after publishing the
/// length on the board (as every call there does) 1.25 / 1.57. So 2 and 4
/// KiB blocks go by messages (the direct range starts at 8 KiB, as for
/// alltoall); Open MPI takes 1.39 / 1.94 there. From three ranks on the board
/// holds blocks up to its 64 KiB (8 ranks, 16 / 32 / 64 KiB: 22.4 / 36.3 /
/// 89.4 on the board against 50.4 / 79.4 / 145 directly; 4 ranks alike
/// within 6%).
const DEFAULT_SHM_BOARD_ALLGATHER_MAX_PAIR: usize = 1 << 10;
/// Default board limit of a gather's block when the host runs two ranks
/// or fewer (medians of 9 alternating runs, µs, 2 / 4 / 8 KiB blocks):
/// on the board 0.88 / 0.97 / 1.59, by messages after the root's verdict
/// 1.29 / 1.47, directly 1.14 / 1.16 / 1.23.
const DEFAULT_SHM_BOARD_GATHER_MAX_PAIR: usize = 4 << 10;
/// Default board limit of a reduce's operand when the host runs two ranks
/// or fewer. Measured 2026-11-26 (medians of 8 alternating runs, µs,
/// 2 KiB / 4 KiB, f32 sums): by messages (with the 1 KiB limit) 1.20 /
/// 1.38, with a 2 KiB limit 0.88 / 1.38, with 4 KiB 0.87 / 1.29; 8 KiB
/// goes by messages at 1.89 with either.
const DEFAULT_SHM_BOARD_REDUCE_MAX_PAIR: usize = 4 << 10;
/// Default board limit when the host runs two ranks or fewer (see above):
/// at 1 KiB boards and messages tie (0.93 against 0.98 µs).
const DEFAULT_SHM_BOARD_MAX_PAIR: usize = 1024;
/// Default largest record: an eighth of the ring, so that the sender's and
/// the receiver's copies overlap (measured: 13 GB/s at 1 MiB vs 8 GB/s
/// with quarter-ring records).
const DEFAULT_SHM_RECORD: usize = 32 << 10;
/// Default eager limit towards shared-memory peers: an eager message is
/// copied four times (into a frame, the ring, the staging buffer, the
/// user's buffer), a rendezvous one once (single copy) after a round trip.
/// Measured (2 ranks, latency / bandwidth): eager 64 KiB + single copy
/// from 128 KiB gave 32 KiB 6.1 us, 64 KiB 9.2 us; eager 16 KiB + single
/// copy from 32 KiB gives 3.0 us and 4.4 us with the same bandwidth
/// (16 KiB: 11.9 GB/s; an 8 KiB eager limit costs 16 KiB messages a round
/// trip: 7.2 GB/s).
const DEFAULT_SHM_EAGER_LIMIT: usize = 16 << 10;
/// Default eager limit for a lone message to a shared-memory peer (nothing
/// queued or in flight to it): its payload goes by single copy all the
/// same, and eager skips the RTS/CTS round trip, which on shared cores
/// costs a context switch per hop. A stream keeps rendezvous above
/// [`DEFAULT_SHM_EAGER_LIMIT`]. Measured 2026-11-25 (medians of 3-5
/// alternating runs, µs, 64 KiB messages, lone limit 32 KiB → 64 KiB,
/// once eager payloads for posted receives landed in place): bcast at 2 /
/// 4 / 8 ranks 3.82 → 3.17, 13.1 → 5.4, 21.5 → 8.0; alltoall at 2 ranks
/// 9.05 → 5.51; latency 4.71 → 4.47; streaming bandwidth 14.1 → 13.4
/// GB/s. It is capped by the engine's lone limit (`MPR_EAGER_LIMIT_LONE`).
const DEFAULT_SHM_EAGER_LIMIT_LONE: usize = 64 << 10;
/// Default range of pieces moved by single copy (`process_vm_readv` by the
/// receiver), from side-by-side runs on the 2-vCPU development VM (2
/// ranks, `mpr-bench latency` / `bw`, ring copy vs single copy):
///
/// | size | latency ring / single (us) | bandwidth ring / single (MB/s) |
/// |---|---|---|
/// | 128 KiB | 11.4 / 6.5 | 13 100 / 15 700 |
/// | 256 KiB | 18.3 / 10.4 | 14 300 / 16 400 |
/// | 512 KiB | 34.1 / 19.5 | 14 700 / 17 400 |
/// | 1 MiB | 80.2 / 57.7 | 13 900 / 11 700 |
/// | 2 MiB | 169 / 193 | 9 200 / 6 100 |
/// | 4 MiB | 348 / 419 | 8 200 / 5 700 |
///
/// From 1 MiB the ring wins on bandwidth: there sender and receiver copy
/// in parallel, while a single copy leaves the whole work to the
/// receiver. Below 128 KiB, with the 16 KiB eager limit: 32 KiB 3.0 us
/// (ring: 6.1), 64 KiB 4.4 us (ring: 9.2).
///
/// The upper end was 1 MiB until a rerun with several single-copy records
/// in flight per lane (alternating runs, 2 rounds, 2026-11-25): at 1 MiB
/// the ring streamed 9.9-11.3 GB/s against 8.1 for single copy, and a
/// 2-rank gather of 1 MiB blocks took 179-191 us against 209; single copy
/// kept the better 1 MiB latency (82-86 us against 92-94). Bandwidth and
/// collectives won.
const DEFAULT_SHM_SINGLE_COPY: usize = 32 << 10;
/// See [`DEFAULT_SHM_SINGLE_COPY`].
const DEFAULT_SHM_SINGLE_COPY_MAX: usize = 512 << 10;
/// Smallest piece moved by single copy when it is the only thing queued
/// for its peer and nothing is in flight to it: a lone message, as in a
/// ping-pong or a collective's step, where latency counts; a stream of
/// messages keeps the ring below [`DEFAULT_SHM_SINGLE_COPY`], where sender
/// and receiver copy in parallel. Measured 2026-11-25 (2 ranks, µs, 2
/// runs): 16 KiB latency 1.91-1.96 by single copy against 2.68-2.71
/// through the ring (Open MPI: 1.66); at 8 KiB single copy gained less
/// (1.49 against 1.56-1.62), and a collective's transient sends are sliced
/// to 8 KiB and must stay in the ring.
const DEFAULT_SHM_SINGLE_COPY_LONE: usize = 16 << 10;
/// Default largest rendezvous message pulled by its receiver (see
/// `engine/pull.rs`), lone or not, when pulls are not shared with the
/// sender (oversubscribed hosts). Measured 2026-11-25 (medians of 5-7
/// alternating runs, pulls off against on):
///
/// | | off | on |
/// |---|---|---|
/// | 4-rank bcast, 128 KiB / 256 KiB / 1 MiB | 24.0 / 39.3 / 225 µs | 17.2 / 35.0 / 191 µs |
/// | 4-rank allreduce, 32 KiB / 128 KiB | 34.4 / 153 µs | 24.7 / 125 µs |
/// | 2-rank alltoall, 128 KiB / 256 KiB | 16.3 / 29.3 µs | 10.6 / 20.4 µs |
///
/// Above 512 KiB the ring won a stream when the receiver copied alone (2
/// ranks, pulls up to 8 MiB: 1 MiB 9.2 against 11.0 GB/s, 2 MiB 5.4
/// against 6.9), where sender and receiver copy in parallel; a lone 1 MiB
/// message pulled cut the 2-rank latency from 103 to 91 µs, but a 4-rank
/// gather of 1 MiB blocks went from 408 to 676 µs: the root then copies
/// every block itself.
const DEFAULT_SHM_PULL_MAX: usize = 512 << 10;
/// Default largest pull when the sender helps copy (dedicated cores): no
/// limit, both cores copy. Measured 2026-11-25, 2 ranks, medians of 3
/// alternating runs, 512 KiB limit (the ring above) against none:
///
/// | | 512 KiB | 1 MiB | 2 MiB | 4 MiB |
/// |---|---|---|---|---|
/// | latency (µs) | 17.0 / 17.0 | 102 / 60 | 235 / 153 | 476 / 318 |
/// | bandwidth (GB/s) | 15.0 / 17.5 | 6.1 / 13.6 | 5.3 / 8.6 | 5.5 / 7.7 |
///
/// and 1 MiB blocks: gather 214 → 132 µs, alltoall 341 → 258, bcast 80 →
/// 32, allreduce a tie.
const DEFAULT_SHM_PULL_MAX_COOP: usize = usize::MAX;
/// Default smallest pull copied by both ranks at once (see
/// `transport/shm/coop.rs`): from four 64 KiB chunks on. Measured
/// 2026-11-25 (2 ranks, medians of 3 alternating runs, receiver alone
/// against shared): 256 KiB latency 12.5 → 9.2 µs, bandwidth 12.6 → 17.3
/// GB/s; 512 KiB 27.1 → 18.5 µs, 10.9 → 13.2 GB/s.
const DEFAULT_SHM_COOP_MIN: usize = 256 << 10;

/// Parses `65536`, `64k`, `64KiB`, `4m`, `4MiB`, `1g`.
pub(crate) fn parse_bytes(text: &str) -> Option<usize> {
    let text = text.trim().to_ascii_lowercase();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let value: usize = digits.parse().ok()?;
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    value.checked_mul(1usize << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_units() {
        assert_eq!(parse_bytes("65536"), Some(65536));
        assert_eq!(parse_bytes("64k"), Some(65536));
        assert_eq!(parse_bytes("4MiB"), Some(4 << 20));
        assert_eq!(parse_bytes(" 1g "), Some(1 << 30));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(parse_bytes("12q"), None);
    }

    #[test]
    fn direct_ranges_depend_on_the_ranks_of_the_host_unless_set() {
        use mpr_collectives::Collective::{Allreduce, Alltoall, Barrier, Bcast, Gather};
        let none = |_: &str| None;
        let pair = Tuning::from_lookup(none, true, 2).shm_direct;
        assert!(pair.any());
        assert!(!pair.contains(Allreduce, 1 << 20));
        assert!(!pair.contains(Bcast, 4 << 10) && pair.contains(Bcast, 8 << 10));
        assert!(pair.contains(Bcast, 128 << 10) && !pair.contains(Bcast, 256 << 10));
        assert!(!pair.contains(Alltoall, 2 << 10) && pair.contains(Alltoall, 1 << 30));
        assert!(!pair.contains(Gather, 4 << 10) && pair.contains(Gather, 8 << 10));
        let four = Tuning::from_lookup(none, true, 4).shm_direct;
        for collective in [Bcast, Gather, Allreduce, Alltoall] {
            assert!(four.contains(collective, 65 << 10), "{collective:?}");
        }
        assert!(!four.contains(Barrier, 1));
        let set = |value: &'static str| {
            move |name: &str| (name == "MPR_SHM_DIRECT_MIN").then(|| value.to_owned())
        };
        let min = Tuning::from_lookup(set("1m"), true, 2).shm_direct;
        assert!(min.contains(Allreduce, 1 << 20) && !min.contains(Alltoall, 512 << 10));
        let off = Tuning::from_lookup(set("0"), true, 4).shm_direct;
        assert!(!off.any() && !off.contains(Alltoall, 1 << 20));
    }

    #[test]
    fn error_mode_defaults_depend_on_launch() {
        let none = |_: &str| None;
        assert_eq!(Tuning::from_lookup(none, true, 1).errors, ErrorMode::Abort);
        assert_eq!(
            Tuning::from_lookup(none, false, 1).errors,
            ErrorMode::Return
        );
        let ret = |name: &str| (name == "MPR_ERRORS").then(|| "return".to_owned());
        assert_eq!(Tuning::from_lookup(ret, true, 1).errors, ErrorMode::Return);
        let eager = |name: &str| (name == "MPR_EAGER_LIMIT").then(|| "8k".to_owned());
        assert_eq!(
            Tuning::from_lookup(eager, false, 1).engine.eager_limit,
            8192
        );
    }

    #[test]
    fn board_limits_depend_on_the_ranks_of_the_host_and_fit_the_board() {
        let none = |_: &str| None;
        let pair = Tuning::from_lookup(none, true, 2);
        assert_eq!(
            (
                pair.shm_board_max,
                pair.shm_board_bcast_max,
                pair.shm_board_alltoall_max
            ),
            (1 << 10, 4 << 10, 8 << 10)
        );
        assert_eq!(pair.shm_board_gather_max, 4 << 10);
        assert_eq!(pair.shm_board_reduce_max, 4 << 10);
        assert_eq!(pair.shm_board_allgather_max, 1 << 10);
        let four = Tuning::from_lookup(none, true, 4);
        assert_eq!(
            (
                four.shm_board_max,
                four.shm_board_bcast_max,
                four.shm_board_alltoall_max
            ),
            (64 << 10, 32 << 10, 64 << 10)
        );
        assert_eq!(four.shm_board_gather_max, 64 << 10);
        assert_eq!(four.shm_board_reduce_max, 64 << 10);
        assert_eq!(four.shm_board_allgather_max, 64 << 10);
        let huge = |name: &str| (name == "MPR_SHM_BOARD_MAX").then(|| "1m".to_owned());
        let capped = Tuning::from_lookup(huge, true, 2);
        assert_eq!(capped.shm_board_max, crate::transport::shm::board::CAPACITY);
        assert_eq!(
            capped.shm_board_alltoall_max,
            crate::transport::shm::board::CAPACITY
        );
        let off = |name: &str| (name == "MPR_SHM_BOARD_MAX").then(|| "0".to_owned());
        let off = Tuning::from_lookup(off, true, 4);
        assert_eq!((off.shm_board_max, off.shm_board_alltoall_max), (0, 0));
    }

    #[test]
    fn lone_eager_limits_send_less_on_a_shared_host_and_accept_the_same() {
        let none = |_: &str| None;
        let dedicated = Tuning::from_lookup(none, true, 1);
        assert_eq!(dedicated.engine.eager_limit_lone, 256 << 10);
        assert_eq!(dedicated.tcp_eager_limit_lone, 256 << 10);
        // Oversubscribed: lone messages keep the stream limit, but the
        // receiving side accepts as much as everywhere else.
        let shared = Tuning::from_lookup(none, true, 4096);
        assert_eq!(shared.engine.eager_limit_lone, 256 << 10);
        assert_eq!(shared.tcp_eager_limit_lone, 64 << 10);
        let set = |name: &str| (name == "MPR_EAGER_LIMIT_LONE").then(|| "128k".to_owned());
        let shared = Tuning::from_lookup(set, true, 4096);
        assert_eq!(shared.engine.eager_limit_lone, 128 << 10);
        assert_eq!(shared.tcp_eager_limit_lone, 128 << 10);
    }
}
