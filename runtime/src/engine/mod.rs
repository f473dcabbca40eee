//! The sans-IO messaging engine: matching, eager and rendezvous protocols,
//! flow control and the frame codec for one rank talking to its peers.
//!
//! The engine owns no socket, clock or thread. The API layer feeds it
//! operations (`post_send`, `post_recv`, probes) and takes completions; the
//! transport, per peer link and after its own handshake, writes what
//! [`Engine::transmit_slices`] hands out (then reports
//! [`Engine::transmitted`]) and reads into [`Engine::recv_target`] (then
//! reports [`Engine::received`]). Everything is deterministic, so a whole
//! world of engines can be simulated in a test (see `sim.rs`).
//!
//! # Protocols
//!
//! * **Eager** (length ≤ `eager_limit` and the eager credit cost fits; a
//!   transport may lower the limit per peer, with a higher one for a lone
//!   send that finds nothing queued to that peer and a higher one still
//!   for a [`SendMode::Expected`] send, whose receiver most likely waits
//!   for it, see [`Engine::limit_eager`]): a
//!   payload under `eager_by_reference_min` (4 KiB) is copied into an engine-owned frame at
//!   `post_send` and a standard send completes at once; a larger one is
//!   written from the user's buffer and the send completes once the
//!   transport has taken its last byte (one copy fewer). A synchronous send
//!   completes when the receiver's ACK says it matched. On the receiving
//!   side, a frame whose payload has not all come is matched when its
//!   header arrives if a posted receive is waiting and more than
//!   `direct_read_min` bytes are missing: the rest then lands straight in
//!   the user's buffer, as DATA does (a short buffer fails with `Truncated`
//!   and the payload is dropped).
//! * **Rendezvous** (larger, or eager credit exhausted): RTS, matched like
//!   any message; the receiver answers CTS (or CTS+DISCARD when its buffer
//!   is short: the receive fails with `Truncated`, the send succeeds, no data
//!   moves); the sender queues one DATA frame whose payload is the user's
//!   buffer (zero copy) and completes when its last byte is written; the
//!   receiver completes when its last byte lands, read straight from the
//!   socket into the user's buffer when more than `direct_read_min` bytes
//!   remain.
//! * **Inline** ([`Engine::inline_send`]): a standard-mode message under
//!   `eager_by_reference_min` to a peer with nothing queued skips the
//!   request table and the queue; the transport writes its EAGER frame at
//!   once (shared memory does, when its ring has room) and the send is
//!   complete. See `inline.rs`.
//! * **Pull** (rendezvous between peers on one host that may read each
//!   other's memory; a transport enables it per peer with
//!   [`Engine::offer_pulls`] and [`Engine::pull_from`]): PULL is an RTS
//!   that carries the address of the sender's buffer. The receiver that
//!   matches it copies the message from there (`process_vm_readv`) and
//!   answers ACK, on which the send completes; a short buffer fails the
//!   receive with `Truncated` and is ACKed all the same. No CTS/DATA round
//!   trip: see `pull.rs`.
//! * **Self-sends** match locally. Small ones are buffered like eager
//!   messages (bounded by a credit window of their own) and complete at
//!   once; large or synchronous ones complete when matched.
//! * **Flow control**: see `flow.rs`. Sends to a peer that lacks even RTS
//!   credit wait in a per-peer FIFO, and later sends queue behind them, so
//!   order is kept. Known limit: a receiver that leaves more than
//!   `credit_window / 64` messages from one peer unmatched while waiting for
//!   a later one deadlocks (65 536 messages with the defaults). All ranks of
//!   a job must use the same configuration.
//!
//! Matching is MPI's (see `matching.rs`): (context, source, tag), wildcards
//! on the receive side, non-overtaking per sender and context, eager and
//! rendezvous alike because RTS travels in the same stream as EAGER.
//!
//! # Failures
//!
//! [`Engine::peer_failed`] (link lost) fails every pending operation that
//! needs that peer with [`OpError::PeerFailed`] (or
//! [`OpError::ProtocolError`] if the link died of one): sends to it,
//! receives naming it, rendezvous receives matched to one of its RTS.
//! Messages it sent that are already buffered can still be received. A
//! GOODBYE does the same with [`OpError::PeerFinalized`] for operations that
//! could only complete with its help, but lets queued DATA drain.
//! ANY_SOURCE receives fail only once *every* remote peer is gone: while
//! any peer lives it may still send a match, and failing them on the first
//! death would break programs that tolerate a lost peer. (Self-sends could
//! still match then, but a rank alone waiting on ANY_SOURCE is almost always
//! a hang.) A singleton world has no remote peers and never fails them.
//!
//! # Shape changes from the first sketch
//!
//! * [`OpError::PeerFinalized`] and [`OpError::InvalidRank`] were added so a
//!   peer's GOODBYE or a bad rank completes operations instead of leaving
//!   them pending forever or panicking.
//! * [`Engine::unexpected_bytes`] exposes the buffered-bytes bound that flow
//!   control guarantees, for tests and diagnostics.

