//! Per-peer receive path: where the transport reads to, and the parser that
//! turns those bytes into frames and frames into protocol actions.
//!
//! Bytes normally land in a staging buffer (one per peer, allocated on first
//! use, with at least [`STAGING_SPARE`] bytes free each time). Whole frames
//! are handled in place: an eager payload that matches a posted receive is
//! copied once, staging → user buffer. While a rendezvous DATA payload has
//! more than `direct_read_min` bytes left and nothing is staged,
//! [`Engine::recv_target`] hands out the rest of the user's buffer instead,
//! so those bytes go socket → user buffer with no copy; it never hands out
//! more than the payload's remainder, so the next frame's bytes cannot land
//! there. A large eager payload whose header finds no posted receive is
//! read the same way into an arrival (`arrival.rs`).

use super::arrival::ArrivalId;
use super::flow::FRAME_COST;
use super::frame::{
    FLAG_DISCARD, FLAG_SYNC, HEADER_LEN, Header, Kind, PULL_BODY_LEN, SHORT_EAGER, SHORT_HEADER_LEN,
};
use super::protocol::{Body, Message};
use super::request::{RecvState, SendState};
use super::{Engine, OpError, ProtocolError, RequestId, Status};
use crate::Rank;

/// Free bytes the staging buffer offers to each read.
pub(super) const STAGING_SPARE: usize = 64 << 10;

/// Received bytes not parsed yet.
#[derive(Default)]
struct Staging {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Staging {
    /// Free space after the staged bytes: at least `STAGING_SPARE` bytes.
    fn spare(&mut self) -> &mut [u8] {
        if self.buf.len() - self.end < STAGING_SPARE {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() - self.end < STAGING_SPARE {
                // Room for a partial frame plus the spare, without compacting on every read.
                self.buf
                    .resize((self.end + STAGING_SPARE).max(2 * STAGING_SPARE), 0);
            }
        }
        &mut self.buf[self.end..]
    }
}

/// What the parser expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RxState {
    /// A frame header (an EAGER frame is handled once it is whole).
    Header,
    /// `len - offset` more bytes of a payload for receive `req`: DATA, or
    /// a large EAGER payload whose receive was posted when its header came.
    Data {
        req: RequestId,
        offset: usize,
        len: usize,
    },
    /// The rest of a large EAGER payload that no receive matched when its
    /// header came: it goes into the arrival's buffer (`arrival.rs`).
    Arriving { arrival: ArrivalId },
    /// `left` more bytes of an EAGER payload to drop (its receive was too
    /// short and has failed with `Truncated`).
    Skip { left: usize },
}

/// The receive side of one link.
pub(super) struct Rx {
    staging: Staging,
    pub(super) state: RxState,
    /// The last `recv_target` was the user's buffer.
    direct: bool,
    /// Receives that answered this peer's RTS with CTS and wait for its
    /// DATA header (see [`Engine::awaits_data_header`]).
    pub(super) awaiting_data: usize,
    /// The protocol error that broke this link, if any.
    error: Option<ProtocolError>,
}

impl Default for Rx {
    fn default() -> Self {
        Rx {
            staging: Staging::default(),
            state: RxState::Header,
            direct: false,
            awaiting_data: 0,
            error: None,
        }
    }
}

impl Rx {
    /// The protocol error that broke this link, if any.
    pub(super) fn error(&self) -> Option<ProtocolError> {
        self.error.clone()
    }

    /// Records the protocol error that breaks this link.
    pub(super) fn set_error(&mut self, error: ProtocolError) {
        self.error = Some(error);
    }

    /// Forgets everything in flight (the link is gone).
    pub(super) fn reset(&mut self) {
        self.staging = Staging::default();
        self.state = RxState::Header;
        self.direct = false;
        self.awaiting_data = 0;
    }
}

impl Engine {
    /// Where to read the next bytes from `peer`: the rest of a large DATA
    /// payload in the user's buffer, or the staging buffer (at least 64 KiB).
    /// Report what was read with [`received`](Self::received). Panics if
    /// `peer` is not in the world.
    pub fn recv_target(&mut self, peer: Rank) -> &mut [u8] {
        self.recv_target_at_most(peer, usize::MAX)
    }

