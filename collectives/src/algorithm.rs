//! Which algorithms implement which collective, and the default choice by
//! message size and communicator size.
//!
//! # Default selection
//!
//! `bytes` is the size that matters for the collective (see [`select`]),
//! `p` the communicator size. The thresholds start from MPICH's defaults
//! and were retuned from measurements on the 2-core development VM over
//! TCP at 2, 4 and 8 ranks (4 and 8 oversubscribed), forcing each
//! algorithm in turn with `MPR_COLL_<NAME>=<algorithm>` and `mpr-bench`
//! (average latency, 300 iterations). Where the measurements stop (p > 8)
//! MPICH's rules stay, because they describe machines where ranks really
//! run in parallel. Figures below are µs at 8 ranks unless said.
//!
//! | collective | choice | why |
//! |---|---|---|
//! | barrier | linear_tree if `3 <= p <= 8`, else dissemination | measured 2026-11-25, medians of 9 runs, µs (TCP / shared memory): at 4 ranks linear_tree 20.4 / 5.4, binomial 22.4 / 6.4, dissemination 23.3 / 4.6, linear 17.5 / 5.0; at 8 ranks 53 / 19, 62 / 23, 69 / 21, 43 / 14; at 6 ranks 37 / 9.9 against dissemination's 53 / 13.8. On shared cores every hop waits for the receiver to be scheduled, and the dissemination's log p rounds of all ranks at once cost most. linear_tree also lets rank 0 leave first, so a rooted collective that follows (bcast, scatter) finds its receivers still being released rather than waiting for it: 64 B bcast after it 3.4 / 0.77 µs at 4 ranks, after dissemination 11.7 / 2.7, after linear 7.6 / 0.88. At 2 ranks dissemination is one exchange instead of two hops (TCP 4.4 vs 7.4 µs). recursive_doubling (pairwise exchanges, the pattern of Open MPI's choice at 4 ranks), measured 2026-11-26 at 4 ranks over shared memory, medians of 7 runs: 3.96 µs against linear 3.85, dissemination 4.53, linear_tree 4.53 (Open MPI 3.14): no better than what is chosen, kept for forcing |
//! | bcast | linear if `p <= 4`, or `p <= 8` (over shared memory: and `bytes <= 512 KiB`); binomial; scatter_allgather if `p > 8` and `bytes >= 512 KiB` | since large messages of rooted collectives go eagerly over TCP (`MPR_EAGER_LIMIT_EXPECTED`), linear won at every size up to 8 ranks (2026-11-26, ranks bound round robin, medians of 9 alternating runs in both orders, µs, 256 KiB / 1 MiB, binomial → linear: 8 ranks 68 → 52, 518-567 → 362-440; 6 ranks 64 → 49, 479-514 → 336-400; unbound, 8 ranks 75-84 → 66-69 and a tie at 1 MiB, 6 ranks 71 → 85 at 256 KiB, 616 → 666 at 1 MiB). Before that, measured at 4 (oversubscribed) ranks, 4 B: linear 5-11 µs, binomial 8-14 (4 runs of 5 in linear's favour): one round instead of two hops, which on shared cores cost a scheduling delay each. Re-measured 2026-11-25 (medians, µs, binomial → linear): 4 ranks, 32 KiB-1 MiB, shared memory 7.3 → 3.9 ... 216 → 156, TCP 8.8 → 8.0 ... 357 → 321; 8 ranks over shared memory linear won from 4 KiB to 512 KiB (32 KiB: 9.0 → 3.3, 512 KiB: 218 → 161) and tied at 1 MiB, over TCP up to 64 KiB (4 B: 6.7 → 4.1) while binomial won from 128 KiB (1 MiB: 1010 → 1108). Against scatter_allgather, binomial won at every size up to 8 ranks (1 MiB: 690 vs 1332; 4 B: 16 vs 125), the tree sends fewer messages and on shared cores messages cost more than bandwidth; van de Geijn's 2·bytes per rank pays off only with many truly parallel ranks |
//! | scatter, gather | linear if `p <= 8`, else binomial | measured at 8 ranks: linear won at every size (gather 1 MiB: 646 vs 1504; 4 B: 12 vs 33): non-roots send once and are done; the tree's log p rounds win only at larger p |
//! | scatterv, gatherv | linear | non-roots do not know the others' counts, so no tree can route them |
//! | reduce | binomial | log p rounds, rank-ordered combining for any op |
//! | allreduce | recursive_doubling if `bytes <= 16 KiB`, or `bytes <= 64 KiB` and `p <= 4`, or `p = 2`, or fewer elements than ranks; ring if commutative, `bytes >= 512 KiB` and p not a power of two; else rabenseifner | measured: recursive doubling won up to 16 KiB at 8 ranks (81 vs 128 rabenseifner at 8 KiB) and up to 64 KiB at 4; rabenseifner from 32 KiB at 8 ranks (149 vs 177) and at 2 ranks (262 KiB: 94 vs 154 for the ring, which MPICH picks at p = 2); Rabenseifner's fold step for non-powers of two moves whole vectors, which the ring avoids; at p = 2 (both transports, 2026-11-25) recursive doubling beat rabenseifner over shared memory from 64 KiB to 1 MiB (64 KiB: 13.4 vs 20.0 us, 1 MiB: 290-315 vs 317-339) and over TCP at 64 KiB and 256 KiB (22-24 vs 24-30, 81-83 vs 100-106), tied at 128 and 512 KiB and lost 5% at 1 MiB |
//! | allgather(v) | over networks, linear if `p = 4` and `256 KiB <= total <= 2 MiB`, or `p = 3` and `192 KiB <= total <= 1.5 MiB` (blocks of 64 KiB to 512 KiB); bruck if `total < 2 KiB`; recursive_doubling if p is a power of two and `total < 2 MiB`; bruck if `total < 80 KiB`; else ring | linear posts every receive in its one round, so its sends go eagerly up to 4 ranks (`MPR_EAGER_LIMIT_EXPECTED`), which pays from blocks beyond the 64 KiB eager limit. Measured over TCP 2026-11-26 (medians of 7 alternating runs in both orders, µs, blocks of 128 KiB / 512 KiB / 1 MiB, default → linear): 4 ranks bound 177-185 → 173-177, 961-979 → 685-701, 2 295-2 301 → 2 155-2 164; unbound 220-273 → 175-179, 888-915 → 687-702, 2 060-2 116 → 2 148-2 297; 3 ranks 151 → 121, 574 → 580, 1 434 → 1 572; 2 ranks a tie. 1 MiB blocks at 4 ranks keep the ring: runs of that size alone (5, bound) put linear at 2 824-3 329 against the ring's 2 557-2 780 and recursive doubling's 2 452-2 844 (Open MPI 2 026-2 234). At 8 ranks (not expected) linear lost at 64 KiB (510 against 419) and 1 MiB. Before that, measured: Bruck won the smallest blocks (8 ranks, 4 B: 56 vs 73), recursive doubling the middle (8 ranks, 64 KiB blocks: 410 vs 548 ring), the ring the largest (8 ranks, 256 KiB blocks: 1752 vs 1881) |
//! | alltoall | bruck if `block <= 256 B` and `p >= 4`; linear if `p <= 32` or `block <= 32 KiB`; else pairwise | measured at 8 ranks: linear (everything posted at once) won from 4 KiB to 1 MiB blocks (1 MiB: 13 223 vs 14 338 pairwise, 47 358 Bruck), Bruck tied or won below 256 B, and at 4 ranks (2026-11-25, 4-256 B blocks) 16-18 µs against linear's 19-20 over TCP, 3.8-4.2 against 5.2-5.8 over shared memory; pairwise keeps one peer busy at a time, kept for large communicators where posting p messages at once floods the network |
//! | alltoallv | linear if `p <= 32`, else pairwise | as above, without Bruck (counts differ) |
//! | scan, exscan | recursive_doubling | log p rounds, rank-ordered |
//! | reduce_scatter | ring if commutative and (`total >= 64 KiB` or `p <= 2`), else reduce_then_scatter | the ring moves (p-1)/p of the data per rank; small data is latency-bound: at 2 ranks the ring is one exchange (4 B: 4.4 µs, reduce_then_scatter 8.6, Open MPI 4.8), at 4 ranks reduce-then-scatter already wins small sizes (4 B: 32 vs 42 µs) |

