//! The per-host daemon's event loop: its ranks, their bootstrap, their
//! output, and the control link to `mprun` (see `daemon` for the whole).

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::pipe::Receiver;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use mpr::bootstrap::addresses::{INTERFACE_VAR, MULTI_HOST_VAR};

use crate::bootport::BootPort;
use crate::bootserver::{Action, BootServer, ConnId, Report};
use crate::control::{ControlReader, Down, LaunchSpec, LinkWatch, STDERR, STDOUT, Up, encode_into};
use crate::daemon::{DaemonError, io};
use crate::output::register_output_pipes;
use crate::spawn::{RankCommand, spawn_rank};
use crate::stdin::StdinSink;

const CONTROL: Token = Token(0);
const SIGNALS: Token = Token(1);
const LISTENER: Token = Token(2);
const WAKER: Token = Token(3);
const PIPE_BASE: usize = 16;
const CONN_BASE: usize = 1 << 40;
/// Output bytes queued for `mprun` past which the ranks' pipes are not read
/// (the ranks then block on a full pipe: backpressure, bounded memory).
const OUTBOX_HIGH: usize = 16 << 20;
/// How long output pipes may stay open after every rank exited.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// One rank of this host.
#[derive(Debug)]
struct LocalRank {
    rank: u32,
    child: Option<Child>,
    pid: u32,
    exited: bool,
    pipes: [Option<Receiver>; 2],
}

/// The daemon's running state.
pub(crate) struct Daemon {
    poll: Poll,
    control: TcpStream,
    reader: ControlReader<Down>,
    outbox: Vec<u8>,
    link: LinkWatch,
    bootstrap: SocketAddr,
    port: BootPort,
    ranks: Vec<LocalRank>,
    signals: Signals,
    stdin_closed: Arc<AtomicBool>,
    rank_stdin: Option<StdinSink>,
    waker: Arc<Waker>,
    drain_deadline: Option<Instant>,
}

