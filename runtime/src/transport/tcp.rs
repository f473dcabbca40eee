//! TCP links between ranks: lazy connection set-up with a deterministic
//! tie-break, the job-secret handshake, and the byte pumps that feed the
//! engine.
//!
//! # Connection set-up
//!
//! A link to a peer is opened the first time the engine has bytes for it.
//! The initiator sends HELLO (its rank and the job secret); the acceptor
//! answers HELLO_ACK with `arg = 1` (accepted) or `arg = 0` (refused) and
//! frames flow only on accepted links, so exactly one link carries each
//! direction of a pair and per-link order is message order.
//!
//! When two ranks dial each other at once, the link *initiated by the lower
//! rank* wins: the higher rank accepts the lower's HELLO and drops its own
//! attempt; the lower rank refuses the higher's HELLO. A refused initiator
//! waits for the peer's connection instead.
//!
//! A connection whose first frame is not a HELLO with the job secret (a port
//! scanner, a stray client, garbage) is closed without touching the engine.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::tcp_socket::{Congestion, connect, listen};
use crate::Rank;
use crate::engine::frame::{HEADER_LEN, Header, Kind};
use crate::engine::{Engine, ProtocolError};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Established links use `LINK_BASE + peer rank`.
const LINK_BASE: usize = 2;
/// Connections still in their handshake get tokens from here up.
const HANDSHAKE_BASE: usize = 1 << 40;
/// Tokens from here up belong to other transports sharing the poller.
const FOREIGN_BASE: usize = 1 << 48;
/// Most handshakes kept at once: beyond this an idle stranger is evicted,
/// or the newcomer dropped.
const MAX_HANDSHAKES: usize = 1024;
/// Silence after which an unauthenticated connection may be evicted.
const STRANGER_GRACE: Duration = Duration::from_secs(2);
/// Most established links read directly by a spinning waiter.
const MAX_DIRECT_LINKS: usize = 4;
/// A direct pass reading this much means bulk data is flowing...
const BULK_BYTES: usize = 16 << 10;
/// ...and the next this many spinning polls use the poller instead.
const BULK_POLLS: u32 = 64;
/// Most bytes handed to one `writev`.
const MAX_WRITE: usize = 512 << 10;
/// Most bytes of a payload read straight into its buffer by one `read`.
/// One loopback segment is 64 KiB; a read of many holds the socket's lock
/// while it copies them, and the segments that arrive meanwhile wait in
/// the backlog, unacknowledged, until it ends. Measured 2026-11-26, 2
/// ranks (medians of 6 alternating runs, reads uncapped against 64 KiB):
/// bandwidth MB/s, 256 KiB / 1 / 4 MiB 4 953 / 5 754 / 4 780 against
/// 6 071 / 6 142 / 6 194; latency µs, 1 / 2 / 4 MiB 144 / 327 / 774
/// against 141 / 282 / 603. 32 KiB read as fast but cost 3-8% of latency
/// at 128 KiB-1 MiB; 128 KiB gained little. 4 ranks, alltoall µs, 128 KiB
/// / 1 MiB blocks: unbound 191 / 1 971 against 181 / 1 869, bound 203 / 2
/// 073 against 180 / 1 964. Reads into the staging buffer (small frames)
/// stay whole: capping them cost 2-8% of bandwidth at 1-64 KiB.
const MAX_DIRECT_READ: usize = 64 << 10;

/// Socket tunables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TcpConfig {
    /// `SO_SNDBUF`/`SO_RCVBUF` in bytes; `None` keeps the kernel's autotuning.
    pub(crate) socket_buffer: Option<usize>,
}

/// Where a link to a peer stands.
#[derive(Debug)]
enum Link {
    /// Nothing yet.
    Idle,
    /// We dialled; the handshake connection has this token.
    Dialing(Token),
    /// The peer refused our dial because its own dial wins: wait for it.
    AwaitingPeer,
    /// Frames flow.
    Up { stream: TcpStream, writable: bool },
    /// Closed (after GOODBYE or a failure); never reopened.
    Closed,
}