    /// [`recv_target`](Self::recv_target), with a payload read straight
    /// into its buffer offered at most `direct_max` bytes at a time (the
    /// staging buffer is offered whole).
    pub fn recv_target_at_most(&mut self, peer: Rank, direct_max: usize) -> &mut [u8] {
        let rx = &mut self.peers[peer.index()].rx;
        rx.direct = false;
        let nothing_staged = rx.staging.start == rx.staging.end;
        match rx.state {
            RxState::Data { req, offset, len }
                if nothing_staged && len - offset > self.config.direct_read_min =>
            {
                if let Some(recv) = self.requests.recv_mut(req) {
                    let end = len.min(offset.saturating_add(direct_max));
                    if let Some(rest) = recv.buf.bytes_mut().get_mut(offset..end) {
                        rx.direct = true;
                        return rest;
                    }
                }
            }
            RxState::Arriving { arrival } if nothing_staged => {
                if let Some(a) = self.arrivals.get_mut(arrival) {
                    if a.len - a.filled > self.config.direct_read_min {
                        rx.direct = true;
                        let end = a.len.min(a.filled.saturating_add(direct_max));
                        return &mut a.buf[a.filled..end];
                    }
                }
            }
            _ => {}
        }
        rx.staging.spare()
    }

    /// Whether the next bytes from `peer` start a frame that may well be
    /// the DATA header of a rendezvous this rank has answered, with nothing
    /// staged: a transport that reads only the header then (the first
    /// [`frame::HEADER_LEN`](super::frame::HEADER_LEN) bytes of
    /// [`recv_target`](Self::recv_target)) lets the whole payload go
    /// straight into the user's buffer, where a full read would stage up to
    /// a staging buffer's worth of it and copy it again (measured over
    /// TCP, 8 ranks on 2 cores, allgather of 1 MiB blocks: memmove 10% of
    /// all time, Open MPI's 5%).
    pub fn awaits_data_header(&self, peer: Rank) -> bool {
        self.peers.get(peer.index()).is_some_and(|p| {
            p.rx.awaiting_data > 0
                && p.rx.state == RxState::Header
                && p.rx.staging.start == p.rx.staging.end
        })
    }

    /// Reports that `n` bytes from `peer` landed in the last
    /// [`recv_target`](Self::recv_target), and acts on them. An error means
    /// the peer broke the protocol: close the link and call
    /// [`peer_failed`](Self::peer_failed). Bytes after a failure are ignored.
    /// Panics if `n` exceeds the target's length.
    pub fn received(&mut self, peer: Rank, n: usize) -> Result<(), ProtocolError> {
        let p = &mut self.peers[peer.index()];
        if let Some(error) = &p.rx.error {
            return Err(error.clone());
        }
        if p.failed || n == 0 {
            return Ok(());
        }
        p.traffic = true;
        if std::mem::take(&mut p.rx.direct) {
            if let RxState::Arriving { arrival } = p.rx.state {
                let a = self
                    .arrivals
                    .get_mut(arrival)
                    .expect("a direct target is only handed out for a live arrival");
                assert!(
                    n <= a.len - a.filled,
                    "received {n} bytes into a {}-byte target",
                    a.len - a.filled
                );
                a.filled += n;
                if a.is_whole() {
                    p.rx.state = RxState::Header;
                }
                return Ok(());
            }
            let RxState::Data { req, offset, len } = &mut p.rx.state else {
                unreachable!("a direct target is only handed out for DATA or an arrival")
            };
            assert!(
                n <= *len - *offset,
                "received {n} bytes into a {}-byte target",
                *len - *offset
            );
            *offset += n;
            if *offset == *len {
                let req = *req;
                p.rx.state = RxState::Header;
                self.data_done(req);
            }
            return Ok(());
        }
        let staging = &mut p.rx.staging;
        assert!(
            n <= staging.buf.len() - staging.end,
            "received more bytes than recv_target offered"
        );
        staging.end += n;
        let mut staging = std::mem::take(staging);
        let result = self
            .parse(peer, &staging.buf[staging.start..staging.end])
            .map(|consumed| staging.start += consumed);
        if staging.start == staging.end {
            staging.start = 0;
            staging.end = 0;
        }
        let rx = &mut self.peers[peer.index()].rx;
        rx.staging = staging;
        if let Err(error) = &result {
            rx.error = Some(error.clone());
        }
        result
    }

