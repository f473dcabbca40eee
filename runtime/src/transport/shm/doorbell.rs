//! The doorbell: how a producer wakes a rank asleep in its poller.
//!
//! Each rank binds a datagram socket in Linux's abstract unix namespace
//! (a name with no file behind it, gone when the socket closes) and
//! registers it with its poller. A producer rings by sending one byte to
//! that name, and only when the sleeper has said it sleeps (the flag in its
//! segment), so the streaming fast path makes no system call. A stray
//! datagram only causes a spurious wake-up.

use std::io::{self, ErrorKind};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The receiving end, registered with the poller.
#[derive(Debug)]
pub(crate) struct Doorbell {
    socket: mio::net::UnixDatagram,
    name: String,
}

impl Doorbell {
    /// Binds a doorbell under a fresh abstract name.
    pub(crate) fn bind(rank: u32) -> io::Result<Doorbell> {
        let mut nonce = [0u8; 8];
        let _ = getrandom::fill(&mut nonce);
        let name = format!(
            "mpr.{}.{:016x}.{rank}",
            std::process::id(),
            u64::from_le_bytes(nonce)
        );
        let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
        socket.set_nonblocking(true)?;
        Ok(Doorbell {
            socket: mio::net::UnixDatagram::from_std(socket),
            name,
        })
    }

    /// The abstract name peers ring.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The socket, for registration with the poller.
    pub(crate) fn source(&mut self) -> &mut mio::net::UnixDatagram {
        &mut self.socket
    }

    /// Swallows every pending ring.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// The sending end: one unbound socket that rings any doorbell.
#[derive(Debug)]
pub(crate) struct Ringer {
    socket: UnixDatagram,
}

impl Ringer {
    /// A socket to ring doorbells with.
    pub(crate) fn new() -> io::Result<Ringer> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Ringer { socket })
    }

    /// Rings the doorbell at `address`. A full queue already holds a ring,
    /// and a closed one belongs to a rank that has exited: both are fine.
    pub(crate) fn ring(&self, address: &SocketAddr) {
        let _ = self.socket.send_to_addr(&[1], address);
    }
}

/// The address of the doorbell named `name`.
pub(crate) fn address(name: &str) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_wakes_the_poller_and_drains() {
        let mut bell = Doorbell::bind(0).unwrap();
        let mut poll = mio::Poll::new().unwrap();
        poll.registry()
            .register(bell.source(), mio::Token(7), mio::Interest::READABLE)
            .unwrap();
        let ringer = Ringer::new().unwrap();
        ringer.ring(&address(bell.name()).unwrap());
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert!(events.iter().any(|event| event.token() == mio::Token(7)));
        bell.drain();
        let mut buf = [0u8; 4];
        assert!(bell.socket.recv(&mut buf).is_err(), "drained");
    }
}
