//! The bootstrap port's I/O: the listener and the ranks' connections, whose
//! bytes go to a [`BootServer`]. Shared by the local supervisor and the
//! per-host daemon; each handles the events ([`Action::Report`],
//! [`Action::FenceBatch`]) the port hands back.
//!
//! Strangers are bounded: at most [`MAX_UNAUTHENTICATED`] connections that
//! have not proven the secret are kept; a newcomer beyond that evicts the
//! oldest one if it has been silent for [`STRANGER_GRACE`] (a rank says
//! hello at once), so idle strangers cannot lock a rank out.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token};

use crate::bootserver::{Action, BootServer, ConnId};

/// Most connections that have not authenticated yet kept at once.
const MAX_UNAUTHENTICATED: usize = 1024;
/// How long a connection may stay silent before it counts as an idle
/// stranger that a newcomer may evict.
const STRANGER_GRACE: Duration = Duration::from_secs(2);

/// One bootstrap connection.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    outbox: Vec<u8>,
    /// When it was accepted, to tell idle strangers from ranks mid-hello.
    accepted: Instant,
}

/// The listener, its connections and the bootstrap logic behind them.
#[derive(Debug)]
pub(crate) struct BootPort {
    listener: TcpListener,
    conns: HashMap<ConnId, Conn>,
    next_conn: usize,
    /// The bootstrap logic (registration, fences, finalize, abort).
    pub(crate) server: BootServer,
}

impl BootPort {
    /// Polls `listener` under `token`; connections get tokens from
    /// `conn_base` up.
    pub(crate) fn new(
        poll: &Poll,
        listener: std::net::TcpListener,
        token: Token,
        conn_base: usize,
        server: BootServer,
    ) -> std::io::Result<BootPort> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, token, Interest::READABLE)?;
        Ok(BootPort {
            listener,
            conns: HashMap::new(),
            next_conn: conn_base,
            server,
        })
    }

    /// Accepts every pending connection.
    pub(crate) fn accept(&mut self, poll: &Poll) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.server.unauthenticated() >= MAX_UNAUTHENTICATED
                        && !self.evict_idle_stranger(poll)
                    {
                        continue; // a burst of fresh strangers: drop this one
                    }
                    let id = self.next_conn;
                    self.next_conn += 1;
                    let _ = stream.set_nodelay(true);
                    if poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(id),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_ok()
                    {
                        self.server.on_connect(id);
                        self.conns.insert(
                            id,
                            Conn {
                                stream,
                                outbox: Vec::new(),
                                accepted: Instant::now(),
                            },
                        );
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return, // e.g. out of descriptors: try again on the next event
            }
        }
    }

    /// Closes the oldest connection that has not proven the secret, if it
    /// has been silent for [`STRANGER_GRACE`]. False if none qualifies.
    fn evict_idle_stranger(&mut self, poll: &Poll) -> bool {
        let Some(oldest) = self.server.oldest_unauthenticated() else {
            return false;
        };
        let idle = self
            .conns
            .get(&oldest)
            .is_some_and(|conn| conn.accepted.elapsed() >= STRANGER_GRACE);
        if idle {
            self.close(poll, oldest);
        }
        idle
    }

    /// Connection `id` is readable or writable: feeds what it sent to the
    /// server, writes what is queued for it, and returns the events for the
    /// caller.
    pub(crate) fn on_conn(&mut self, poll: &Poll, id: ConnId) -> Vec<Action> {
        let mut buffer = [0u8; 16 * 1024];
        let mut actions = Vec::new();
        let mut closed = false;
        if let Some(conn) = self.conns.get_mut(&id) {
            loop {
                match conn.stream.read(&mut buffer) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => self.server.on_bytes(id, &buffer[..n], &mut actions),
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        let events = self.apply(poll, actions);
        if !self.write(id) || closed {
            self.close(poll, id);
        }
        events
    }

    /// Performs the sends and closes among `actions`; returns the rest.
    pub(crate) fn apply(&mut self, poll: &Poll, actions: Vec<Action>) -> Vec<Action> {
        let mut events = Vec::new();
        for action in actions {
            match action {
                Action::Send(id, bytes) => {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.outbox.extend_from_slice(&bytes);
                    }
                    if !self.write(id) {
                        self.close(poll, id);
                    }
                }
                Action::Close(id, _reason) => self.close(poll, id),
                other => events.push(other),
            }
        }
        events
    }

    /// Sends `bytes` to every registered rank.
    pub(crate) fn tell_ranks(&mut self, poll: &Poll, bytes: &[u8]) {
        let sends = self
            .server
            .rank_conns()
            .map(|id| Action::Send(id, bytes.to_vec()))
            .collect();
        self.apply(poll, sends);
    }

    /// Writes what is queued for `id`; false if the connection broke.
    fn write(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return true;
        };
        drain_outbox(&mut conn.stream, &mut conn.outbox)
    }

    fn close(&mut self, poll: &Poll, id: ConnId) {
        if let Some(mut conn) = self.conns.remove(&id) {
            let _ = poll.registry().deregister(&mut conn.stream);
        }
        self.server.on_close(id);
    }
}

/// Writes as much of `outbox` to a non-blocking `stream` as it takes,
/// removing what was written; false if the connection broke (an error, or
/// a write that takes nothing).
pub(crate) fn drain_outbox(stream: &mut impl Write, outbox: &mut Vec<u8>) -> bool {
    while !outbox.is_empty() {
        match stream.write(outbox) {
            Ok(0) => return false,
            Ok(n) => {
                outbox.drain(..n);
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return true,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}