/// A connection in its handshake.
#[derive(Debug)]
struct Handshake {
    stream: TcpStream,
    /// Our rank dialled it (we are the initiator) to this peer.
    dialed: Option<Rank>,
    /// Bytes to write (our HELLO or our answer).
    outbox: Vec<u8>,
    /// Bytes read so far.
    inbox: Vec<u8>,
    connected: bool,
    /// When the connection was made, to tell idle strangers from peers.
    started: Instant,
}

/// What happened to a link, for the runtime to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkEvent {
    /// The link to `peer` broke without a GOODBYE (or the engine found a
    /// protocol error on it).
    Failed {
        /// The peer.
        peer: Rank,
        /// A protocol violation, if that is why the link was closed.
        protocol: Option<ProtocolError>,
    },
}

/// All TCP links of one rank.
pub(crate) struct Tcp {
    rank: Rank,
    secret: Vec<u8>,
    config: TcpConfig,
    /// The congestion control of the sockets this rank dials.
    congestion: Congestion,
    poll: Poll,
    waker: Arc<Waker>,
    listener: TcpListener,
    addrs: Vec<Vec<SocketAddr>>,
    links: Vec<Link>,
    handshakes: HashMap<Token, Handshake>,
    next_token: usize,
    events: Events,
    /// Link events not yet handed to the runtime.
    pending_events: Vec<LinkEvent>,
    /// Peers whose link is up, for the spinning fast path.
    up_links: Vec<Rank>,
    /// Bytes read since the last direct pass began.
    bytes_read: usize,
    /// Bytes read or written on any link since the rank started: the wait
    /// loop compares it across a poll to tell progress from idling.
    bytes_moved: u64,
    /// Spinning polls left that use the poller because bulk data flows.
    bulk_polls: u32,
    /// Peers this rank reaches through another transport.
    elsewhere: Vec<bool>,
    /// Events of other transports' tokens, not yet handed over.
    foreign: Vec<Token>,
}

impl std::fmt::Debug for Tcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tcp")
            .field("rank", &self.rank)
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

/// A bound, not yet wired, listener: its address goes on the business card.
#[derive(Debug)]
pub(crate) struct Listening {
    listener: std::net::TcpListener,
    congestion: Congestion,
}

impl Listening {
    /// Binds the data-plane listener on `ip`, port 0; the connections it
    /// accepts and those the transport dials use `congestion`.
    pub(crate) fn bind(ip: std::net::IpAddr, congestion: Congestion) -> io::Result<Listening> {
        let listener = listen(SocketAddr::new(ip, 0), &congestion)?;
        listener.set_nonblocking(true)?;
        Ok(Listening {
            listener,
            congestion,
        })
    }

    /// The address peers dial.
    pub(crate) fn addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl Tcp {
    /// Wires the transport of `rank`, given every rank's addresses.
    pub(crate) fn new(
        rank: Rank,
        listening: Listening,
        addrs: Vec<Vec<SocketAddr>>,
        secret: Vec<u8>,
        config: TcpConfig,
    ) -> io::Result<Tcp> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let congestion = listening.congestion;
        let mut listener = TcpListener::from_std(listening.listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let size = addrs.len();
        Ok(Tcp {
            rank,
            secret,
            config,
            congestion,
            poll,
            waker,
            listener,
            addrs,
            links: (0..size).map(|_| Link::Idle).collect(),
            handshakes: HashMap::new(),
            next_token: HANDSHAKE_BASE,
            events: Events::with_capacity(256),
            pending_events: Vec::new(),
            up_links: Vec::new(),
            bytes_read: 0,
            bytes_moved: 0,
            bulk_polls: 0,
            elsewhere: vec![false; size],
            foreign: Vec::new(),
        })
    }

    /// Wakes a thread blocked in [`Tcp::progress`].
    pub(crate) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// The poller's registry, for other transports' event sources (tokens
    /// from `1 << 48` up).
    pub(crate) fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// Poller events of other transports since the last call.
    pub(crate) fn take_foreign(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.foreign)
    }

    /// This rank sends to `peer` through another transport from now on.
    pub(crate) fn route_elsewhere(&mut self, peer: Rank) {
        if let Some(flag) = self.elsewhere.get_mut(peer.index()) {
            *flag = true;
        }
    }