mod arrival;
mod error;
mod flow;
pub mod frame;
mod inline;
mod matching;
mod protocol;
mod pull;
mod request;
mod rx;
mod tx;

#[cfg(test)]
mod arrival_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod pull_tests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;

pub use error::{OpError, ProtocolError};
pub(crate) use matching::FxHasher;
pub use pull::{PeerMemory, Puller};

use crate::buffer::{RawRecv, RawSend};
use crate::{ContextId, Rank, Tag};
use flow::Credit;
use matching::{PostedQueue, UnexpectedQueue};
use protocol::Message;
use request::{RecvReq, RecvState, Request, Requests, SendReq, SendState};
use rx::Rx;
use tx::{PeerSet, TxQueue};

/// The slices [`Engine::transmit_slices`] hands out: on the stack up to
/// eight (a transport takes them once per write, and a heap list cost an
/// allocation per message).
pub type Slices<'a> = smallvec::SmallVec<[IoSlice<'a>; 8]>;

/// Tunables of the engine; every rank of a job must use the same values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Largest message sent eagerly (default 64 KiB; capped at
    /// [`frame::MAX_EAGER_LEN`]).
    pub eager_limit: usize,
    /// Largest *lone* message sent eagerly, one that finds nothing queued
    /// or in flight to its peer (default 256 KiB; raised to at least
    /// `eager_limit`, capped at [`frame::MAX_EAGER_LEN`]): it skips the
    /// rendezvous round trip, while a stream keeps `eager_limit`.
    /// Receivers accept eager frames up to this size. Measured over TCP
    /// (2026-11-26, 2 ranks, medians of 5 alternating runs, µs, 128 KiB /
    /// 256 KiB, lone limit 64 KiB → 256 KiB): latency 31.8 → 24.9, 47.0 →
    /// 39.1; alltoall 48.8 → 36.1, 81.6 → 77.9; bcast 38.0 → 27.6, 47.7 →
    /// 39.2.
    pub eager_limit_lone: usize,
    /// Largest [`SendMode::Expected`] message sent eagerly (default 1 MiB;
    /// raised to at least `eager_limit_lone`, capped at
    /// [`frame::MAX_EAGER_LEN`]): its receiver most likely waits for it,
    /// so the payload lands in place without the rendezvous round trip,
    /// which costs most where the receiver must be scheduled to answer.
    /// Receivers accept eager frames up to this size. Measured over TCP
    /// (2026-11-26, 8 ranks bound to 2 cores, medians of 7 alternating
    /// runs, µs, 256 KiB / 1 MiB, rendezvous above 64 KiB → eager up to
    /// 1 MiB): bcast 263 → 154, 1 373 → 699; scatter 222 → 50, 1 265 →
    /// 287; gather 170 → 157, 1 017 → 736. At 4 ranks bcast 91 → 37,
    /// 518 → 235. At 2 ranks (lone limit 256 KiB) 1 MiB bcast and gather
    /// gain 4-8%.
    pub eager_limit_expected: usize,
    /// Credit window per peer in bytes (default 4 MiB): the most a peer can
    /// make this rank buffer. Raised to at least
    /// `4 * (eager_limit_expected + 64)`.
    pub credit_window: usize,
    /// Rendezvous payloads with more than this many bytes left are read
    /// straight into the user's buffer (default 16 KiB).
    pub direct_read_min: usize,
    /// Standard-mode eager payloads of at least this many bytes are written
    /// from the user's buffer instead of being copied (default 4 KiB).
    pub eager_by_reference_min: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            eager_limit: 64 << 10,
            eager_limit_lone: 256 << 10,
            eager_limit_expected: 1 << 20,
            credit_window: 4 << 20,
            direct_read_min: 16 << 10,
            eager_by_reference_min: 4 << 10,
        }
    }
}

