//! The collectives' [`Channel`]: rounds of non-blocking sends and receives
//! on a communicator's collective context.

use mpr_collectives::{Channel, Incoming, Outgoing};

use crate::buffer::{RawRecv, RawSend};
use crate::comm::CommInner;
use crate::engine::{self, RecvData, RequestId, SendData, SendMode};
use crate::error::Error;
use crate::runtime::Runtime;
use crate::{Rank, Tag};

/// A communicator's collective context as a [`Channel`]. Errors come back
/// raw: the caller applies the error policy once per collective.
#[derive(Debug)]
pub(crate) struct CollChannel<'a> {
    pub(crate) comm: &'a CommInner,
}

/// Waits for every operation still listed, so that no borrowed buffer is
/// released while the engine may use it (also when unwinding).
struct Outstanding<'a> {
    rt: &'a Runtime,
    ids: smallvec::SmallVec<[RequestId; 8]>,
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            let _ = self.rt.wait(id);
        }
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
        };
        comm.rt.post_state(|state| {
            let engine = &mut state.engine;
            for recv in recvs.iter_mut() {
                let source = world(recv.peer).unwrap_or(Rank(u32::MAX));
                // SAFETY: `pending` waits for this receive before `exchange`
                // returns or unwinds, and `recv.data` stays borrowed until then.
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
                } else {
                    SendData::View(view)
                };
                pending.ids.push(engine.post_send(
                    dest,
                    context,
                    Tag(send.tag),
                    data,
                    SendMode::Standard,
                ));
            }
        });
        // Take every completion once all are done, keeping the first error.
        let first_error = comm.rt.wait_until(|engine| {
            if !pending.ids.iter().all(|&id| engine.is_complete(id)) {
                return None;
            }
            let mut first_error = None;
            for (i, &id) in pending.ids.iter().enumerate() {
                let Some(completion) = engine.take_completion(id) else {
                    continue;
                };
                match completion.result {
                    Ok(status) if i < recvs.len() && status.len != recvs[i].data.len() => {
                        first_error.get_or_insert(Error::CountMismatch {
                            rank: Rank(recvs[i].peer),
                            expected: recvs[i].data.len(),
                            actual: status.len,
                        });
                    }
                    Ok(_) => {}
                    Err(error) => {
                        first_error.get_or_insert(Error::from_op(error, |rank| comm.to_comm(rank)));
                    }
                }
            }
            pending.ids.clear();
            Some(first_error)
        });
        first_error.map_or(Ok(()), Err)
    }
}