    /// No link is up or being set up: only strangers could show up.
    pub(crate) fn is_idle(&self) -> bool {
        self.up_links.is_empty() && self.handshakes.is_empty()
    }

    /// Reads whatever the link to `peer` holds (when its process is known
    /// to have exited, before judging whether it said goodbye).
    pub(crate) fn drain(&mut self, engine: &mut Engine, peer: Rank) {
        self.read_link(engine, peer);
    }

    /// Link events since the last call.
    pub(crate) fn take_events(&mut self) -> Vec<LinkEvent> {
        std::mem::take(&mut self.pending_events)
    }

    /// Whether frames flow on the link to `peer`.
    pub(crate) fn is_up(&self, peer: Rank) -> bool {
        matches!(self.links.get(peer.index()), Some(Link::Up { .. }))
    }

    /// Bytes read or written on any link so far: a wait loop that sees it
    /// change across a poll made progress.
    pub(crate) fn bytes_moved(&self) -> u64 {
        self.bytes_moved
    }

    /// Spinning fast path: reads every established link directly, skipping
    /// the poller, when there are at most [`MAX_DIRECT_LINKS`] of them (one
    /// `read` per link costs what one `epoll_wait` does, and saves the
    /// poll-then-read round when data is there). Returns false when the
    /// poller must be asked instead (more links, or a handshake pending).
    pub(crate) fn read_links_directly(&mut self, engine: &mut Engine) -> bool {
        if !self.handshakes.is_empty() || self.up_links.len() > MAX_DIRECT_LINKS {
            return false;
        }
        if self.bulk_polls > 0 {
            // Bulk data is flowing: a `read` on every poll would contend for
            // the socket lock with the kernel delivering it (measured: 10-20%
            // less bandwidth at 512 KiB-1 MiB), while the poller looks
            // without taking it.
            self.bulk_polls -= 1;
            return false;
        }
        let waiting_to_write = self.up_links.iter().any(|peer| {
            matches!(
                self.links[peer.index()],
                Link::Up {
                    writable: false,
                    ..
                }
            )
        });
        if waiting_to_write {
            // Only the poller reports when a full socket drains.
            return false;
        }
        self.bytes_read = 0;
        for index in 0..self.up_links.len() {
            let peer = self.up_links[index];
            self.read_link(engine, peer);
        }
        self.flush(engine);
        if self.bytes_read >= BULK_BYTES {
            self.bulk_polls = BULK_POLLS;
        }
        true
    }