impl Daemon {
    /// The daemon for `spec`, on the control link `control` whose reader
    /// may already hold messages that followed the spec.
    pub(crate) fn new(
        mut control: TcpStream,
        reader: ControlReader<Down>,
        spec: &LaunchSpec,
    ) -> Result<Daemon, DaemonError> {
        let poll = Poll::new().map_err(io("cannot create a poller"))?;
        poll.registry()
            .register(
                &mut control,
                CONTROL,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(io("cannot poll the control link"))?;
        let listener = crate::job::listen_loopback().map_err(io("cannot open a bootstrap port"))?;
        let bootstrap = listener
            .local_addr()
            .map_err(io("cannot read the bootstrap address"))?;
        let local: Vec<u32> = spec.ranks.iter().map(|rank| rank.rank).collect();
        let server = BootServer::relay(spec.size, spec.secret.clone(), &local);
        let port = BootPort::new(&poll, listener, LISTENER, CONN_BASE, server)
            .map_err(io("cannot poll the bootstrap port"))?;
        let mut signals =
            Signals::new([SIGCHLD, SIGINT, SIGTERM, SIGHUP]).map_err(io("cannot catch signals"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(io("cannot poll signals"))?;
        let waker =
            Arc::new(Waker::new(poll.registry(), WAKER).map_err(io("cannot make a waker"))?);
        let now = Instant::now();
        Ok(Daemon {
            poll,
            control,
            reader,
            outbox: Vec::new(),
            link: LinkWatch::new(now, Duration::from_millis(spec.link_timeout_ms.max(100))),
            bootstrap,
            port,
            ranks: Vec::new(),
            signals,
            stdin_closed: Arc::new(AtomicBool::new(false)),
            rank_stdin: None,
            waker,
            drain_deadline: None,
        })
    }

    /// In a multi-host job without `--interface`, the ranks publish the
    /// address this host reaches `mprun` from: routable from `mprun`'s host
    /// and, in a cluster, from the others (unlike, say, a container bridge's).
    fn data_plane_hint(&self, env: &[(String, String)]) -> Option<String> {
        let set = |name: &str| env.iter().any(|(key, _)| key == name);
        let multi_host = env
            .iter()
            .any(|(key, value)| key == MULTI_HOST_VAR && value == "1");
        if !multi_host || set(INTERFACE_VAR) {
            return None;
        }
        let ip = self.control.local_addr().ok()?.ip();
        if ip.is_loopback() || ip.is_unspecified() {
            return None;
        }
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        Some(format!("{ip}/{bits}"))
    }

    /// Reads stdin to its end on a thread; its end wakes the loop.
    pub(crate) fn watch_stdin(&mut self) -> Result<(), DaemonError> {
        let closed = Arc::clone(&self.stdin_closed);
        let waker = Arc::clone(&self.waker);
        std::thread::Builder::new()
            .name("mprun-daemon-stdin".into())
            .spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                closed.store(true, Ordering::SeqCst);
                let _ = waker.wake();
            })
            .map_err(io("cannot start the stdin watcher"))?;
        Ok(())
    }

    pub(crate) fn send(&mut self, message: &Up) {
        encode_into(message, &mut self.outbox);
    }

    pub(crate) fn spawn_all(&mut self, spec: &LaunchSpec, group: i32) -> Result<(), DaemonError> {
        for (index, launch) in spec.ranks.iter().enumerate() {
            let mut env = launch.env.clone();
            env.push((
                mpr::env::var::BOOTSTRAP.to_owned(),
                self.bootstrap.to_string(),
            ));
            if let Some(interface) = self.data_plane_hint(&env) {
                env.push((INTERFACE_VAR.to_owned(), interface));
            }
            let command = RankCommand {
                command: spec.command.clone(),
                env,
                wdir: Some(PathBuf::from(&spec.wdir)),
                stdin: launch.stdin,
            };
            let mut state = LocalRank {
                rank: launch.rank,
                child: None,
                pid: 0,
                exited: false,
                pipes: [None, None],
            };
            match spawn_rank(&command, group) {
                Ok(mut child) => {
                    state.pid = child.id();
                    state.pipes = register_output_pipes(
                        self.poll.registry(),
                        &mut child,
                        PIPE_BASE + 2 * index,
                    );
                    if let Some(pipe) = child.stdin.take() {
                        self.rank_stdin = Some(
                            StdinSink::start(pipe, Arc::clone(&self.waker))
                                .map_err(io("cannot start the stdin writer"))?,
                        );
                    }
                    state.child = Some(child);
                    self.send(&Up::Started {
                        rank: launch.rank,
                        pid: state.pid,
                    });
                }
                Err(error) => {
                    state.exited = true;
                    let program = spec.command.first().cloned().unwrap_or_default();
                    self.send(&Up::Failed {
                        code: 127,
                        message: format!(
                            "rank {} (host {}) cannot start {program:?}: {error}",
                            launch.rank, spec.host
                        ),
                    });
                }
            }
            self.ranks.push(state);
        }
        self.flush();
        Ok(())
    }

    pub(crate) fn event_loop(&mut self) -> Result<(), DaemonError> {
        let mut events = Events::with_capacity(256);
        // What came right behind the launch spec.
        self.on_messages()?;
        loop {
            let now = Instant::now();
            if self.link.beat_due(now) {
                self.send(&Up::Heartbeat);
            }
            if self.link.dead(now) {
                return Err(DaemonError::LinkLost(format!(
                    "no word from mprun for {} s",
                    self.link.timeout().as_secs_f64()
                )));
            }
            if self.stdin_closed.load(Ordering::SeqCst) {
                return Err(DaemonError::LinkLost(
                    "the launch agent closed the daemon's stdin".into(),
                ));
            }
            if !self.flush() {
                return Err(DaemonError::LinkLost("the control link broke".into()));
            }
            if self.finished() {
                self.send(&Up::Done);
                return self.flush_blocking();
            }
            let wakeup = [Some(self.link.next_deadline()), self.drain_deadline]
                .into_iter()
                .flatten()
                .min()
                .map(|deadline| deadline.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, wakeup) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(io("poll failed")(error)),
            }
            for event in events.iter() {
                match event.token() {
                    CONTROL => self.on_control()?,
                    SIGNALS => self.on_signals(),
                    LISTENER => self.port.accept(&self.poll),
                    WAKER => {
                        let chunks = self.rank_stdin.as_ref().map_or(0, StdinSink::take_written);
                        if chunks > 0 {
                            self.send(&Up::StdinAck { chunks });
                        }
                    }
                    Token(token) if token >= CONN_BASE => self.on_conn(token),
                    Token(token) if token >= PIPE_BASE => {
                        let index = token - PIPE_BASE;
                        self.read_pipe(index / 2, index % 2);
                    }
                    Token(_) => {}
                }
            }
        }
    }

    /// Every rank exited and its output was read (or the drain grace ran out).
    fn finished(&mut self) -> bool {
        if self.ranks.iter().any(|rank| !rank.exited) {
            return false;
        }
        if self
            .ranks
            .iter()
            .all(|rank| rank.pipes.iter().all(Option::is_none))
        {
            return true;
        }
        let deadline = *self
            .drain_deadline
            .get_or_insert_with(|| Instant::now() + DRAIN_GRACE);
        Instant::now() >= deadline
    }