use std::fmt;
use std::str::FromStr;

/// A collective operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Collective {
    /// `barrier`.
    Barrier,
    /// `bcast`.
    Bcast,
    /// `scatter`.
    Scatter,
    /// `scatterv`.
    Scatterv,
    /// `gather`.
    Gather,
    /// `gatherv`.
    Gatherv,
    /// `reduce`.
    Reduce,
    /// `allreduce`.
    Allreduce,
    /// `allgather`.
    Allgather,
    /// `allgatherv`.
    Allgatherv,
    /// `alltoall`.
    Alltoall,
    /// `alltoallv`.
    Alltoallv,
    /// `scan`.
    Scan,
    /// `exscan`.
    Exscan,
    /// `reduce_scatter` (the block variant).
    ReduceScatter,
}

impl Collective {
    /// Every collective.
    pub const ALL: [Collective; 15] = [
        Collective::Barrier,
        Collective::Bcast,
        Collective::Scatter,
        Collective::Scatterv,
        Collective::Gather,
        Collective::Gatherv,
        Collective::Reduce,
        Collective::Allreduce,
        Collective::Allgather,
        Collective::Allgatherv,
        Collective::Alltoall,
        Collective::Alltoallv,
        Collective::Scan,
        Collective::Exscan,
        Collective::ReduceScatter,
    ];

