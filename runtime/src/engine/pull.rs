//! Rendezvous by pull, between peers on one host that may read each other's
//! memory (`process_vm_readv`).
//!
//! The sender of a rendezvous message queues a PULL frame (an RTS carrying
//! the address of its buffer) instead of an RTS. The receiver that matches
//! it copies the message straight from the sender's memory into its own
//! buffer and answers ACK; the sender's send completes on that ACK. The
//! receive completes the moment it matches, with one copy and no round
//! trip: an RTS → CTS → DATA rendezvous waits for two more hops, and on
//! shared cores every hop waits for its receiver to be scheduled.
//!
//! A receiver whose buffer is too short fails with `Truncated` and ACKs all
//! the same (the send succeeds, as after CTS+DISCARD). A peer that exits
//! before its message is copied fails the receive with `PeerFailed`; an
//! address that cannot be read is that peer's protocol error.

use std::fmt;
use std::sync::Arc;

use super::frame::Header;
use super::protocol::{Body, truncated};
use super::request::{Request, SendState};
use super::{Engine, OpError, ProtocolError, RequestId, Status};
use crate::Rank;

/// How this rank copies pulled messages out of one peer's memory.
pub trait Puller: Send + Sync + fmt::Debug {
    /// Copies the `dst.len()` bytes of the peer's send `send_id`, which lie
    /// at `addr` in its memory, into `dst`; the error is an `errno`
    /// (`ESRCH`: the peer's process is gone).
    fn pull(&self, send_id: u64, addr: u64, dst: &mut [u8]) -> Result<(), i32>;
}

/// A peer process whose memory this rank may read (and write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerMemory {
    pid: nix::unistd::Pid,
}

impl Puller for PeerMemory {
    fn pull(&self, _send_id: u64, addr: u64, dst: &mut [u8]) -> Result<(), i32> {
        self.read(addr, dst)
    }
}

/// Most bytes one `process_vm_readv` copies.
const READ_CHUNK: usize = 256 << 10;

impl PeerMemory {
    /// The memory of process `pid`.
    pub fn of_process(pid: u32) -> PeerMemory {
        PeerMemory {
            pid: nix::unistd::Pid::from_raw(pid as i32),
        }
    }

    /// Copies `dst.len()` bytes at `addr` of the process into `dst`; the
    /// error is the `errno` of the failed read.
    pub fn read(&self, addr: u64, dst: &mut [u8]) -> Result<(), i32> {
        in_chunks(addr, dst.len(), |remote, range| {
            let mut local = [std::io::IoSliceMut::new(&mut dst[range])];
            nix::sys::uio::process_vm_readv(self.pid, &mut local, &remote)
        })
    }

    /// Copies `src` to `addr` of the process; the error is the `errno` of
    /// the failed write.
    pub fn write(&self, addr: u64, src: &[u8]) -> Result<(), i32> {
        in_chunks(addr, src.len(), |remote, range| {
            let local = [std::io::IoSlice::new(&src[range])];
            nix::sys::uio::process_vm_writev(self.pid, &local, &remote)
        })
    }

    /// Whether the process still exists.
    pub fn is_alive(&self) -> bool {
        nix::sys::signal::kill(self.pid, None) != Err(nix::errno::Errno::ESRCH)
    }
}

/// Moves `len` bytes at `addr` of another process in system calls of at
/// most [`READ_CHUNK`] bytes: `copy` moves the remote piece to or from the
/// local byte range given and returns how many bytes it moved.
fn in_chunks(
    addr: u64,
    len: usize,
    mut copy: impl FnMut([nix::sys::uio::RemoteIoVec; 1], std::ops::Range<usize>) -> nix::Result<usize>,
) -> Result<(), i32> {
    use nix::errno::Errno;
    let mut done = 0;
    while done < len {
        let piece = (len - done).min(READ_CHUNK);
        let remote = [nix::sys::uio::RemoteIoVec {
            base: (addr as usize).wrapping_add(done),
            len: piece,
        }];
        match copy(remote, done..done + piece) {
            Ok(0) => return Err(Errno::EFAULT as i32),
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno as i32),
        }
    }
    Ok(())
}