    /// Handles every whole frame at the start of `bytes` (and, in DATA
    /// state, as much payload as there is); returns how many bytes that took.
    /// What is left is the start of a frame that is not whole yet.
    fn parse(&mut self, peer: Rank, bytes: &[u8]) -> Result<usize, ProtocolError> {
        let mut start = 0;
        loop {
            let avail = bytes.len() - start;
            match self.peers[peer.index()].rx.state {
                RxState::Data { req, offset, len } => {
                    if avail == 0 {
                        return Ok(start);
                    }
                    let k = avail.min(len - offset);
                    let recv = self
                        .requests
                        .recv_mut(req)
                        .ok_or(ProtocolError::UnknownRecv { peer, id: req.0 })?;
                    let dst = recv.buf.bytes_mut().get_mut(offset..offset + k);
                    dst.expect("DATA fits the buffer")
                        .copy_from_slice(&bytes[start..start + k]);
                    start += k;
                    if offset + k < len {
                        self.peers[peer.index()].rx.state = RxState::Data {
                            req,
                            offset: offset + k,
                            len,
                        };
                        return Ok(start);
                    }
                    self.peers[peer.index()].rx.state = RxState::Header;
                    self.data_done(req);
                }
                RxState::Arriving { arrival } => {
                    if avail == 0 {
                        return Ok(start);
                    }
                    let a = self
                        .arrivals
                        .get_mut(arrival)
                        .expect("an arrival lives while its bytes come");
                    let k = avail.min(a.len - a.filled);
                    a.buf[a.filled..a.filled + k].copy_from_slice(&bytes[start..start + k]);
                    a.filled += k;
                    start += k;
                    if !a.is_whole() {
                        return Ok(start);
                    }
                    self.peers[peer.index()].rx.state = RxState::Header;
                }
                RxState::Skip { left } => {
                    if avail == 0 {
                        return Ok(start);
                    }
                    let k = avail.min(left);
                    start += k;
                    self.peers[peer.index()].rx.state = if k < left {
                        RxState::Skip { left: left - k }
                    } else {
                        RxState::Header
                    };
                }
                RxState::Header => {
                    // The kind byte tells a short EAGER header from a full one.
                    let short = bytes.get(start + 1) == Some(&SHORT_EAGER);
                    let header_len = if short { SHORT_HEADER_LEN } else { HEADER_LEN };
                    if avail < header_len {
                        return Ok(start);
                    }
                    let raw = &bytes[start..start + header_len];
                    let header = if short {
                        Header::decode_short(raw.try_into().expect("12 bytes"), peer)?
                    } else {
                        Header::decode(raw.try_into().expect("32 bytes"))?
                    };
                    self.check_header(peer, &header)?;
                    if matches!(header.kind, Kind::Eager | Kind::Rts | Kind::Pull) {
                        self.peers[peer.index()].heard_since_large_eager = true;
                    }
                    if header.kind == Kind::Eager {
                        let end = start + header_len + header.arg as usize;
                        if end > bytes.len() {
                            let here = &bytes[start + header_len..];
                            // A large rest is read where it belongs: into a
                            // posted receive, or else into an arrival; a
                            // short one waits in staging for the whole frame.
                            let large_rest =
                                header.arg as usize - here.len() > self.config.direct_read_min;
                            if large_rest {
                                if !self.eager_into_posted(peer, &header, here)? {
                                    self.eager_into_arrival(peer, &header, here)?;
                                }
                                start = bytes.len();
                                continue;
                            }
                            return Ok(start);
                        }
                        self.on_eager(peer, &header, &bytes[start + header_len..end])?;
                        start = end;
                    } else if header.kind == Kind::Pull {
                        let end = start + HEADER_LEN + PULL_BODY_LEN;
                        let Some(body) = bytes.get(start + HEADER_LEN..end) else {
                            return Ok(start);
                        };
                        let addr = u64::from_le_bytes(body.try_into().expect("8 bytes"));
                        start = end;
                        self.on_pull(peer, &header, addr)?;
                    } else {
                        start += HEADER_LEN;
                        self.on_control(peer, &header)?;
                    }
                }
            }
        }
    }