    /// Position in [`Collective::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name, as in the method name.
    pub fn name(self) -> &'static str {
        match self {
            Collective::Barrier => "barrier",
            Collective::Bcast => "bcast",
            Collective::Scatter => "scatter",
            Collective::Scatterv => "scatterv",
            Collective::Gather => "gather",
            Collective::Gatherv => "gatherv",
            Collective::Reduce => "reduce",
            Collective::Allreduce => "allreduce",
            Collective::Allgather => "allgather",
            Collective::Allgatherv => "allgatherv",
            Collective::Alltoall => "alltoall",
            Collective::Alltoallv => "alltoallv",
            Collective::Scan => "scan",
            Collective::Exscan => "exscan",
            Collective::ReduceScatter => "reduce_scatter",
        }
    }

    /// The environment variable that forces an algorithm:
    /// `MPR_COLL_<NAME>`, e.g. `MPR_COLL_ALLREDUCE`.
    pub fn env_var(self) -> String {
        format!("MPR_COLL_{}", self.name().to_ascii_uppercase())
    }

    /// The algorithms that implement this collective.
    pub fn algorithms(self) -> &'static [Algorithm] {
        use Algorithm::*;
        match self {
            Collective::Barrier => &[
                Dissemination,
                LinearTree,
                Binomial,
                Linear,
                RecursiveDoubling,
            ],
            Collective::Bcast => &[Binomial, ScatterAllgather, Linear],
            Collective::Scatter | Collective::Gather => &[Binomial, Linear],
            Collective::Scatterv | Collective::Gatherv => &[Linear],
            Collective::Reduce => &[Binomial],
            Collective::Allreduce => &[RecursiveDoubling, Ring, Rabenseifner],
            Collective::Allgather | Collective::Allgatherv => {
                &[RecursiveDoubling, Bruck, Ring, Linear]
            }
            Collective::Alltoall => &[Bruck, Pairwise, Linear],
            Collective::Alltoallv => &[Pairwise, Linear],
            Collective::Scan | Collective::Exscan => &[RecursiveDoubling],
            Collective::ReduceScatter => &[Ring, ReduceThenScatter],
        }
    }

    /// Whether `algorithm` implements this collective for an operation of
    /// this commutativity (rings reduce out of rank order).
    pub fn supports(self, algorithm: Algorithm, commutative: bool) -> bool {
        self.algorithms().contains(&algorithm)
            && (commutative
                || !(algorithm == Algorithm::Ring
                    && matches!(self, Collective::Allreduce | Collective::ReduceScatter)))
    }
}

