//! Protocol actions shared by the API calls and the frame handlers: starting
//! sends, matching arriving messages, delivering matched ones, returning
//! credit, completing requests and failing the operations of a lost peer.

use super::flow::{FRAME_COST, Protocol};
use super::frame::{FLAG_DISCARD, FLAG_SYNC, Header, Kind};
use super::request::{RecvState, Request, SendState};
use super::{Engine, OpError, RequestId, Source, Status, TagMatch};
use crate::{ContextId, Rank, Tag};

/// A message that reached matching: from the network or a self-send.
#[derive(Debug)]
pub(super) struct Message {
    pub(super) source: Rank,
    pub(super) tag: Tag,
    pub(super) context: ContextId,
    /// Length of the message.
    pub(super) len: usize,
    pub(super) body: Body,
}

/// An eager payload held by the engine until matched: short ones (most
/// unexpected messages of a collective) need no allocation.
pub(super) type Payload = smallvec::SmallVec<[u8; 64]>;

/// Where a message's bytes are.
#[derive(Debug)]
pub(super) enum Body {
    /// Here (an eager frame or a small self-send); `ack` is the sender's id
    /// when a synchronous send waits for an ACK.
    Eager { payload: Payload, ack: Option<u64> },
    /// A large eager payload that came unexpected, whole or still arriving,
    /// held as an arrival (`arrival.rs`); `ack` as for `Eager`.
    Arriving {
        arrival: super::arrival::ArrivalId,
        ack: Option<u64>,
    },
    /// At the sender, announced by an RTS with this send id.
    Rts { send_id: u64 },
    /// At `addr` in the sender's memory, announced by a PULL.
    Pull { send_id: u64, addr: u64 },
    /// In the buffer of this rank's own send request.
    Local { send: RequestId },
}

impl Message {
    /// What a receive of this message reports.
    pub(super) fn status(&self) -> Status {
        Status {
            source: self.source,
            tag: self.tag,
            len: self.len,
        }
    }

    /// Payload bytes this rank holds for the message until it is matched.
    fn buffered_bytes(&self) -> usize {
        match &self.body {
            Body::Eager { payload, .. } => payload.len(),
            Body::Arriving { .. } => self.len,
            Body::Rts { .. } | Body::Pull { .. } | Body::Local { .. } => 0,
        }
    }

    /// The credit this message holds until matched.
    fn cost(&self) -> usize {
        match &self.body {
            Body::Eager { payload, .. } => FRAME_COST + payload.len(),
            Body::Arriving { .. } => FRAME_COST + self.len,
            Body::Rts { .. } | Body::Pull { .. } => FRAME_COST,
            Body::Local { .. } => 0,
        }
    }
}

impl Engine {
    /// Queues a frame to `peer` (dropped if the link is lost).
    pub(super) fn queue_frame(&mut self, peer: Rank, header: &Header, payload: &[u8]) {
        let p = &mut self.peers[peer.index()];
        if !p.failed {
            p.tx.push_frame(header, payload);
            p.traffic = true;
            self.dirty.insert(peer);
        }
    }

    /// Starts the sends waiting for credit to `peer`, in order, while credit
    /// lasts. Standard-mode eager payloads of at least
    /// `eager_by_reference_min` bytes are queued by reference (written
    /// from the user's buffer; the send completes once they are), smaller
    /// ones are copied into the queue's coalescing chunks (worth the copy:
    /// a burst becomes one write) and complete at once.
    pub(super) fn pump_waiting(&mut self, peer: Rank) {
        while let Some(&id) = self.peers[peer.index()].waiting.front() {
            let Some(send) = self.requests.send_mut(id) else {
                self.peers[peer.index()].waiting.pop_front();
                continue;
            };
            let p = &mut self.peers[peer.index()];
            let limit = if send.expected {
                p.eager_limit_expected
            } else if p.tx.is_empty() && p.heard_since_large_eager {
                p.eager_limit_lone
            } else {
                p.eager_limit
            };
            let protocol = p.credit.spend(send.len, limit);
            if protocol == Protocol::Wait {
                return;
            }
            if protocol == Protocol::Eager && send.len > p.eager_limit {
                p.heard_since_large_eager = false;
            }
            p.waiting.pop_front();
            let mut h = Header::new(Kind::Eager, self.rank);
            h.flags = if send.sync { FLAG_SYNC } else { 0 };
            h.context = send.context;
            h.tag = send.tag;
            h.id = id.0;
            h.arg = send.len as u64;
            let by_reference = protocol == Protocol::Eager
                && !send.sync
                && send.len >= self.config.eager_by_reference_min
                && send.buf.is_some();
            if by_reference {
                // The frame's payload stays in the user's buffer until the
                // transport has written it (one copy fewer; the send
                // completes then, like a DATA frame).
                let buf = send.buf.take().expect("checked above");
                send.state = SendState::Transmitting;
                p.tx.push_data(&h, buf, send.len, id);
                self.dirty.insert(peer);
                continue;
            }
            // The receiver of a PULL copies the payload from here once
            // matched; the request keeps the buffer until its ACK.
            let lone = p.tx.is_empty() && p.pulls_in_flight == 0;
            let pull_max = if lone { p.pull_max_lone } else { p.pull_max };
            let pull_from = send
                .buf
                .as_ref()
                .filter(|buf| {
                    let offered = p.pull_max_lone > 0;
                    send.len <= pull_max || (offered && buf.pulls_at_any_size())
                })
                .filter(|buf| !buf.is_transient())
                .map(|buf| buf.bytes().as_ptr() as u64);
            if protocol == Protocol::Eager {
                let buf = send.buf.as_ref().expect("a waiting send holds its buffer");
                p.tx.push_frame(&h, buf.bytes());
                send.state = SendState::AwaitAck;
            } else if let Some(addr) = pull_from {
                h.kind = Kind::Pull;
                p.tx.push_frame(&h, &addr.to_le_bytes());
                p.pulls_in_flight += 1;
                send.state = SendState::AwaitPulled;
            } else {
                h.kind = Kind::Rts;
                p.tx.push_frame(&h, &[]);
                send.state = SendState::AwaitCts;
            }
            self.dirty.insert(peer);
            if protocol == Protocol::Eager && !send.sync {
                self.send_done(id, Ok(()), None);
            }
        }
    }