    /// Moves bytes: writes what the engine has queued, waits up to
    /// `timeout` for socket events (`Some(ZERO)` polls), reads everything
    /// readable into the engine, and writes again what that produced.
    pub(crate) fn progress(
        &mut self,
        engine: &mut Engine,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.flush(engine);
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(error) => return Err(error),
        }
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            let token = event.token();
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            let writable = event.is_writable() || event.is_write_closed() || event.is_error();
            match token {
                LISTENER => self.accept(),
                WAKER => {}
                Token(t) if t >= FOREIGN_BASE => self.foreign.push(token),
                Token(t) if t >= HANDSHAKE_BASE => self.drive_handshake(engine, token),
                Token(t) => {
                    let peer = Rank((t - LINK_BASE) as u32);
                    if writable {
                        if let Some(Link::Up { writable, .. }) = self.links.get_mut(peer.index()) {
                            *writable = true;
                        }
                    }
                    if readable {
                        self.read_link(engine, peer);
                    }
                }
            }
        }
        self.events = events;
        self.flush(engine);
        Ok(())
    }

    /// Writes every peer's queued bytes, dialling peers not yet connected.
    pub(crate) fn flush(&mut self, engine: &mut Engine) {
        if engine
            .peers_with_transmit()
            .all(|peer| self.elsewhere[peer.index()])
        {
            return;
        }
        let peers: Vec<Rank> = engine.peers_with_transmit().collect();
        for peer in peers {
            if self.elsewhere[peer.index()] {
                continue;
            }
            match &self.links[peer.index()] {
                Link::Idle => self.dial(engine, peer),
                Link::Up { .. } => self.write_link(engine, peer),
                Link::Dialing(_) | Link::AwaitingPeer | Link::Closed => {}
            }
        }
    }

    fn write_link(&mut self, engine: &mut Engine, peer: Rank) {
        let Link::Up { stream, writable } = &mut self.links[peer.index()] else {
            return;
        };
        if !*writable {
            return;
        }
        loop {
            let (written, offered) = {
                let mut slices = crate::engine::Slices::new();
                engine.transmit_slices(peer, &mut slices, MAX_WRITE);
                if slices.is_empty() {
                    return;
                }
                let offered: usize = slices.iter().map(|slice| slice.len()).sum();
                (stream.write_vectored(&slices), offered)
            };
            match written {
                Ok(0) => break self.fail(engine, peer, None),
                Ok(n) => {
                    self.bytes_moved += n as u64;
                    engine.transmitted(peer, n);
                    if n < offered {
                        // The socket buffer is full: wait for the writable edge.
                        *writable = false;
                        return;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    *writable = false;
                    return;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break self.fail(engine, peer, None),
            }
        }
    }

    fn read_link(&mut self, engine: &mut Engine, peer: Rank) {
        let Link::Up { stream, .. } = &mut self.links[peer.index()] else {
            return;
        };
        loop {
            // A DATA header that may come next is read alone, so that its
            // payload lands straight in the user's buffer.
            let header_only = engine.awaits_data_header(peer);
            let target = engine.recv_target_at_most(peer, MAX_DIRECT_READ);
            let target = if header_only {
                let len = target.len().min(crate::engine::frame::HEADER_LEN);
                &mut target[..len]
            } else {
                target
            };
            let wanted = target.len();
            match stream.read(target) {
                Ok(0) => {
                    // End of stream: clean after the peer's GOODBYE.
                    if engine.peer_said_goodbye(peer) {
                        self.close(peer);
                    } else {
                        self.fail(engine, peer, None);
                    }
                    return;
                }
                Ok(n) => {
                    self.bytes_read += n;
                    self.bytes_moved += n as u64;
                    if let Err(error) = engine.received(peer, n) {
                        return self.fail(engine, peer, Some(error));
                    }
                    if n < wanted {
                        // A short read drained the socket: bytes arriving
                        // later raise a new edge, so skip the read that
                        // would only say `WouldBlock`.
                        return;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.fail(engine, peer, None),
            }
        }
    }

    /// Drops the link to `peer` and tells the engine it failed.
    fn fail(&mut self, engine: &mut Engine, peer: Rank, protocol: Option<ProtocolError>) {
        self.close(peer);
        engine.peer_failed(peer);
        self.pending_events
            .push(LinkEvent::Failed { peer, protocol });
    }

    fn close(&mut self, peer: Rank) {
        self.up_links.retain(|&up| up != peer);
        if let Link::Up { mut stream, .. } =
            std::mem::replace(&mut self.links[peer.index()], Link::Closed)
        {
            let _ = self.poll.registry().deregister(&mut stream);
        }
    }

    fn configure(&self, stream: &TcpStream) {
        let _ = stream.set_nodelay(true);
        if let Some(size) = self.config.socket_buffer {
            let socket = socket2::SockRef::from(stream);
            let _ = socket.set_send_buffer_size(size);
            let _ = socket.set_recv_buffer_size(size);
        }
    }

    fn new_token(&mut self) -> Token {
        let token = Token(self.next_token);
        self.next_token += 1;
        token
    }

    fn dial(&mut self, engine: &mut Engine, peer: Rank) {
        let Some(addr) = self
            .addrs
            .get(peer.index())
            .and_then(|addrs| addrs.first())
            .copied()
        else {
            return self.fail(engine, peer, None);
        };
        let stream = match connect(addr, &self.congestion) {
            Ok(stream) => stream,
            Err(_) => return self.fail(engine, peer, None),
        };
        let mut hello = Header::new(Kind::Hello, self.rank);
        hello.id = u64::from(self.rank.0);
        hello.arg = self.secret.len() as u64;
        let mut outbox = hello.encode().to_vec();
        outbox.extend_from_slice(&self.secret);
        let Some(token) = self.start_handshake(stream, Some(peer), outbox) else {
            return self.fail(engine, peer, None);
        };
        self.links[peer.index()] = Link::Dialing(token);
    }

    /// Registers a new connection and tracks its handshake: `dialed` names
    /// the peer we called (then `outbox` holds our HELLO), `None` for an
    /// accepted stranger.
    fn start_handshake(
        &mut self,
        mut stream: TcpStream,
        dialed: Option<Rank>,
        outbox: Vec<u8>,
    ) -> Option<Token> {
        self.configure(&stream);
        let token = self.new_token();
        self.poll
            .registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .ok()?;
        self.handshakes.insert(
            token,
            Handshake {
                stream,
                dialed,
                outbox,
                inbox: Vec::new(),
                connected: dialed.is_none(),
                started: Instant::now(),
            },
        );
        Some(token)
    }

    /// Drops the longest-waiting accepted connection that has not proven
    /// the secret, if it has been silent for [`STRANGER_GRACE`] (a peer
    /// says hello at once), so idle strangers cannot lock a real peer out.
    /// Our own dials are never evicted. False if none qualifies.
    fn evict_idle_stranger(&mut self) -> bool {
        let oldest = self
            .handshakes
            .iter()
            .filter(|(_, shake)| {
                shake.dialed.is_none() && shake.started.elapsed() >= STRANGER_GRACE
            })
            .map(|(token, _)| *token)
            .min_by_key(|token| token.0);
        match oldest.and_then(|token| self.handshakes.remove(&token)) {
            Some(mut shake) => {
                let _ = self.poll.registry().deregister(&mut shake.stream);
                true
            }
            None => false,
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.handshakes.len() >= MAX_HANDSHAKES && !self.evict_idle_stranger() {
                        continue; // a burst of fresh strangers: drop this one
                    }
                    // A stranger that cannot even be registered is dropped.
                    let _ = self.start_handshake(stream, None, Vec::new());
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    /// Advances one handshake: write our part, read theirs, decide.
    fn drive_handshake(&mut self, engine: &mut Engine, token: Token) {
        let Some(mut shake) = self.handshakes.remove(&token) else {
            return;
        };
        match pump_handshake(&mut shake) {
            Pump::Pending => {
                self.handshakes.insert(token, shake);
            }
            Pump::Broken => self.handshake_broke(engine, shake),
            Pump::Frame(header, payload) => match shake.dialed {
                Some(peer) => self.on_answer(engine, peer, shake, header),
                None => self.on_hello(engine, shake, header, payload),
            },
        }
    }

    fn handshake_broke(&mut self, engine: &mut Engine, mut shake: Handshake) {
        let _ = self.poll.registry().deregister(&mut shake.stream);
        if let Some(peer) = shake.dialed {
            if matches!(self.links[peer.index()], Link::Dialing(_)) {
                // The peer could not be reached at all.
                self.links[peer.index()] = Link::Idle;
                self.fail(engine, peer, None);
            }
        }
    }

    /// Our dial got an answer.
    fn on_answer(&mut self, engine: &mut Engine, peer: Rank, mut shake: Handshake, header: Header) {
        let accepted = header.kind == Kind::HelloAck && header.arg == 1 && header.source == peer;
        if !matches!(self.links[peer.index()], Link::Dialing(_)) {
            // Superseded by the peer's own connection meanwhile.
            let _ = self.poll.registry().deregister(&mut shake.stream);
            return;
        }
        if accepted {
            self.promote(engine, peer, shake.stream);
        } else {
            let _ = self.poll.registry().deregister(&mut shake.stream);
            self.links[peer.index()] = Link::AwaitingPeer;
        }
    }

    /// A stranger sent its first frame.
    fn on_hello(
        &mut self,
        engine: &mut Engine,
        mut shake: Handshake,
        header: Header,
        payload: Vec<u8>,
    ) {
        let peer = Rank(header.id as u32);
        let valid = header.kind == Kind::Hello
            && header.id == u64::from(header.source.0)
            && peer.index() < self.links.len()
            && peer != self.rank
            && constant_time_eq(&payload, &self.secret);
        if !valid {
            // A stray or hostile connection: drop it, the job never notices.
            let _ = self.poll.registry().deregister(&mut shake.stream);
            return;
        }
        let accept = match &self.links[peer.index()] {
            Link::Idle | Link::AwaitingPeer => true,
            // Both dialled: the lower rank's dial wins.
            Link::Dialing(_) => peer < self.rank,
            Link::Up { .. } | Link::Closed => false,
        };
        let mut answer = Header::new(Kind::HelloAck, self.rank);
        answer.arg = u64::from(accept);
        shake.outbox = answer.encode().to_vec();
        if !accept {
            // Best effort refusal, then close.
            let _ = shake.stream.write(&shake.outbox);
            let _ = self.poll.registry().deregister(&mut shake.stream);
            return;
        }
        if let Link::Dialing(ours) = self.links[peer.index()] {
            if let Some(mut dropped) = self.handshakes.remove(&ours) {
                let _ = self.poll.registry().deregister(&mut dropped.stream);
            }
        }
        match write_all_nonblocking(&mut shake.stream, &shake.outbox) {
            Ok(()) => self.promote(engine, peer, shake.stream),
            Err(_) => {
                let _ = self.poll.registry().deregister(&mut shake.stream);
                self.links[peer.index()] = Link::Idle;
            }
        }
    }

    /// The handshake succeeded: frames may flow on `stream`.
    fn promote(&mut self, engine: &mut Engine, peer: Rank, mut stream: TcpStream) {
        let token = Token(LINK_BASE + peer.index());
        if self
            .poll
            .registry()
            .reregister(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            return self.fail(engine, peer, None);
        }
        self.up_links.push(peer);
        self.links[peer.index()] = Link::Up {
            stream,
            writable: true,
        };
        // Bytes may already wait on it: edge-triggered readiness may not fire again.
        self.read_link(engine, peer);
        self.write_link(engine, peer);
    }
}

/// Result of pumping a handshake connection.
enum Pump {
    /// Needs more readiness.
    Pending,
    /// Closed or failed before a frame arrived.
    Broken,
    /// The first frame (header and payload) arrived.
    Frame(Header, Vec<u8>),
}

fn pump_handshake(shake: &mut Handshake) -> Pump {
    if !shake.connected {
        if let Ok(Some(_)) | Err(_) = shake.stream.take_error() {
            return Pump::Broken;
        }
        match shake.stream.peer_addr() {
            Ok(_) => shake.connected = true,
            Err(error) if error.kind() == ErrorKind::NotConnected => return Pump::Pending,
            Err(_) => return Pump::Broken,
        }
    }
    while !shake.outbox.is_empty() {
        match shake.stream.write(&shake.outbox) {
            Ok(0) => return Pump::Broken,
            Ok(n) => {
                shake.outbox.drain(..n);
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Pump::Pending,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Pump::Broken,
        }
    }
    // Read exactly the first frame: later bytes belong to the engine.
    loop {
        let wanted = if shake.inbox.len() < HEADER_LEN {
            HEADER_LEN
        } else {
            let mut raw = [0u8; HEADER_LEN];
            raw.copy_from_slice(&shake.inbox[..HEADER_LEN]);
            let header = match Header::decode(&raw) {
                Ok(header) if matches!(header.kind, Kind::Hello | Kind::HelloAck) => header,
                _ => return Pump::Broken,
            };
            let total = HEADER_LEN + header.payload_len() as usize;
            if shake.inbox.len() == total {
                return Pump::Frame(header, shake.inbox[HEADER_LEN..].to_vec());
            }
            total
        };
        let start = shake.inbox.len();
        shake.inbox.resize(wanted, 0);
        match shake.stream.read(&mut shake.inbox[start..]) {
            Ok(0) => return Pump::Broken,
            Ok(n) => shake.inbox.truncate(start + n),
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                shake.inbox.truncate(start);
                return Pump::Pending;
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => shake.inbox.truncate(start),
            Err(_) => return Pump::Broken,
        }
    }
}

/// Writes a few bytes on a fresh socket, whose buffer is empty.
fn write_all_nonblocking(stream: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