impl fmt::Display for Collective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A collective algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// Binomial tree (bcast, scatter, gather, reduce; barrier: fan in and
    /// out along it).
    Binomial,
    /// Root sends to (or receives from) every rank directly; allgather and
    /// alltoall: every rank sends to every other in one round (barrier:
    /// rank 0 hears from and releases every rank).
    Linear,
    /// Binomial scatter, then ring allgather (van de Geijn bcast).
    ScatterAllgather,
    /// Recursive doubling (allreduce, allgather, scan; barrier: pairwise
    /// exchanges), with a fold step for sizes that are not powers of two.
    RecursiveDoubling,
    /// Ring (allreduce: reduce-scatter + allgather; allgather;
    /// reduce_scatter). Commutative operations only where it reduces.
    Ring,
    /// Recursive-halving reduce-scatter, then recursive-doubling allgather
    /// (allreduce).
    Rabenseifner,
    /// Bruck's log p algorithm (allgather, alltoall).
    Bruck,
    /// One peer per round (alltoall).
    Pairwise,
    /// Dissemination (barrier).
    Dissemination,
    /// Binomial reduce to rank 0, then binomial scatter (reduce_scatter).
    ReduceThenScatter,
    /// Every rank reports to rank 0 directly, which releases them down a
    /// binomial tree (barrier).
    LinearTree,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 11] = [
        Algorithm::Binomial,
        Algorithm::Linear,
        Algorithm::ScatterAllgather,
        Algorithm::RecursiveDoubling,
        Algorithm::Ring,
        Algorithm::Rabenseifner,
        Algorithm::Bruck,
        Algorithm::Pairwise,
        Algorithm::Dissemination,
        Algorithm::ReduceThenScatter,
        Algorithm::LinearTree,
    ];

    /// Position in [`Algorithm::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name `MPR_COLL_<NAME>` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Binomial => "binomial",
            Algorithm::Linear => "linear",
            Algorithm::ScatterAllgather => "scatter_allgather",
            Algorithm::RecursiveDoubling => "recursive_doubling",
            Algorithm::Ring => "ring",
            Algorithm::Rabenseifner => "rabenseifner",
            Algorithm::Bruck => "bruck",
            Algorithm::Pairwise => "pairwise",
            Algorithm::Dissemination => "dissemination",
            Algorithm::ReduceThenScatter => "reduce_then_scatter",
            Algorithm::LinearTree => "linear_tree",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An algorithm name that is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAlgorithm;

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Parses a name; `-` may stand for `_`, case is ignored.
    fn from_str(text: &str) -> Result<Algorithm, UnknownAlgorithm> {
        let name = text.trim().to_ascii_lowercase().replace('-', "_");
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or(UnknownAlgorithm)
    }
}

/// The default algorithm for `collective` on `p` ranks (see the module
/// table). `bytes` is: the whole buffer for bcast, reduce, allreduce and
/// scan; one rank's block for scatter, gather and alltoall; the whole
/// result for allgather(v) and reduce_scatter's input; ignored otherwise.
/// `count` is the number of elements of the reduced vector (allreduce).
/// `shared_memory` says whether all `p` ranks share memory (it must be the
/// same on every rank).
pub fn select(
    collective: Collective,
    p: u32,
    bytes: usize,
    count: usize,
    commutative: bool,
    shared_memory: bool,
) -> Algorithm {
    const KIB: usize = 1024;
    let pof2 = p.is_power_of_two();
    match collective {
        Collective::Barrier if (3..=8).contains(&p) => Algorithm::LinearTree,
        Collective::Barrier => Algorithm::Dissemination,
        Collective::Bcast if p > 8 && bytes >= 512 * KIB => Algorithm::ScatterAllgather,
        Collective::Bcast if p <= 4 => Algorithm::Linear,
        Collective::Bcast if p <= 8 && (!shared_memory || bytes <= 512 * KIB) => Algorithm::Linear,
        Collective::Bcast => Algorithm::Binomial,
        Collective::Scatter | Collective::Gather if p <= 8 => Algorithm::Linear,
        Collective::Scatter | Collective::Gather | Collective::Reduce => Algorithm::Binomial,
        Collective::Scatterv | Collective::Gatherv => Algorithm::Linear,
        Collective::Allreduce
            if bytes <= 16 * KIB
                || p == 2
                || (p <= 4 && bytes <= 64 * KIB)
                || count < p as usize =>
        {
            Algorithm::RecursiveDoubling
        }
        Collective::Allreduce if commutative && !pof2 && bytes >= 512 * KIB => Algorithm::Ring,
        Collective::Allreduce => Algorithm::Rabenseifner,
        Collective::Allgather | Collective::Allgatherv
            if !shared_memory
                && ((p == 4 && (256..=2048).contains(&(bytes / KIB)))
                    || (p == 3 && (192..=1536).contains(&(bytes / KIB)))) =>
        {
            Algorithm::Linear
        }
        Collective::Allgather | Collective::Allgatherv if bytes < 2 * KIB => Algorithm::Bruck,
        Collective::Allgather | Collective::Allgatherv if pof2 && bytes < 2048 * KIB => {
            Algorithm::RecursiveDoubling
        }
        Collective::Allgather | Collective::Allgatherv if bytes < 80 * KIB => Algorithm::Bruck,
        Collective::Allgather | Collective::Allgatherv => Algorithm::Ring,
        Collective::Alltoall if bytes <= 256 && p >= 4 => Algorithm::Bruck,
        Collective::Alltoall if p <= 32 || bytes <= 32 * KIB => Algorithm::Linear,
        Collective::Alltoall => Algorithm::Pairwise,
        Collective::Alltoallv if p <= 32 => Algorithm::Linear,
        Collective::Alltoallv => Algorithm::Pairwise,
        Collective::Scan | Collective::Exscan => Algorithm::RecursiveDoubling,
        Collective::ReduceScatter if commutative && (bytes >= 64 * KIB || p <= 2) => {
            Algorithm::Ring
        }
        Collective::ReduceScatter => Algorithm::ReduceThenScatter,
    }
}