/// Identifies a posted operation until its completion is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Which senders a receive accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Any sender (`MPI_ANY_SOURCE`).
    Any,
    /// Only this world rank.
    Rank(Rank),
}

/// Which tags a receive accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagMatch {
    /// Any tag (`MPI_ANY_TAG`).
    Any,
    /// Only this tag.
    Tag(Tag),
}

/// How a send completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendMode {
    /// When the buffer may be reused (possibly before the message is matched).
    Standard,
    /// Only once the receiver has matched the message (`MPI_Ssend`).
    Synchronous,
    /// As [`SendMode::Standard`], for a message whose receiver has most
    /// likely posted its receive already (a rooted collective's receivers
    /// post theirs as they enter the call): it goes eagerly up to the
    /// peer's *expected* limit ([`EngineConfig::eager_limit_expected`]),
    /// since it will rarely wait unmatched and be copied twice.
    Expected,
}

/// An owned send buffer. `bytes` must return the same slice on every call
/// until the buffer is handed back in a [`Completion`].
pub trait SendBuf: Send + fmt::Debug {
    /// The bytes to send.
    fn bytes(&self) -> &[u8];
}

/// An owned receive buffer. `bytes_mut` must return the same slice on every
/// call until the buffer is handed back in a [`Completion`].
pub trait RecvBuf: Send + fmt::Debug {
    /// Where the message lands; its length is the buffer size.
    fn bytes_mut(&mut self) -> &mut [u8];
}

/// A send buffer as the engine holds it: a view of memory that its owner
/// keeps alive until the completion (no allocation per message), or an
/// owned buffer.
#[derive(Debug)]
pub enum SendData {
    /// A view of memory the caller keeps alive until the completion.
    View(RawSend),
    /// A view (as `View`) of memory its owner writes again soon after the
    /// send: transports copy it out instead of letting the receiver read
    /// it in place (see [`SendData::is_transient`]).
    Transient(RawSend),
    /// A view (as `View`) sent by a collective to a receiver that is not
    /// taking messages from many ranks at once: a receiver that can read
    /// this process's memory may copy it in place at any size, beyond the
    /// point-to-point limit (`MPR_SHM_PULL_MAX`), since the receivers of a
    /// collective copy in parallel (see [`SendData::pulls_at_any_size`]).
    Spread(RawSend),
    /// A buffer the engine owns until the completion.
    Owned(Box<dyn SendBuf>),
}

impl SendData {
    /// The bytes to send.
    pub fn bytes(&self) -> &[u8] {
        match self {
            SendData::View(view) | SendData::Transient(view) | SendData::Spread(view) => {
                view.bytes()
            }
            SendData::Owned(buf) => buf.bytes(),
        }
    }

    /// Whether the payload must not be left for the receiver to read in
    /// place: the transmit queue then offers it in pieces too short for
    /// the shared-memory single copy.
    pub fn is_transient(&self) -> bool {
        matches!(self, SendData::Transient(_))
    }

    /// Whether a receiver that can read this process's memory may copy the
    /// payload in place whatever its size. Measured 2026-11-26 (8 ranks on
    /// 2 cores, shared memory, no cooperative copy; medians of 5
    /// alternating runs, µs, 1 MiB, pulls limited to 512 KiB → unlimited):
    /// bcast (linear) 445 → 211, binomial 504 → 304; alltoall 7 748 →
    /// 6 185. A gather's root, which would copy every block alone, kept
    /// the limit: 697 → 1 019 at 8 ranks and 364 → 540 at 4 without it.
    pub fn pulls_at_any_size(&self) -> bool {
        matches!(self, SendData::Spread(_))
    }
}

impl<B: SendBuf + 'static> From<Box<B>> for SendData {
    fn from(buf: Box<B>) -> SendData {
        SendData::Owned(buf)
    }
}

impl<B: RecvBuf + 'static> From<Box<B>> for RecvData {
    fn from(buf: Box<B>) -> RecvData {
        RecvData::Owned(buf)
    }
}