impl Engine {
    /// Rendezvous sends to `peer` of at most `max_len` bytes go by pull
    /// from now on, and lone ones (nothing queued to `peer`, no pull in
    /// flight to it) of at most `max_lone_len` (at least `max_len`):
    /// `peer` has shown it can read this process's memory (0 turns pulls
    /// off). Transient payloads never do (see
    /// [`SendData::is_transient`](super::SendData::is_transient)); those
    /// that may be pulled at any size do so whatever their length (see
    /// [`SendData::pulls_at_any_size`](super::SendData::pulls_at_any_size)).
    pub fn offer_pulls(&mut self, peer: Rank, max_len: usize, max_lone_len: usize) {
        if let Some(p) = self.peers.get_mut(peer.index()) {
            p.pull_max = max_len;
            p.pull_max_lone = max_lone_len.max(max_len);
        }
    }

    /// This rank may read `peer`'s memory, through `puller`: PULL frames
    /// from it are accepted (without this call they are a protocol error).
    pub fn pull_from(&mut self, peer: Rank, puller: Arc<dyn Puller>) {
        if let Some(p) = self.peers.get_mut(peer.index()) {
            p.memory = Some(puller);
        }
    }

    /// Whether some send to `peer` waits to be pulled.
    pub fn awaits_pull(&self, peer: Rank) -> bool {
        self.peers
            .get(peer.index())
            .is_some_and(|p| p.pulls_in_flight > 0)
    }

    /// The bytes of this rank's send `send_id` to `peer`, if it waits to
    /// be pulled (a transport helping the receiver copy reads them).
    pub fn pulled_send(&self, peer: Rank, send_id: u64) -> Option<&[u8]> {
        match self.requests.get(RequestId(send_id)) {
            Some(Request::Send(send))
                if send.dest == peer && send.state == SendState::AwaitPulled =>
            {
                send.buf.as_ref().map(|buf| &buf.bytes()[..send.len])
            }
            _ => None,
        }
    }

    /// A whole PULL frame: `addr` is where the message lies at the sender.
    pub(super) fn on_pull(
        &mut self,
        peer: Rank,
        h: &Header,
        addr: u64,
    ) -> Result<(), ProtocolError> {
        if self.peers[peer.index()].memory.is_none() {
            return Err(ProtocolError::UnexpectedKind { peer, kind: h.kind });
        }
        let body = Body::Pull {
            send_id: h.id,
            addr,
        };
        self.announced(peer, h, body)
    }

    /// Receive `id` matched a PULL of send `send_id` from `peer`: copies
    /// the message, ACKs it and completes the receive.
    pub(super) fn deliver_pull(
        &mut self,
        peer: Rank,
        status: Status,
        send_id: u64,
        addr: u64,
        id: RequestId,
    ) {
        if let Some(error) = self.peers[peer.index()].gone.clone() {
            return self.recv_done(id, Err(error));
        }
        let Some(memory) = self.peers[peer.index()].memory.clone() else {
            // Checked when the frame arrived.
            return self.recv_done(id, Err(OpError::PeerFailed { rank: peer }));
        };
        let Some(recv) = self.requests.recv_mut(id) else {
            return;
        };
        let buf = recv.buf.bytes_mut();
        let buffer_len = buf.len();
        let result = match buf.get_mut(..status.len) {
            None => Err(truncated(status, buffer_len)),
            Some(dst) => match memory.pull(send_id, addr, dst) {
                Ok(()) => Ok(status),
                Err(errno) if errno == nix::errno::Errno::ESRCH as i32 => {
                    // The sender exited: its pidfd fails the link soon.
                    return self.recv_done(id, Err(OpError::PeerFailed { rank: peer }));
                }
                Err(errno) => {
                    let error = ProtocolError::PullFailed { peer, errno };
                    self.recv_done(
                        id,
                        Err(OpError::ProtocolError {
                            rank: peer,
                            error: error.clone(),
                        }),
                    );
                    // The transport sees the error on its next read and
                    // closes the link.
                    self.peers[peer.index()].rx.set_error(error);
                    return self.peer_failed(peer);
                }
            },
        };
        self.queue_ack(peer, send_id);
        self.recv_done(id, result);
    }
}
