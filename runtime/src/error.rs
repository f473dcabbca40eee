//! The error type of every communication call.

use thiserror::Error;

use std::fmt;

use mpr_collectives::{Algorithm, Collective};

use crate::engine::{OpError, ProtocolError};
use crate::{Rank, Tag};

/// Why a communication call failed. Ranks are ranks of the communicator
/// the call was made on.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum Error {
    /// The message is longer than the receive buffer; it was consumed and
    /// the buffer's content is unspecified.
    #[error(
        "message truncated: {message_len} bytes from rank {sender} (tag {tag}) do not fit a {buffer_len}-byte buffer"
    )]
    Truncated {
        /// Sender of the message.
        sender: Rank,
        /// Its tag.
        tag: Tag,
        /// Length of the message in bytes.
        message_len: usize,
        /// Length of the receive buffer in bytes.
        buffer_len: usize,
    },
    /// The peer died (its link was lost without a goodbye, or the launcher
    /// reported it failed).
    #[error("rank {rank} failed (its process died or its link was lost)")]
    PeerFailed {
        /// The failed rank.
        rank: Rank,
    },
    /// The peer finalized while this operation still needed it.
    #[error("rank {rank} finalized while this operation still needed it")]
    PeerFinalized {
        /// The finalized rank.
        rank: Rank,
    },
    /// The peer broke the wire protocol and its link was closed.
    #[error("rank {rank} broke the protocol: {error}")]
    Protocol {
        /// The offending rank.
        rank: Rank,
        /// What it did.
        error: ProtocolError,
    },
    /// A rank outside the communicator was named.
    #[error("rank {rank} is not in this communicator of size {size}")]
    InvalidRank {
        /// The rank given.
        rank: Rank,
        /// Size of the communicator.
        size: u32,
    },
    /// A negative tag was given to a user operation (negative tags are
    /// reserved for the runtime).
    #[error("tag {tag} is invalid: user tags must be >= 0")]
    InvalidTag {
        /// The tag given.
        tag: Tag,
    },
    /// The message length is not a whole number of elements of the
    /// receive type.
    #[error("a {bytes}-byte message is not a whole number of {elem_size}-byte elements")]
    ElementSize {
        /// Length of the message.
        bytes: usize,
        /// Size of one element of the receive type.
        elem_size: usize,
    },
    /// A value could not be serialized for sending.
    #[error("cannot serialize the value to send: {0}")]
    Serialize(postcard::Error),
    /// A received message does not deserialize into the requested type.
    #[error("cannot deserialize the received message: {0}")]
    Deserialize(postcard::Error),
    /// A collective was given a root outside the communicator.
    #[error("root {root} is not a rank of this communicator of size {size}")]
    InvalidRoot {
        /// The root given.
        root: Rank,
        /// Size of the communicator.
        size: u32,
    },
    /// A buffer or count array of a collective has the wrong length (the
    /// other ranks fail too, instead of waiting for this one).
    #[error("the {argument} has {actual} elements where {expected} are needed")]
    BufferLength {
        /// Which argument.
        argument: Argument,
        /// Length the other arguments call for.
        expected: usize,
        /// Length given.
        actual: usize,
    },
    /// A collective's message from `rank` was shorter than this rank's
    /// arguments call for (or `rank` failed its own checks): the ranks'
    /// counts, roots or buffers disagree. A longer message is reported as
    /// [`Error::Truncated`].
    #[error("rank {rank} sent {actual} bytes, {expected} expected: the ranks' arguments disagree")]
    CountMismatch {
        /// The sender.
        rank: Rank,
        /// Bytes this rank expected.
        expected: usize,
        /// Bytes that arrived.
        actual: usize,
    },
    /// The algorithm does not implement this collective.
    #[error("{algorithm} is not an algorithm of {collective}")]
    UnsupportedAlgorithm {
        /// The collective.
        collective: Collective,
        /// The algorithm asked for.
        algorithm: Algorithm,
    },
    /// The root of [`Comm::bcast_obj`](crate::Comm::bcast_obj) passed no value.
    #[error("the root of bcast_obj passed no value")]
    RootValueMissing,
    /// A rank could not do its part of a collective whose ranks copy each
    /// other's buffers directly (shared memory), because a third rank
    /// failed it: its part of the result is missing.
    #[error("rank {rank} could not do its part of the collective (another rank failed it)")]
    PeerAborted {
        /// The rank whose part is missing.
        rank: Rank,
    },
    /// Every communicator context id of this rank is in use.
    #[error("no context ids are left for a new communicator")]
    ContextsExhausted,
}

/// Which argument of a collective call an [`Error::BufferLength`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Argument {
    /// The send buffer.
    SendBuffer,
    /// The receive buffer.
    RecvBuffer,
    /// The per-rank counts (of a v-variant).
    Counts,
    /// The send counts of `alltoallv`.
    SendCounts,
    /// The receive counts of `alltoallv`.
    RecvCounts,
    /// The values of `scatter_obj`.
    Values,
}

impl fmt::Display for Argument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Argument::SendBuffer => "send buffer",
            Argument::RecvBuffer => "receive buffer",
            Argument::Counts => "counts",
            Argument::SendCounts => "send counts",
            Argument::RecvCounts => "receive counts",
            Argument::Values => "values",
        })
    }
}

impl Error {
    /// Converts an engine error, translating world ranks with `to_comm`.
    pub(crate) fn from_op(error: OpError, to_comm: impl Fn(Rank) -> Rank) -> Error {
        match error {
            OpError::Truncated {
                source,
                tag,
                message_len,
                buffer_len,
            } => Error::Truncated {
                sender: to_comm(source),
                tag,
                message_len,
                buffer_len,
            },
            OpError::PeerFailed { rank } => Error::PeerFailed {
                rank: to_comm(rank),
            },
            OpError::PeerFinalized { rank } => Error::PeerFinalized {
                rank: to_comm(rank),
            },
            OpError::ProtocolError { rank, error } => Error::Protocol {
                rank: to_comm(rank),
                error,
            },
            OpError::InvalidRank { rank } => Error::InvalidRank { rank, size: 0 },
        }
    }
}