/// A receive buffer as the engine holds it; see [`SendData`].
#[derive(Debug)]
pub enum RecvData {
    /// A view of memory the caller keeps alive until the completion.
    View(RawRecv),
    /// A buffer the engine owns until the completion.
    Owned(Box<dyn RecvBuf>),
}

impl RecvData {
    /// Where the message lands; its length is the buffer size.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            RecvData::View(view) => view.bytes_mut(),
            RecvData::Owned(buf) => buf.bytes_mut(),
        }
    }
}

impl SendBuf for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl SendBuf for Box<[u8]> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl RecvBuf for Vec<u8> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl RecvBuf for Box<[u8]> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// What a completed operation matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Receive: the sender. Send: this rank.
    pub source: Rank,
    /// The message tag.
    pub tag: Tag,
    /// Length of the message in bytes (the receive buffer may be longer).
    pub len: usize,
}

/// A finished operation, with its buffer handed back.
#[derive(Debug)]
pub struct Completion {
    /// The operation.
    pub request: RequestId,
    /// Its outcome.
    pub result: Result<Status, OpError>,
    /// The send buffer, for a send.
    pub send_buf: Option<SendData>,
    /// The receive buffer, for a receive.
    pub recv_buf: Option<RecvData>,
}

/// A message taken out of matching by [`Engine::improbe`]. Pass it to
/// [`Engine::post_mrecv`]: dropping it loses the message, and a rendezvous
/// sender then waits forever. The message counts as matched from the
/// `improbe` on (its flow-control credit goes back to the sender then).
#[must_use = "a matched message must be received with post_mrecv"]
pub struct MessageHandle(Message);

impl fmt::Debug for MessageHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageHandle")
            .field("source", &self.0.source)
            .field("tag", &self.0.tag)
            .field("len", &self.0.len)
            .finish()
    }
}

/// State of the link to one peer.
struct Peer {
    tx: TxQueue,
    rx: Rx,
    credit: Credit,
    /// Sends waiting for credit, in order.
    waiting: VecDeque<RequestId>,
    /// Eager payload bytes from this peer in the unexpected queue.
    unexpected_bytes: usize,
    /// Anything was sent to or received from this peer.
    traffic: bool,
    /// A message (EAGER, RTS or PULL) came from this peer since this rank
    /// last sent it an eager message above `eager_limit`: only then may a
    /// lone send go eager up to `eager_limit_lone`. A one-way stream, whose
    /// queue is empty again as soon as each frame is written, thus keeps
    /// the stream limit after its first message (measured over TCP, 2
    /// ranks, 128 KiB / 256 KiB streaming bandwidth: without this rule
    /// 3.65 → 3.02 and 3.26 → 2.96 GB/s when the lone limit went from
    /// 64 KiB to 256 KiB).
    heard_since_large_eager: bool,
    /// The link is lost.
    failed: bool,
    goodbye_received: bool,
    goodbye_sent: bool,
    /// Set once the peer failed or finalized: the error for operations that need it.
    gone: Option<OpError>,
    /// Largest message sent eagerly to this peer (at most the config's).
    eager_limit: usize,
    /// The same for a lone message: one that finds nothing queued or in
    /// flight to this peer (at least `eager_limit`, at most the config's).
    eager_limit_lone: usize,
    /// The same for a [`SendMode::Expected`] message (at least
    /// `eager_limit_lone`, at most the config's).
    eager_limit_expected: usize,
    /// Rendezvous sends of at most this many bytes go by pull (0: none).
    pull_max: usize,
    /// The same for a lone send: nothing queued to the peer and no pull
    /// in flight (at least `pull_max`).
    pull_max_lone: usize,
    /// Sends to this peer waiting for the ACK of their PULL.
    pulls_in_flight: usize,
    /// This rank may read the peer's memory (it accepts PULL frames).
    memory: Option<std::sync::Arc<dyn Puller>>,
}

