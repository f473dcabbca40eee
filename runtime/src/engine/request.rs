//! The request table: every posted operation from `post_*` until its
//! completion is taken.
//!
//! A slab with generations. A [`RequestId`] is `generation << 32 | index`;
//! the same number travels on the wire as the send id (EAGER, RTS, CTS, ACK)
//! and the receive id (CTS, DATA), so a peer's echo of an id is a bounds
//! check and a generation compare, and a stale or forged id is simply
//! unknown.

use super::{Completion, OpError, RecvData, RequestId, SendData, Source, Status, TagMatch};
use crate::{ContextId, Rank, Tag};

/// Where a send is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SendState {
    /// In its peer's queue, waiting for credit.
    WaitCredit,
    /// Synchronous eager frame queued; waiting for the ACK.
    AwaitAck,
    /// RTS queued; waiting for the CTS.
    AwaitCts,
    /// PULL queued; waiting for the ACK that says the receiver copied it
    /// (the request holds the buffer the receiver reads).
    AwaitPulled,
    /// DATA frame queued; the tx queue holds the buffer.
    Transmitting,
    /// A self-send in the unexpected queue, holding its buffer until matched.
    LocalUnmatched,
}

/// A send in progress.
#[derive(Debug)]
pub(super) struct SendReq {
    pub(super) dest: Rank,
    pub(super) context: ContextId,
    pub(super) tag: Tag,
    pub(super) len: usize,
    pub(super) sync: bool,
    /// Sent in [`SendMode::Expected`](super::SendMode::Expected).
    pub(super) expected: bool,
    /// `None` while a DATA frame in the tx queue holds it.
    pub(super) buf: Option<SendData>,
    pub(super) state: SendState,
}

/// Where a receive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecvState {
    /// In the posted queue.
    Posted,
    /// Matched an RTS from `peer`, CTS queued, waiting for the DATA header.
    AwaitData { peer: Rank, status: Status },
    /// DATA from `peer` is landing in the buffer.
    Receiving { peer: Rank, status: Status },
}

/// A receive in progress.
#[derive(Debug)]
pub(super) struct RecvReq {
    pub(super) source: Source,
    pub(super) context: ContextId,
    pub(super) tag: TagMatch,
    pub(super) buf: RecvData,
    pub(super) state: RecvState,
}

/// One entry of the table.
#[derive(Debug)]
pub(super) enum Request {
    /// A pending send.
    Send(SendReq),
    /// A pending receive.
    Recv(RecvReq),
    /// Completed, waiting for `take_completion`.
    Done(Completion),
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    request: Option<Request>,
    /// The scope that started the request (0: none); see [`Requests::of_scope`].
    scope: u64,
}

impl Slot {
    /// The id of the request in this slot, at `index` of the table.
    fn id(&self, index: usize) -> RequestId {
        RequestId(u64::from(self.generation) << 32 | index as u64)
    }
}

/// The slab; see the module doc.
#[derive(Debug, Default)]
pub(super) struct Requests {
    slots: Vec<Slot>,
    free: Vec<u32>,
    pending: usize,
}

impl Requests {
    /// Number of requests not completed yet.
    pub(super) fn pending(&self) -> usize {
        self.pending
    }

    /// Adds a pending request.
    pub(super) fn insert(&mut self, request: Request) -> RequestId {
        debug_assert!(!matches!(request, Request::Done(_)));
        self.pending += 1;
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len()).expect("more than 2^32 live requests");
                self.slots.push(Slot {
                    generation: 0,
                    request: None,
                    scope: 0,
                });
                index
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.request = Some(request);
        slot.scope = 0;
        slot.id(index as usize)
    }

    fn slot(&self, id: RequestId) -> Option<&Slot> {
        let slot = self.slots.get((id.0 & 0xffff_ffff) as usize)?;
        (u64::from(slot.generation) == id.0 >> 32).then_some(slot)
    }

    fn slot_mut(&mut self, id: RequestId) -> Option<&mut Slot> {
        let slot = self.slots.get_mut((id.0 & 0xffff_ffff) as usize)?;
        (u64::from(slot.generation) == id.0 >> 32).then_some(slot)
    }

    /// Marks request `id` as started by `scope` (a non-zero number).
    pub(super) fn set_scope(&mut self, id: RequestId, scope: u64) {
        if let Some(slot) = self.slot_mut(id) {
            slot.scope = scope;
        }
    }

    /// The requests of `scope` whose completion has not been taken, in
    /// index order: one pass over the table.
    pub(super) fn of_scope(&self, scope: u64) -> Vec<RequestId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.scope == scope && slot.request.is_some())
            .map(|(index, slot)| slot.id(index))
            .collect()
    }

    /// The request with this id, if it exists.
    pub(super) fn get(&self, id: RequestId) -> Option<&Request> {
        self.slot(id)?.request.as_ref()
    }

    /// The request with this id, if it exists.
    pub(super) fn get_mut(&mut self, id: RequestId) -> Option<&mut Request> {
        self.slot_mut(id)?.request.as_mut()
    }

    /// The pending send with this id.
    pub(super) fn send_mut(&mut self, id: RequestId) -> Option<&mut SendReq> {
        match self.get_mut(id) {
            Some(Request::Send(s)) => Some(s),
            _ => None,
        }
    }

    /// The pending receive with this id.
    pub(super) fn recv_mut(&mut self, id: RequestId) -> Option<&mut RecvReq> {
        match self.get_mut(id) {
            Some(Request::Recv(r)) => Some(r),
            _ => None,
        }
    }

    /// Removes a request, freeing its id for reuse under a new generation.
    pub(super) fn remove(&mut self, id: RequestId) -> Option<Request> {
        let slot = self.slot_mut(id)?;
        let request = slot.request.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push((id.0 & 0xffff_ffff) as u32);
        if !matches!(request, Request::Done(_)) {
            self.pending -= 1;
        }
        Some(request)
    }

    /// Completes a pending request, moving its buffer into the completion.
    /// For a send, `send_buf` is the buffer if something else held it.
    /// Does nothing if the request is unknown or already complete.
    pub(super) fn complete(
        &mut self,
        id: RequestId,
        result: Result<Status, OpError>,
        send_buf: Option<SendData>,
    ) {
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        let completion = match slot.request.take() {
            Some(Request::Send(s)) => Completion {
                request: id,
                result,
                send_buf: send_buf.or(s.buf),
                recv_buf: None,
            },
            Some(Request::Recv(r)) => Completion {
                request: id,
                result,
                send_buf: None,
                recv_buf: Some(r.buf),
            },
            other => {
                debug_assert!(false, "completing {id:?} twice");
                slot.request = other;
                return;
            }
        };
        slot.request = Some(Request::Done(completion));
        self.pending -= 1;
    }

    /// Ids of the pending requests for which `pred` holds, in index order.
    pub(super) fn pending_where(&self, mut pred: impl FnMut(&Request) -> bool) -> Vec<RequestId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| {
                slot.request
                    .as_ref()
                    .is_some_and(|r| !matches!(r, Request::Done(_)) && pred(r))
            })
            .map(|(index, slot)| slot.id(index))
            .collect()
    }
}