    /// Writes what is queued for `mprun`; false if the link broke.
    fn flush(&mut self) -> bool {
        let was_high = self.outbox.len() >= OUTBOX_HIGH;
        while !self.outbox.is_empty() {
            match self.control.write(&self.outbox) {
                Ok(n) => {
                    self.outbox.drain(..n);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        if was_high && self.outbox.len() < OUTBOX_HIGH {
            // Resume the pipes paused by backpressure.
            for index in 0..self.ranks.len() {
                self.read_pipe(index, 0);
                self.read_pipe(index, 1);
            }
        }
        true
    }

    /// Sends everything queued before exiting (bounded by the link timeout).
    pub(crate) fn flush_blocking(&mut self) -> Result<(), DaemonError> {
        let deadline = Instant::now() + self.link.timeout();
        let mut events = Events::with_capacity(8);
        while !self.outbox.is_empty() {
            if !self.flush() {
                return Err(DaemonError::LinkLost("the control link broke".into()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DaemonError::LinkLost("mprun stopped reading".into()));
            }
            if !self.outbox.is_empty() {
                let _ = self.poll.poll(&mut events, Some(left));
            }
        }
        Ok(())
    }

    fn on_control(&mut self) -> Result<(), DaemonError> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.control.read(&mut chunk) {
                Ok(0) => return Err(DaemonError::LinkLost("mprun closed the link".into())),
                Ok(n) => {
                    self.link.heard(Instant::now());
                    self.reader.push(&chunk[..n]);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(DaemonError::LinkLost(error.to_string())),
            }
        }
        self.on_messages()
    }

    /// Handles the whole messages the control reader holds.
    fn on_messages(&mut self) -> Result<(), DaemonError> {
        loop {
            match self.reader.next_message() {
                Ok(Some(message)) => self.on_down(message),
                Ok(None) => return Ok(()),
                Err(error) => return Err(DaemonError::LinkLost(error.to_string())),
            }
        }
    }

    fn on_down(&mut self, message: Down) {
        match message {
            Down::FenceDone { epoch, cards } => {
                let mut actions = Vec::new();
                self.port.server.deliver_fence(epoch, cards, &mut actions);
                let events = self.port.apply(&self.poll, actions);
                self.apply(events);
            }
            Down::PeerFailed { rank } => {
                let notice = mpr::bootstrap::wire::Message::PeerFailed { rank }.encode();
                self.port.tell_ranks(&self.poll, &notice);
            }
            Down::Signal { signal } => {
                if let Ok(signal) = Signal::try_from(signal) {
                    self.signal_ranks(signal);
                }
            }
            Down::Stdin(chunk) => match &self.rank_stdin {
                Some(sink) => sink.write(chunk),
                None => self.send(&Up::StdinAck { chunks: 1 }),
            },
            Down::StdinClosed => {
                if let Some(sink) = self.rank_stdin.as_mut() {
                    sink.close();
                }
            }
            Down::Heartbeat | Down::Launch(_) => {}
        }
    }

    fn signal_ranks(&self, signal: Signal) {
        for rank in &self.ranks {
            if rank.child.is_some() && !rank.exited {
                let _ = kill(Pid::from_raw(rank.pid as i32), signal);
            }
        }
    }

    fn on_signals(&mut self) {
        let received: Vec<i32> = self.signals.pending().collect();
        for signal in received {
            if signal == SIGCHLD {
                self.reap();
            } else {
                // srun or an operator stops this host: stop its ranks.
                self.signal_ranks(Signal::SIGTERM);
            }
        }
    }

    fn reap(&mut self) {
        for index in 0..self.ranks.len() {
            let Some(child) = self.ranks[index].child.as_mut() else {
                continue;
            };
            let status = match child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) | Err(_) => continue,
            };
            self.ranks[index].child = None;
            self.ranks[index].exited = true;
            // Its last words first, then its exit.
            self.read_pipe(index, 0);
            self.read_pipe(index, 1);
            let rank = self.ranks[index].rank;
            let left_fence =
                self.port.server.fence_waits_for(rank) && !self.port.server.finalized(rank);
            self.send(&Up::Exited {
                rank,
                code: status.code(),
                signal: status.signal(),
                left_fence,
            });
        }
    }

    fn read_pipe(&mut self, index: usize, stream: usize) {
        let Some(state) = self.ranks.get_mut(index) else {
            return;
        };
        let rank = state.rank;
        let Some(pipe) = state.pipes[stream].as_mut() else {
            return;
        };
        let mut buffer = [0u8; 64 * 1024];
        let eof = loop {
            if self.outbox.len() >= OUTBOX_HIGH {
                break false; // resumed by `flush`
            }
            match pipe.read(&mut buffer) {
                Ok(0) => break true,
                Ok(n) => encode_into(
                    &Up::Output {
                        rank,
                        stream: if stream == 0 { STDOUT } else { STDERR },
                        bytes: buffer[..n].to_vec(),
                    },
                    &mut self.outbox,
                ),
                Err(error) if error.kind() == ErrorKind::WouldBlock => break false,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break true,
            }
        };
        if eof {
            if let Some(mut pipe) = state.pipes[stream].take() {
                let _ = self.poll.registry().deregister(&mut pipe);
            }
        }
    }

    fn on_conn(&mut self, id: ConnId) {
        let events = self.port.on_conn(&self.poll, id);
        self.apply(events);
    }

    /// Passes the bootstrap events the port hands back up to `mprun`.
    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(..) | Action::Close(..) => {}
                Action::Report(Report::Initialized(rank)) => self.send(&Up::Initialized { rank }),
                Action::Report(Report::Finalized(rank)) => self.send(&Up::Finalized { rank }),
                Action::Report(Report::Aborted {
                    rank,
                    code,
                    message,
                }) => self.send(&Up::Aborted {
                    rank,
                    code,
                    message,
                }),
                Action::FenceBatch { epoch, cards } => self.send(&Up::Fence { epoch, cards }),
            }
        }
    }
}