    /// Runs a send to this rank itself.
    pub(super) fn send_local(&mut self, id: RequestId) {
        let Some(send) = self.requests.send_mut(id) else {
            return;
        };
        let (context, tag, len, sync) = (send.context, send.tag, send.len, send.sync);
        let mut msg = Message {
            source: self.rank,
            tag,
            context,
            len,
            body: Body::Local { send: id },
        };
        if let Some(recv) = self.posted.take_match(context, self.rank, tag) {
            return self.deliver(msg, recv);
        }
        if !sync
            && self.peers[self.rank.index()]
                .credit
                .try_spend_eager(len, self.config.eager_limit)
        {
            let payload = send
                .buf
                .as_ref()
                .map(|b| Payload::from_slice(b.bytes()))
                .unwrap_or_default();
            msg.body = Body::Eager { payload, ack: None };
            self.send_done(id, Ok(()), None);
        } else {
            send.state = SendState::LocalUnmatched;
        }
        self.buffer_unexpected(msg);
    }

    /// A message reached matching: deliver it to the earliest posted
    /// receive that matches, or buffer it.
    pub(super) fn arrive(&mut self, msg: Message) {
        match self.posted.take_match(msg.context, msg.source, msg.tag) {
            Some(recv) => {
                self.return_credit(msg.source, msg.cost());
                self.deliver(msg, recv);
            }
            None => self.buffer_unexpected(msg),
        }
    }

    pub(super) fn buffer_unexpected(&mut self, msg: Message) {
        self.peers[msg.source.index()].unexpected_bytes += msg.buffered_bytes();
        self.unexpected.push(msg.context, msg.source, msg.tag, msg);
    }

    /// Takes the earliest buffered message matching a selector, returning its credit.
    pub(super) fn take_unexpected(
        &mut self,
        context: ContextId,
        source: Source,
        tag: TagMatch,
    ) -> Option<Message> {
        let (_, _, msg) = self.unexpected.take(context, source, tag)?;
        self.peers[msg.source.index()].unexpected_bytes -= msg.buffered_bytes();
        self.return_credit(msg.source, msg.cost());
        Some(msg)
    }

    /// A message holding `cost` credit from `source` was matched.
    pub(super) fn return_credit(&mut self, source: Rank, cost: usize) {
        if cost == 0 {
            return;
        }
        if source == self.rank {
            self.peers[source.index()].credit.refill_local(cost);
        } else if let Some(amount) = self.peers[source.index()].credit.release(cost) {
            let mut h = Header::new(Kind::Credit, self.rank);
            h.arg = amount;
            self.queue_frame(source, &h, &[]);
        }
    }