    /// Like copying `bytes` into [`recv_target`](Self::recv_target) and
    /// calling [`received`](Self::received), for a transport that holds the
    /// bytes in memory of its own (a shared-memory ring): whole frames are
    /// handled where they lie, so an eager payload is copied once, straight
    /// into the posted buffer; only a frame cut at the end of `bytes` is
    /// staged.
    pub fn received_from(&mut self, peer: Rank, bytes: &[u8]) -> Result<(), ProtocolError> {
        let p = &mut self.peers[peer.index()];
        if let Some(error) = &p.rx.error {
            return Err(error.clone());
        }
        if p.failed || bytes.is_empty() {
            return Ok(());
        }
        let mut rest = bytes;
        if p.rx.staging.start == p.rx.staging.end {
            p.traffic = true;
            match self.parse(peer, bytes) {
                Ok(consumed) => rest = &bytes[consumed..],
                Err(error) => {
                    self.peers[peer.index()].rx.error = Some(error.clone());
                    return Err(error);
                }
            }
        }
        while !rest.is_empty() {
            let target = self.recv_target(peer);
            let n = target.len().min(rest.len());
            target[..n].copy_from_slice(&rest[..n]);
            self.received(peer, n)?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Checks what can be checked before a frame is whole.
    fn check_header(&self, peer: Rank, h: &Header) -> Result<(), ProtocolError> {
        let p = &self.peers[peer.index()];
        if h.source != peer {
            return Err(ProtocolError::SourceMismatch {
                peer,
                claimed: h.source.0,
            });
        }
        if p.goodbye_received {
            return Err(ProtocolError::AfterGoodbye { peer });
        }
        let limit = self.config.eager_limit_expected;
        if h.kind == Kind::Eager && h.arg > limit as u64 {
            return Err(ProtocolError::EagerTooLong {
                peer,
                len: h.arg,
                limit,
            });
        }
        Ok(())
    }

    /// Charges `cost` credit to `peer`.
    pub(super) fn charge(&mut self, peer: Rank, cost: usize) -> Result<(), ProtocolError> {
        let window = self.config.credit_window;
        self.peers[peer.index()]
            .credit
            .charge(cost)
            .map_err(|used| ProtocolError::CreditExceeded { peer, used, window })
    }

    /// A whole EAGER frame.
    fn on_eager(&mut self, peer: Rank, h: &Header, payload: &[u8]) -> Result<(), ProtocolError> {
        let cost = FRAME_COST + payload.len();
        self.charge(peer, cost)?;
        let ack = (h.flags & FLAG_SYNC != 0).then_some(h.id);
        if let Some(recv) = self.posted.take_match(h.context, peer, h.tag) {
            // Fast path: straight from staging into the posted buffer.
            self.return_credit(peer, cost);
            if let Some(send_id) = ack {
                self.queue_ack(peer, send_id);
            }
            let status = super::Status {
                source: peer,
                tag: h.tag,
                len: payload.len(),
            };
            self.deliver_bytes(recv, status, payload);
        } else {
            let body = Body::Eager {
                payload: super::protocol::Payload::from_slice(payload),
                ack,
            };
            self.arrive(Message {
                source: peer,
                tag: h.tag,
                context: h.context,
                len: payload.len(),
                body,
            });
        }
        Ok(())
    }

    /// An EAGER header whose payload has not all come (`here` is what has)
    /// and whose rest is large: if a posted receive matches, the frame is
    /// matched now and the rest lands straight in the user's buffer (read
    /// from the socket, or pulled by single copy), as DATA would; true if
    /// so.
    fn eager_into_posted(
        &mut self,
        peer: Rank,
        h: &Header,
        here: &[u8],
    ) -> Result<bool, ProtocolError> {
        let len = h.arg as usize;
        let Some(recv) = self.posted.take_match(h.context, peer, h.tag) else {
            return Ok(false);
        };
        let cost = FRAME_COST + len;
        self.charge(peer, cost)?;
        self.return_credit(peer, cost);
        if h.flags & FLAG_SYNC != 0 {
            self.queue_ack(peer, h.id);
        }
        let status = super::Status {
            source: peer,
            tag: h.tag,
            len,
        };
        let Some(req) = self.requests.recv_mut(recv) else {
            self.peers[peer.index()].rx.state = RxState::Skip {
                left: len - here.len(),
            };
            return Ok(true);
        };
        let buffer_len = req.buf.bytes_mut().len();
        if buffer_len < len {
            self.peers[peer.index()].rx.state = RxState::Skip {
                left: len - here.len(),
            };
            self.recv_done(recv, Err(super::protocol::truncated(status, buffer_len)));
            return Ok(true);
        }
        req.buf.bytes_mut()[..here.len()].copy_from_slice(here);
        req.state = RecvState::Receiving { peer, status };
        self.peers[peer.index()].rx.state = RxState::Data {
            req: recv,
            offset: here.len(),
            len,
        };
        Ok(true)
    }

    /// An EAGER header whose large rest has not come, after
    /// [`eager_into_posted`](Self::eager_into_posted) found no receive for
    /// it: the message is queued as unexpected now and the rest is read
    /// into an arrival (`arrival.rs`).
    fn eager_into_arrival(
        &mut self,
        peer: Rank,
        h: &Header,
        here: &[u8],
    ) -> Result<(), ProtocolError> {
        let len = h.arg as usize;
        self.charge(peer, FRAME_COST + len)?;
        let arrival = self.arrivals.start(peer, len, here);
        self.peers[peer.index()].rx.state = RxState::Arriving { arrival };
        let ack = (h.flags & FLAG_SYNC != 0).then_some(h.id);
        self.buffer_unexpected(Message {
            source: peer,
            tag: h.tag,
            context: h.context,
            len,
            body: Body::Arriving { arrival, ack },
        });
        Ok(())
    }

    /// Delivers a matched arrival to receive `id`: at once if it is whole;
    /// if it is still arriving, the bytes so far are copied and the rest
    /// goes straight to the receive's buffer, as DATA would.
    pub(super) fn deliver_arrival(&mut self, arrival: ArrivalId, status: Status, id: RequestId) {
        let Some(a) = self.arrivals.take(arrival) else {
            unreachable!("an arrival lives until its message is matched")
        };
        if a.is_whole() {
            self.deliver_bytes(id, status, &a.buf[..a.len]);
            return self.arrivals.recycle(a.buf);
        }
        let peer = a.peer;
        if self.peers[peer.index()].rx.state != (RxState::Arriving { arrival }) {
            // The link was lost before the payload was whole.
            let error = self.peers[peer.index()]
                .gone
                .clone()
                .unwrap_or(OpError::PeerFailed { rank: peer });
            self.recv_done(id, Err(error));
            return self.arrivals.recycle(a.buf);
        }
        let Some(req) = self.requests.recv_mut(id) else {
            self.peers[peer.index()].rx.state = RxState::Skip {
                left: a.len - a.filled,
            };
            return self.arrivals.recycle(a.buf);
        };
        let buffer_len = req.buf.bytes_mut().len();
        if buffer_len < a.len {
            self.peers[peer.index()].rx.state = RxState::Skip {
                left: a.len - a.filled,
            };
            self.recv_done(id, Err(super::protocol::truncated(status, buffer_len)));
            return self.arrivals.recycle(a.buf);
        }
        req.buf.bytes_mut()[..a.filled].copy_from_slice(&a.buf[..a.filled]);
        req.state = RecvState::Receiving { peer, status };
        self.peers[peer.index()].rx.state = RxState::Data {
            req: id,
            offset: a.filled,
            len: a.len,
        };
        self.arrivals.recycle(a.buf);
    }

    /// Any frame but EAGER, header consumed.
    fn on_control(&mut self, peer: Rank, h: &Header) -> Result<(), ProtocolError> {
        match h.kind {
            Kind::Hello | Kind::HelloAck | Kind::Eager | Kind::Pull => {
                return Err(ProtocolError::UnexpectedKind { peer, kind: h.kind });
            }
            Kind::Rts => self.announced(peer, h, Body::Rts { send_id: h.id })?,
            Kind::Cts => self.on_cts(peer, h)?,
            Kind::Data => self.on_data(peer, h)?,
            Kind::Ack => {
                let id = RequestId(h.id);
                match self.requests.send_mut(id) {
                    Some(s)
                        if s.dest == peer
                            && matches!(s.state, SendState::AwaitAck | SendState::AwaitPulled) =>
                    {
                        if s.state == SendState::AwaitPulled {
                            let p = &mut self.peers[peer.index()];
                            p.pulls_in_flight = p.pulls_in_flight.saturating_sub(1);
                        }
                        self.send_done(id, Ok(()), None)
                    }
                    _ => {
                        return Err(ProtocolError::UnknownSend {
                            peer,
                            kind: h.kind,
                            id: h.id,
                        });
                    }
                }
            }
            Kind::Credit => {
                let refill = self.peers[peer.index()].credit.refill(h.arg);
                refill.map_err(|()| ProtocolError::CreditOverflow {
                    peer,
                    returned: h.arg,
                })?;
                self.pump_waiting(peer);
            }
            Kind::Goodbye => {
                self.peers[peer.index()].goodbye_received = true;
                self.peer_gone(peer, super::OpError::PeerFinalized { rank: peer }, false);
            }
        }
        Ok(())
    }

    /// An RTS or PULL header: a message of `h.arg` bytes whose payload
    /// stays at the sender (`body` says how to get it) reaches matching.
    pub(super) fn announced(
        &mut self,
        peer: Rank,
        h: &Header,
        body: Body,
    ) -> Result<(), ProtocolError> {
        self.charge(peer, FRAME_COST)?;
        let len = usize::try_from(h.arg).map_err(|_| ProtocolError::TooLong {
            kind: h.kind,
            len: h.arg,
            max: usize::MAX as u64,
        })?;
        self.arrive(Message {
            source: peer,
            tag: h.tag,
            context: h.context,
            len,
            body,
        });
        Ok(())
    }

    /// CTS: the receiver matched our RTS.
    fn on_cts(&mut self, peer: Rank, h: &Header) -> Result<(), ProtocolError> {
        let id = RequestId(h.id);
        let unknown = ProtocolError::UnknownSend {
            peer,
            kind: h.kind,
            id: h.id,
        };
        let send = match self.requests.send_mut(id) {
            Some(s) if s.dest == peer && s.state == SendState::AwaitCts => s,
            _ => return Err(unknown),
        };
        if h.flags & FLAG_DISCARD != 0 {
            self.send_done(id, Ok(()), None);
            return Ok(());
        }
        let buf = send.buf.take().ok_or(unknown)?;
        send.state = SendState::Transmitting;
        let mut d = Header::new(Kind::Data, self.rank);
        d.id = h.arg;
        d.arg = send.len as u64;
        let p = &mut self.peers[peer.index()];
        p.tx.push_data(&d, buf, send.len, id);
        self.dirty.insert(peer);
        Ok(())
    }

    /// DATA header: the payload for one of our receives follows.
    fn on_data(&mut self, peer: Rank, h: &Header) -> Result<(), ProtocolError> {
        let id = RequestId(h.id);
        let recv = self
            .requests
            .recv_mut(id)
            .ok_or(ProtocolError::UnknownRecv { peer, id: h.id })?;
        let RecvState::AwaitData { peer: from, status } = recv.state else {
            return Err(ProtocolError::UnknownRecv { peer, id: h.id });
        };
        if from != peer {
            return Err(ProtocolError::UnknownRecv { peer, id: h.id });
        }
        if h.arg != status.len as u64 {
            return Err(ProtocolError::DataLength {
                peer,
                expected: status.len as u64,
                got: h.arg,
            });
        }
        recv.state = RecvState::Receiving { peer, status };
        let rx = &mut self.peers[peer.index()].rx;
        rx.awaiting_data = rx.awaiting_data.saturating_sub(1);
        if status.len == 0 {
            self.data_done(id);
        } else {
            self.peers[peer.index()].rx.state = RxState::Data {
                req: id,
                offset: 0,
                len: status.len,
            };
        }
        Ok(())
    }

    /// The last DATA byte for receive `req` landed.
    fn data_done(&mut self, req: RequestId) {
        if let Some(recv) = self.requests.recv_mut(req) {
            if let RecvState::Receiving { status, .. } = recv.state {
                self.recv_done(req, Ok(status));
            }
        }
    }
}