/// The messaging engine of one rank; see the module doc.
pub struct Engine {
    rank: Rank,
    size: u32,
    config: EngineConfig,
    requests: Requests,
    posted: PostedQueue<RequestId>,
    unexpected: UnexpectedQueue<Message>,
    /// Large unexpected eager payloads (see `arrival.rs`).
    arrivals: arrival::Arrivals,
    peers: Vec<Peer>,
    /// Peers with bytes to transmit.
    dirty: PeerSet,
    /// Remote peers gone (failed or finalized).
    gone: u32,
    /// Error of the last peer to go, for ANY_SOURCE receives.
    last_gone: Option<OpError>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("pending", &self.requests.pending())
            .field("posted", &self.posted.len())
            .field("unexpected", &self.unexpected.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine for world rank `rank` of `size`. Adjusts `config` as
    /// documented on [`EngineConfig`]. Panics if `rank >= size`.
    pub fn new(rank: Rank, size: u32, mut config: EngineConfig) -> Engine {
        assert!(rank.0 < size, "rank {rank} outside a world of {size}");
        config.eager_limit = config.eager_limit.min(frame::MAX_EAGER_LEN as usize);
        config.eager_limit_lone = config
            .eager_limit_lone
            .clamp(config.eager_limit, frame::MAX_EAGER_LEN as usize);
        config.eager_limit_expected = config
            .eager_limit_expected
            .clamp(config.eager_limit_lone, frame::MAX_EAGER_LEN as usize);
        config.credit_window = config
            .credit_window
            .max(4 * (config.eager_limit_expected + flow::FRAME_COST));
        let peers = (0..size)
            .map(|_| Peer {
                tx: TxQueue::default(),
                rx: Rx::default(),
                credit: Credit::new(config.credit_window),
                waiting: VecDeque::new(),
                unexpected_bytes: 0,
                traffic: false,
                failed: false,
                goodbye_received: false,
                goodbye_sent: false,
                gone: None,
                eager_limit: config.eager_limit,
                eager_limit_lone: config.eager_limit_lone,
                eager_limit_expected: config.eager_limit_expected,
                heard_since_large_eager: true,
                pull_max: 0,
                pull_max_lone: 0,
                pulls_in_flight: 0,
                memory: None,
            })
            .collect();
        Engine {
            rank,
            size,
            config,
            requests: Requests::default(),
            posted: PostedQueue::default(),
            unexpected: UnexpectedQueue::default(),
            arrivals: arrival::Arrivals::default(),
            peers,
            dirty: PeerSet::new(size as usize),
            gone: 0,
            last_gone: None,
        }
    }

    /// This rank.
    pub fn rank(&self) -> Rank {
        self.rank
    }

    /// The world size.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The configuration in force (after adjustment).
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Starts sending `buf` to `dest`. A standard eager send (and a small
    /// self-send) is complete on return; see the module doc for the rest.
    pub fn post_send(
        &mut self,
        dest: Rank,
        context: ContextId,
        tag: Tag,
        buf: SendData,
        mode: SendMode,
    ) -> RequestId {
        let len = buf.bytes().len();
        let send = SendReq {
            dest,
            context,
            tag,
            len,
            sync: mode == SendMode::Synchronous,
            expected: mode == SendMode::Expected,
            buf: Some(buf),
            state: SendState::WaitCredit,
        };
        let id = self.requests.insert(Request::Send(send));
        if dest.0 >= self.size {
            self.send_done(id, Err(OpError::InvalidRank { rank: dest }), None);
        } else if dest == self.rank {
            self.send_local(id);
        } else {
            let peer = &mut self.peers[dest.index()];
            if let Some(error) = peer.gone.clone() {
                self.send_done(id, Err(error), None);
            } else {
                peer.traffic = true;
                peer.waiting.push_back(id);
                if peer.waiting.len() == 1 {
                    self.pump_waiting(dest);
                }
            }
        }
        id
    }

    /// Posts a receive into `buf`; it may match a buffered message at once.
    pub fn post_recv(
        &mut self,
        source: Source,
        context: ContextId,
        tag: TagMatch,
        buf: RecvData,
    ) -> RequestId {
        let recv = RecvReq {
            source,
            context,
            tag,
            buf,
            state: RecvState::Posted,
        };
        let id = self.requests.insert(Request::Recv(recv));
        if let Source::Rank(rank) = source {
            if rank.0 >= self.size {
                self.recv_done(id, Err(OpError::InvalidRank { rank }));
                return id;
            }
        }
        if let Some(msg) = self.take_unexpected(context, source, tag) {
            self.deliver(msg, id);
        } else if let Some(error) = self.source_gone(source) {
            self.recv_done(id, Err(error));
        } else {
            self.posted.push(context, source, tag, id);
        }
        id
    }

    /// Withdraws a receive that has not matched yet and returns its buffer;
    /// the request is forgotten (no completion). `None` if it has matched,
    /// completed or is unknown.
    pub fn cancel_recv(&mut self, req: RequestId) -> Option<RecvData> {
        let Some(Request::Recv(r)) = self.requests.get(req) else {
            return None;
        };
        if r.state != RecvState::Posted {
            return None;
        }
        let (context, source, tag) = (r.context, r.source, r.tag);
        self.posted.remove(context, source, tag, |&id| id == req)?;
        match self.requests.remove(req) {
            Some(Request::Recv(r)) => Some(r.buf),
            _ => None,
        }
    }

    /// The status of the earliest buffered message a receive with this
    /// selector would match, without receiving it (`MPI_Iprobe`).
    pub fn iprobe(&self, source: Source, context: ContextId, tag: TagMatch) -> Option<Status> {
        self.unexpected
            .peek(context, source, tag)
            .map(|(_, _, msg)| msg.status())
    }

    /// Like [`iprobe`](Self::iprobe), but removes the message from matching
    /// so no other receive can take it (`MPI_Improbe`).
    pub fn improbe(
        &mut self,
        source: Source,
        context: ContextId,
        tag: TagMatch,
    ) -> Option<(MessageHandle, Status)> {
        let msg = self.take_unexpected(context, source, tag)?;
        let status = msg.status();
        Some((MessageHandle(msg), status))
    }

    /// Receives a message taken by [`improbe`](Self::improbe) (`MPI_Mrecv`).
    pub fn post_mrecv(&mut self, msg: MessageHandle, buf: RecvData) -> RequestId {
        let msg = msg.0;
        let recv = RecvReq {
            source: Source::Rank(msg.source),
            context: msg.context,
            tag: TagMatch::Tag(msg.tag),
            buf,
            state: RecvState::Posted,
        };
        let id = self.requests.insert(Request::Recv(recv));
        self.deliver(msg, id);
        id
    }

    /// Takes the completion of a finished request (once); `None` while it is
    /// pending or if it is unknown.
    pub fn take_completion(&mut self, req: RequestId) -> Option<Completion> {
        if !self.is_complete(req) {
            return None;
        }
        match self.requests.remove(req) {
            Some(Request::Done(c)) => Some(c),
            _ => None,
        }
    }

    /// Marks request `req` as started by scope `scope` (a non-zero number
    /// never used for another scope).
    pub fn set_scope(&mut self, req: RequestId, scope: u64) {
        self.requests.set_scope(req, scope);
    }

    /// The requests marked with `scope` whose completion has not been taken.
    pub fn scope_requests(&self, scope: u64) -> Vec<RequestId> {
        self.requests.of_scope(scope)
    }

    /// Whether `req` has completed (its completion not yet taken).
    pub fn is_complete(&self, req: RequestId) -> bool {
        matches!(self.requests.get(req), Some(Request::Done(_)))
    }

    /// Number of posted requests that have not completed.
    pub fn pending_requests(&self) -> usize {
        self.requests.pending()
    }

    /// Eager payload bytes from `peer` buffered in the unexpected queue;
    /// flow control keeps it within `credit_window`.
    pub fn unexpected_bytes(&self, peer: Rank) -> usize {
        self.peers
            .get(peer.index())
            .map_or(0, |p| p.unexpected_bytes)
    }

    /// Whether bytes for `peer` wait to be handed to a transport.
    pub fn wants_transmit(&self, peer: Rank) -> bool {
        self.peers
            .get(peer.index())
            .is_some_and(|p| p.tx.has_unoffered())
    }

    /// Whether every byte queued for `peer` is confirmed written (nothing
    /// waits, and nothing [`offered`](Self::offered) is still being read).
    pub fn all_transmitted(&self, peer: Rank) -> bool {
        self.peers.get(peer.index()).is_none_or(|p| p.tx.is_empty())
    }

    /// The peers with bytes to transmit (kept as a set, not a scan).
    pub fn peers_with_transmit(&self) -> impl Iterator<Item = Rank> + '_ {
        self.dirty.iter()
    }

    /// Appends to `out` slices covering up to `max_bytes` of what waits to
    /// be sent to `peer`, in order: engine-owned frame bytes and, for
    /// rendezvous DATA, the user's buffer itself. At most 64 slices.
    pub fn transmit_slices<'a>(&'a self, peer: Rank, out: &mut Slices<'a>, max_bytes: usize) {
        if let Some(p) = self.peers.get(peer.index()) {
            p.tx.slices(out, max_bytes);
        }
    }

