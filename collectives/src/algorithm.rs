//! Which algorithms implement which collective, and the default choice by
//! message size and communicator size.
//!
//! # Default selection
//!
//! `bytes` is the size that matters for the collective (see [`select`]),
//! `p` the communicator size. The thresholds are MPICH's defaults (its CVAR
//! values), a sane start on TCP; they are to be retuned from measurements
//! on this machine (`mpr-bench`, `MPR_COLL_<NAME>=<algorithm>` forcing each).
//!
//! | collective | choice | why |
//! |---|---|---|
//! | barrier | dissemination | ⌈log₂ p⌉ rounds for every p, no root |
//! | bcast | binomial if `bytes < 12 KiB` or `p < 8`, else scatter_allgather | the tree's log p latency wins small; van de Geijn moves ~2·bytes per rank instead of bytes·log p |
//! | scatter, gather | binomial | log p rounds; total bytes moved the same as linear |
//! | scatterv, gatherv | linear | non-roots do not know the others' counts, so no tree can route them |
//! | reduce | binomial | log p rounds, rank-ordered combining for any op |
//! | allreduce | recursive_doubling if `bytes <= 2 KiB` or fewer elements than ranks; ring if commutative, `bytes >= 512 KiB` and p not a power of two; else rabenseifner (ring for a commutative op when p is 2) | latency-bound small messages need log p rounds; large ones need the 2·bytes bandwidth term of reduce-scatter + allgather; Rabenseifner's fold step for non-powers of two moves whole vectors, which the ring avoids |
//! | allgather(v) | recursive_doubling if `total < 512 KiB` and p a power of two; bruck if `total < 80 KiB`; else ring | log p rounds when latency dominates (Bruck for any p); the ring only talks to neighbours, best for bandwidth |
//! | alltoall | bruck if `block <= 256 B` and `p >= 8`; linear if `block <= 32 KiB`; else pairwise | Bruck trades bandwidth for log p rounds; posting everything at once overlaps medium messages; pairwise keeps one peer at a time busy for large ones |
//! | alltoallv | linear if `p <= 32`, else pairwise | as above, without Bruck (counts differ) |
//! | scan, exscan | recursive_doubling | log p rounds, rank-ordered |
//! | reduce_scatter | ring if commutative and `total >= 64 KiB`, else reduce_then_scatter | the ring moves (p-1)/p of the data per rank; small data is latency-bound |

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
            Collective::Barrier => &[Dissemination],
            Collective::Bcast => &[Binomial, ScatterAllgather],
            Collective::Scatter | Collective::Gather => &[Binomial, Linear],
            Collective::Scatterv | Collective::Gatherv => &[Linear],
            Collective::Reduce => &[Binomial],
            Collective::Allreduce => &[RecursiveDoubling, Ring, Rabenseifner],
            Collective::Allgather | Collective::Allgatherv => &[RecursiveDoubling, Bruck, Ring],
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
    /// Binomial tree (bcast, scatter, gather, reduce).
    Binomial,
    /// Root sends to (or receives from) every rank directly.
    Linear,
    /// Binomial scatter, then ring allgather (van de Geijn bcast).
    ScatterAllgather,
    /// Recursive doubling (allreduce, allgather, scan), with a fold step
    /// for sizes that are not powers of two.
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
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 10] = [
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
pub fn select(
    collective: Collective,
    p: u32,
    bytes: usize,
    count: usize,
    commutative: bool,
) -> Algorithm {
    const KIB: usize = 1024;
    let pof2 = p.is_power_of_two();
    match collective {
        Collective::Barrier => Algorithm::Dissemination,
        Collective::Bcast if bytes < 12 * KIB || p < 8 => Algorithm::Binomial,
        Collective::Bcast => Algorithm::ScatterAllgather,
        Collective::Scatter | Collective::Gather | Collective::Reduce => Algorithm::Binomial,
        Collective::Scatterv | Collective::Gatherv => Algorithm::Linear,
        Collective::Allreduce if bytes <= 2 * KIB || count < p as usize => {
            Algorithm::RecursiveDoubling
        }
        Collective::Allreduce if commutative && (p == 2 || (!pof2 && bytes >= 512 * KIB)) => {
            Algorithm::Ring
        }
        Collective::Allreduce => Algorithm::Rabenseifner,
        Collective::Allgather | Collective::Allgatherv if pof2 && bytes < 512 * KIB => {
            Algorithm::RecursiveDoubling
        }
        Collective::Allgather | Collective::Allgatherv if bytes < 80 * KIB => Algorithm::Bruck,
        Collective::Allgather | Collective::Allgatherv => Algorithm::Ring,
        Collective::Alltoall if bytes <= 256 && p >= 8 => Algorithm::Bruck,
        Collective::Alltoall if bytes <= 32 * KIB => Algorithm::Linear,
        Collective::Alltoall => Algorithm::Pairwise,
        Collective::Alltoallv if p <= 32 => Algorithm::Linear,
        Collective::Alltoallv => Algorithm::Pairwise,
        Collective::Scan | Collective::Exscan => Algorithm::RecursiveDoubling,
        Collective::ReduceScatter if commutative && bytes >= 64 * KIB => Algorithm::Ring,
        Collective::ReduceScatter => Algorithm::ReduceThenScatter,
    }
}