    /// Delivers a matched message to receive `id`.
    pub(super) fn deliver(&mut self, msg: Message, id: RequestId) {
        let status = msg.status();
        match msg.body {
            Body::Eager { payload, ack } => {
                if let Some(send_id) = ack {
                    self.queue_ack(msg.source, send_id);
                }
                self.deliver_bytes(id, status, &payload);
            }
            Body::Arriving { arrival, ack } => {
                if let Some(send_id) = ack {
                    self.queue_ack(msg.source, send_id);
                }
                self.deliver_arrival(arrival, status, id);
            }
            Body::Local { send } => {
                let buf = self.requests.send_mut(send).and_then(|s| s.buf.take());
                self.deliver_bytes(id, status, buf.as_ref().map_or(&[], |b| b.bytes()));
                self.send_done(send, Ok(()), buf);
            }
            Body::Pull { send_id, addr } => {
                self.deliver_pull(msg.source, status, send_id, addr, id)
            }
            Body::Rts { send_id } => {
                if let Some(error) = self.peers[msg.source.index()].gone.clone() {
                    return self.recv_done(id, Err(error));
                }
                let Some(recv) = self.requests.recv_mut(id) else {
                    return;
                };
                let buffer_len = recv.buf.bytes_mut().len();
                let mut h = Header::new(Kind::Cts, self.rank);
                h.id = send_id;
                h.arg = id.0;
                if status.len > buffer_len {
                    h.flags = FLAG_DISCARD;
                    self.queue_frame(msg.source, &h, &[]);
                    self.recv_done(id, Err(truncated(status, buffer_len)));
                } else {
                    recv.state = RecvState::AwaitData {
                        peer: msg.source,
                        status,
                    };
                    self.peers[msg.source.index()].rx.awaiting_data += 1;
                    self.queue_frame(msg.source, &h, &[]);
                }
            }
        }
    }

    /// Queues the ACK of a matched synchronous eager send.
    pub(super) fn queue_ack(&mut self, peer: Rank, send_id: u64) {
        let mut h = Header::new(Kind::Ack, self.rank);
        h.id = send_id;
        self.queue_frame(peer, &h, &[]);
    }

    /// Completes receive `id` with a message whose bytes are `payload`.
    pub(super) fn deliver_bytes(&mut self, id: RequestId, status: Status, payload: &[u8]) {
        let Some(recv) = self.requests.recv_mut(id) else {
            return;
        };
        let buf = recv.buf.bytes_mut();
        let result = match buf.get_mut(..payload.len()) {
            Some(dst) => {
                dst.copy_from_slice(payload);
                Ok(status)
            }
            None => Err(truncated(status, buf.len())),
        };
        self.recv_done(id, result);
    }

    /// Completes send `id`; `buf` is its buffer if the tx queue held it.
    pub(super) fn send_done(
        &mut self,
        id: RequestId,
        result: Result<(), OpError>,
        buf: Option<super::SendData>,
    ) {
        let Some(send) = self.requests.send_mut(id) else {
            return;
        };
        let status = Status {
            source: self.rank,
            tag: send.tag,
            len: send.len,
        };
        self.requests.complete(id, result.map(|()| status), buf);
    }

    /// Completes receive `id`.
    pub(super) fn recv_done(&mut self, id: RequestId, result: Result<Status, OpError>) {
        self.requests.complete(id, result, None);
    }

    /// The error for a receive from `source` that nothing can satisfy any
    /// more, if that is the case.
    pub(super) fn source_gone(&self, source: Source) -> Option<OpError> {
        match source {
            Source::Rank(rank) if rank == self.rank => None,
            Source::Rank(rank) => self.peers[rank.index()].gone.clone(),
            Source::Any if self.gone + 1 == self.size => self.last_gone.clone(),
            Source::Any => None,
        }
    }

    /// `peer` failed (`link_lost`) or finalized: fails what needs it.
    pub(super) fn peer_gone(&mut self, peer: Rank, error: OpError, link_lost: bool) {
        let p = &mut self.peers[peer.index()];
        let mut failed = Vec::new();
        // Its sends waiting to be pulled fail below.
        p.pulls_in_flight = 0;
        if link_lost {
            p.failed = true;
            for (id, buf) in p.tx.clear() {
                failed.push((id, Some(buf)));
            }
            p.rx.reset();
            self.dirty.remove(peer);
        }
        if p.gone.is_none() {
            p.gone = Some(error.clone());
            self.gone += 1;
            self.last_gone = Some(error.clone());
        }
        failed.extend(p.waiting.drain(..).map(|id| (id, None)));
        let in_flight = self.requests.pending_where(|r| match r {
            Request::Send(s) => s.dest == peer
                && matches!(s.state, SendState::AwaitAck | SendState::AwaitCts | SendState::AwaitPulled),
            Request::Recv(r) => matches!(r.state,
                RecvState::AwaitData { peer: p, .. } | RecvState::Receiving { peer: p, .. } if p == peer),
            Request::Done(_) => false,
        });
        failed.extend(in_flight.into_iter().map(|id| (id, None)));
        let all_gone = self.gone + 1 == self.size;
        let posted = self
            .posted
            .drain_sources(|s| s == Source::Rank(peer) || (all_gone && s == Source::Any));
        failed.extend(posted.into_iter().map(|id| (id, None)));
        for (id, buf) in failed {
            match self.requests.get(id) {
                Some(Request::Send(_)) => self.send_done(id, Err(error.clone()), buf),
                _ => self.recv_done(id, Err(error.clone())),
            }
        }
    }
}

/// The truncation error for a message that does not fit.
pub(super) fn truncated(status: Status, buffer_len: usize) -> OpError {
    OpError::Truncated {
        source: status.source,
        tag: status.tag,
        message_len: status.len,
        buffer_len,
    }
}