    /// Reports that a transport took the next `n` bytes of what
    /// [`transmit_slices`](Self::transmit_slices) offered, but that the
    /// peer may still read them from this process's memory: they are not
    /// offered again, and their sends complete only once
    /// [`transmitted`](Self::transmitted) confirms them (in order).
    /// Panics if `n` exceeds what waits.
    pub fn offered(&mut self, peer: Rank, n: usize) {
        self.peers[peer.index()].tx.offer(n);
    }

    /// Reports that the first `n` bytes not yet confirmed (those
    /// [`offered`](Self::offered), then those
    /// [`transmit_slices`](Self::transmit_slices) offers) were written.
    /// Panics if `n` exceeds what was queued.
    pub fn transmitted(&mut self, peer: Rank, n: usize) {
        let mut done = Vec::new();
        let p = &mut self.peers[peer.index()];
        p.tx.advance(n, &mut done);
        if p.tx.is_empty() {
            self.dirty.remove(peer);
        }
        for (id, buf) in done {
            self.send_done(id, Ok(()), Some(buf));
        }
    }

    /// Sends to `peer` switch to rendezvous above `limit` bytes, above
    /// `lone_limit` for a lone send, one that finds nothing queued or in
    /// flight to `peer`, and above `expected_limit` for a
    /// [`SendMode::Expected`] one (never above the configured limits:
    /// receivers enforce the expected one; each limit is at least the one
    /// before). A transport that moves large payloads more cheaply than
    /// eager copies (shared memory's single copy) asks for this; a lone
    /// message then skips the rendezvous round trip, while a stream keeps
    /// it.
    pub fn limit_eager(
        &mut self,
        peer: Rank,
        limit: usize,
        lone_limit: usize,
        expected_limit: usize,
    ) {
        if let Some(p) = self.peers.get_mut(peer.index()) {
            p.eager_limit = limit.min(self.config.eager_limit);
            p.eager_limit_lone = lone_limit
                .max(limit)
                .min(self.config.eager_limit_lone)
                .max(p.eager_limit);
            p.eager_limit_expected = expected_limit
                .min(self.config.eager_limit_expected)
                .max(p.eager_limit_lone);
        }
    }

