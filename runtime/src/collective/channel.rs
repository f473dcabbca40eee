//! The collectives' [`Channel`]: rounds of non-blocking sends and receives
//! on a communicator's collective context.

use mpr_collectives::{Channel, Incoming, Outgoing};

use crate::buffer::{RawRecv, RawSend};
use crate::comm::CommInner;
use crate::engine::{self, OpError, RecvData, RequestId, SendData, SendMode, Status};
use crate::error::Error;
use crate::runtime::Runtime;
use crate::{Rank, Tag};

/// A communicator's collective context as a [`Channel`]. Errors come back
/// raw: the caller applies the error policy once per collective.
#[derive(Debug)]
pub(crate) struct CollChannel<'a> {
    pub(crate) comm: &'a CommInner,
}

/// Waits for every operation still listed (from `taken` on), so that no
/// borrowed buffer is released while the engine may use it (also when
/// unwinding).
struct Outstanding<'a> {
    rt: &'a Runtime,
    ids: smallvec::SmallVec<[RequestId; 8]>,
    /// Leading operations whose completions were already taken.
    taken: usize,
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        for &id in &self.ids[self.taken..] {
            let _ = self.rt.wait(id);
        }
    }
}

impl CollChannel<'_> {
    /// Posts the round: every receive (their request ids first, in order),
    /// then every send that is not written at once. The caller must hold
    /// the returned [`Outstanding`] while it borrows `sends` and `recvs`.
    fn post<'a>(
        &'a self,
        sends: &[Outgoing<'_>],
        recvs: &mut [Incoming<'_>],
    ) -> Result<Outstanding<'a>, Error> {
        let comm = self.comm;
        let context = comm.coll;
        let world = |peer: u32| comm.to_world(Rank(peer));
        // Check every peer first, so that nothing is posted for a bad call.
        for peer in recvs
            .iter()
            .map(|r| r.peer)
            .chain(sends.iter().map(|s| s.peer))
        {
            world(peer)?;
        }
        let mut pending = Outstanding {
            rt: &comm.rt,
            ids: smallvec::SmallVec::with_capacity(recvs.len() + sends.len()),
            taken: 0,
        };
        comm.rt.post_state(|state| {
            let engine = &mut state.engine;
            for recv in recvs.iter_mut() {
                let source = world(recv.peer).unwrap_or(Rank(u32::MAX));
                // SAFETY: the round (`exchange` or `exchange_each`, the only
                // callers) holds `pending` until it returns or unwinds, and
                // `pending` waits for this receive when dropped; `recv.data`
                // is borrowed by the round for all that time.
                let view = unsafe { RawRecv::new(recv.data) };
                let tag = engine::TagMatch::Tag(Tag(recv.tag));
                pending.ids.push(engine.post_recv(
                    engine::Source::Rank(source),
                    context,
                    tag,
                    RecvData::View(view),
                ));
            }
            for send in sends {
                let dest = world(send.peer).unwrap_or(Rank(u32::MAX));
                // A small send to an idle shared-memory peer is written at
                // once and complete: nothing to wait for.
                if state.send_inline(dest, context, Tag(send.tag), send.data) {
                    continue;
                }
                let engine = &mut state.engine;
                // SAFETY: as above: waited for before the borrow of `send.data` ends.
                let view = unsafe { RawSend::new(send.data) };
                let data = if send.transient {
                    SendData::Transient(view)
                } else if send.fan_in {
                    SendData::View(view)
                } else {
                    SendData::Spread(view)
                };
                // Its receiver posted the receive as it entered the call.
                let mode = if send.expected {
                    SendMode::Expected
                } else {
                    SendMode::Standard
                };
                pending
                    .ids
                    .push(engine.post_send(dest, context, Tag(send.tag), data, mode));
            }
        });
        Ok(pending)
    }

    /// The error of operation `i` of a round (a receive if `i` indexes
    /// `recvs`), if it failed or a receive came short or long.
    fn failure(
        &self,
        i: usize,
        result: Result<Status, OpError>,
        recvs: &[Incoming<'_>],
    ) -> Option<Error> {
        match result {
            Ok(status) if i < recvs.len() && status.len != recvs[i].data.len() => {
                Some(Error::CountMismatch {
                    rank: Rank(recvs[i].peer),
                    expected: recvs[i].data.len(),
                    actual: status.len,
                })
            }
            Ok(_) => None,
            Err(error) => Some(Error::from_op(error, |rank| self.comm.to_comm(rank))),
        }
    }

    /// Waits for every operation not yet taken, keeping the first error
    /// (after `first_error`).
    fn finish(
        &self,
        mut pending: Outstanding<'_>,
        recvs: &[Incoming<'_>],
        mut first_error: Option<Error>,
    ) -> Result<(), Error> {
        let taken = pending.taken;
        let failed = self.comm.rt.wait_until(|engine| {
            if !pending.ids[taken..]
                .iter()
                .all(|&id| engine.is_complete(id))
            {
                return None;
            }
            let mut failed = None;
            for (i, &id) in pending.ids.iter().enumerate().skip(taken) {
                if let Some(completion) = engine.take_completion(id) {
                    if let Some(error) = self.failure(i, completion.result, recvs) {
                        failed.get_or_insert(error);
                    }
                }
            }
            Some(failed)
        });
        pending.taken = pending.ids.len();
        if let Some(error) = failed {
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Channel for CollChannel<'_> {
    type Error = Error;

    fn rank(&self) -> u32 {
        self.comm.rank.0
    }

    fn size(&self) -> u32 {
        self.comm.group.size()
    }

    fn exchange(&self, sends: &[Outgoing<'_>], recvs: &mut [Incoming<'_>]) -> Result<(), Error> {
        let pending = self.post(sends, recvs)?;
        self.finish(pending, recvs, None)
    }

    fn exchange_each(
        &self,
        sends: &[Outgoing<'_>],
        recvs: &mut [Incoming<'_>],
        arrived: &mut dyn FnMut(&mut [Incoming<'_>]),
    ) -> Result<(), Error> {
        let mut pending = self.post(sends, recvs)?;
        let mut first_error = None;
        // Receives come first in `pending.ids`, in order.
        while pending.taken < recvs.len() && first_error.is_none() {
            let i = pending.taken;
            let completion = self.comm.rt.wait(pending.ids[i]);
            pending.taken += 1;
            match self.failure(i, completion.result, recvs) {
                Some(error) => first_error = Some(error),
                None => arrived(&mut recvs[..=i]),
            }
        }
        self.finish(pending, recvs, first_error)
    }
}