/// Elements per pipeline piece of a reduce of `count` elements of
/// `element` bytes on `p` ranks, or 0 for no pipeline (see
/// [`reduce`](crate::reduce)); `shared_memory` says whether all `p` ranks
/// share memory (asked only when the size would pipeline).
///
/// Pieces of [`REDUCE_PIECE`] bytes from [`REDUCE_PIPELINE_FROM`] on, over
/// networks only. Measured 2026-11-25 (µs, 128 KiB / 256 KiB / 512 KiB,
/// best of 3 runs, unpipelined → pipelined): TCP at 4 ranks 56 → 40,
/// 108 → 81, 217 → 187, at 2 ranks 31 → 25, 44 → 38, 81 → 79; shared
/// memory at 2 ranks 11.0 → 17.1, 20.8 → 34.1, 73 → 81: there a whole
/// vector moves by single copy faster than pieces step by step. At 1 MiB
/// over TCP (4 alternating runs): 8 ranks 905-1116 → 777-810, 4 ranks a
/// tie (415-520 against 419-533).
///
/// 2 ranks were pipelined only up to 512 KiB until the root took its
/// pieces in one streamed step (2026-11-26, medians of 5 alternating
/// runs, TCP, 512 KiB / 1 MiB): pieces the root had not yet asked for
/// waited as unexpected messages and were copied twice (99.6 / 240 µs;
/// 248 unpipelined at 1 MiB);
/// now every piece is received in place and combined as it arrives, the
/// first child's pieces straight into the result (82.2 / 175 µs; Open
/// MPI: 86 / 232). Pieces of 16, 32 and 64 KiB then tie at 2 ranks.
///
/// Pieces grew from 32 to 48 KiB once a wait that moves TCP bytes stopped
/// yielding the core (2026-11-26, TCP, ranks bound, medians of alternating
/// runs in both orders, µs, 128 KiB / 512 KiB / 1 MiB, 32 → 48 KiB):
/// 4 ranks 56.3 → 52.9, 235 → 218, 519 → 480 (10 runs each); 8 ranks
/// 131 → 117, 408 → 389, a tie at 1 MiB (816 / 830); 2 ranks 29.8 → 27.6,
/// 84.9 → 83.0, 169 → 165. 60 KiB tied with 48; 64 KiB and more lost
/// badly (4 ranks, 1 MiB: 477 → 712 with 64 KiB, 897 with 128 KiB): a
/// piece with its header no longer fits the 64 KiB eager limit and goes
/// by rendezvous.
pub fn reduce_segment(
    p: u32,
    count: usize,
    element: usize,
    shared_memory: impl FnOnce() -> bool,
) -> usize {
    let bytes = count.saturating_mul(element);

    if p < 2 || element == 0 || bytes < REDUCE_PIPELINE_FROM || shared_memory() {
        return 0;
    }
    (REDUCE_PIECE / element).max(1)
}

/// Size from which a reduce runs as a pipeline of pieces.
pub const REDUCE_PIPELINE_FROM: usize = 128 << 10;
/// Bytes per piece of a pipelined reduce.
pub const REDUCE_PIECE: usize = 48 << 10;
