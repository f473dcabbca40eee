//! Errors: [`ProtocolError`] for what a peer sent (it closes that link), and
//! [`OpError`] for why one operation failed.

use std::fmt;

use super::frame::Kind;
use crate::{Rank, Tag};

/// A peer broke the wire protocol; the transport closes that link and calls
/// [`Engine::peer_failed`](super::Engine::peer_failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The header's version byte is not the one this build speaks.
    #[error("unsupported frame version {0}")]
    BadVersion(u8),
    /// The header's kind byte names no known frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The header carries flag bits that are unknown or not allowed for its kind.
    #[error("flags {flags:#x} are not allowed on a {kind:?} frame")]
    BadFlags {
        /// The frame kind.
        kind: Kind,
        /// The offending flags.
        flags: u16,
    },
    /// The header announces a length over the hard cap for its kind.
    #[error("{kind:?} frame announces {len} bytes, over the cap of {max}")]
    TooLong {
        /// The frame kind.
        kind: Kind,
        /// The announced length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// A frame's source field is not the rank of the peer it came from.
    #[error("rank {peer} sent a frame claiming to come from rank {claimed}")]
    SourceMismatch {
        /// The peer of the link.
        peer: Rank,
        /// The source field of the frame.
        claimed: u32,
    },
    /// A frame kind that has no business after the handshake reached the engine.
    #[error("rank {peer} sent an unexpected {kind:?} frame")]
    UnexpectedKind {
        /// The peer of the link.
        peer: Rank,
        /// The frame kind.
        kind: Kind,
    },
    /// An EAGER frame is longer than the eager limit.
    #[error("rank {peer} sent a {len}-byte eager frame, over the eager limit of {limit}")]
    EagerTooLong {
        /// The peer of the link.
        peer: Rank,
        /// The payload length.
        len: u64,
        /// The eager limit.
        limit: usize,
    },
    /// The peer sent more EAGER/RTS bytes than its credit window allows.
    #[error("rank {peer} used {used} bytes of credit, over the window of {window}")]
    CreditExceeded {
        /// The peer of the link.
        peer: Rank,
        /// Credit in use with this frame.
        used: u64,
        /// The credit window.
        window: usize,
    },
    /// The peer returned more credit than this rank had used.
    #[error("rank {peer} returned {returned} bytes of credit that were never used")]
    CreditOverflow {
        /// The peer of the link.
        peer: Rank,
        /// The amount in the CREDIT frame.
        returned: u64,
    },
    /// A CTS or ACK names a send that is unknown or not waiting for it.
    #[error("rank {peer} sent a {kind:?} for unknown send {id:#x}")]
    UnknownSend {
        /// The peer of the link.
        peer: Rank,
        /// CTS or ACK.
        kind: Kind,
        /// The send id in the frame.
        id: u64,
    },
    /// A DATA frame names a receive that is unknown or not waiting for data.
    #[error("rank {peer} sent DATA for unknown receive {id:#x}")]
    UnknownRecv {
        /// The peer of the link.
        peer: Rank,
        /// The receive id in the frame.
        id: u64,
    },
    /// A DATA frame's length differs from the length its RTS announced.
    #[error("rank {peer} sent {got} bytes of DATA for a {expected}-byte message")]
    DataLength {
        /// The peer of the link.
        peer: Rank,
        /// The length announced by the RTS.
        expected: u64,
        /// The length of the DATA frame.
        got: u64,
    },
    /// The memory a PULL offered could not be read.
    #[error("rank {peer} offered memory that cannot be read (errno {errno})")]
    PullFailed {
        /// The peer of the link.
        peer: Rank,
        /// The error of `process_vm_readv`.
        errno: i32,
    },
    /// A frame arrived after the peer's GOODBYE.
    #[error("rank {peer} sent a frame after GOODBYE")]
    AfterGoodbye {
        /// The peer of the link.
        peer: Rank,
    },
}

/// Why an operation failed.
///
/// `Display` and `Error` are written by hand: thiserror would take the
/// `source` field of `Truncated` (MPI's word for the sender) as the error's
/// cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// The message is longer than the receive buffer; it was consumed, no data was written.
    Truncated {
        /// Sender of the message.
        source: Rank,
        /// Tag of the message.
        tag: Tag,
        /// Length of the message.
        message_len: usize,
        /// Length of the receive buffer.
        buffer_len: usize,
    },
    /// The link to the peer was lost without GOODBYE.
    PeerFailed {
        /// The failed peer.
        rank: Rank,
    },
    /// The peer said GOODBYE (finalized) while this operation still needed it.
    PeerFinalized {
        /// The finalized peer.
        rank: Rank,
    },
    /// The link to the peer was closed because it broke the protocol.
    ProtocolError {
        /// The offending peer.
        rank: Rank,
        /// What it did.
        error: ProtocolError,
    },
    /// The operation names a rank outside the world.
    InvalidRank {
        /// The rank given.
        rank: Rank,
    },
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Truncated {
                source,
                tag,
                message_len,
                buffer_len,
            } => write!(
                f,
                "message from rank {source} with tag {tag} has {message_len} bytes, \
                 the receive buffer only {buffer_len}"
            ),
            OpError::PeerFailed { rank } => write!(f, "rank {rank} failed"),
            OpError::PeerFinalized { rank } => {
                write!(
                    f,
                    "rank {rank} finalized while an operation still needed it"
                )
            }
            OpError::ProtocolError { rank, error } => {
                write!(f, "rank {rank} broke the protocol: {error}")
            }
            OpError::InvalidRank { rank } => write!(f, "rank {rank} is not in the world"),
        }
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpError::ProtocolError { error, .. } => Some(error),
            _ => None,
        }
    }
}