    /// Whether `peer` has said GOODBYE.
    pub fn peer_said_goodbye(&self, peer: Rank) -> bool {
        self.peers
            .get(peer.index())
            .is_some_and(|p| p.goodbye_received)
    }

    /// Queues GOODBYE to every live peer this rank has exchanged traffic
    /// with (once); the transport closes a link once both sides said it and
    /// nothing remains to transmit.
    pub fn queue_goodbye(&mut self) {
        for index in 0..self.peers.len() {
            let p = &self.peers[index];
            if index != self.rank.index() && p.traffic && !p.failed && !p.goodbye_sent {
                self.peers[index].goodbye_sent = true;
                let rank = Rank(index as u32);
                self.queue_frame(
                    rank,
                    &frame::Header::new(frame::Kind::Goodbye, self.rank),
                    &[],
                );
            }
        }
    }

    /// Why operations that need `peer` fail, once it failed or finalized.
    pub fn peer_gone_error(&self, peer: Rank) -> Option<OpError> {
        self.peers.get(peer.index())?.gone.clone()
    }

    /// The link to `peer` was lost without GOODBYE (or closed after a
    /// protocol error): fails every pending operation that needs it; see the
    /// module doc.
    pub fn peer_failed(&mut self, peer: Rank) {
        if peer == self.rank || peer.0 >= self.size || self.peers[peer.index()].failed {
            return;
        }
        let error = match self.peers[peer.index()].rx.error() {
            Some(error) => OpError::ProtocolError { rank: peer, error },
            None => OpError::PeerFailed { rank: peer },
        };
        self.peer_gone(peer, error, true);
    }
}
