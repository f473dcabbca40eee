//! The per-host daemon: `mprun --mprun-daemon --connect ADDR [--host-index I]`.
//!
//! Started once per host by a launch agent (ssh, srun, or a plain fork), it
//! dials `mprun`'s control port, proves the job secret (read from
//! `MPRUN_DAEMON_SECRET`, or from the first line of stdin when started over
//! ssh, so it never shows in `ps`), and receives its launch spec. It checks
//! that the program and working directory exist here (mprun assumes a
//! shared filesystem), starts the host's ranks in a process group led by a
//! guard (see `spawn`), serves their bootstrap on loopback (their cards go
//! up as one batch per fence), relays their output, bootstrap events and
//! exits, and forwards signals. When `mprun` goes away (the link closes or
//! stays silent for [`LINK_TIMEOUT`], or the agent closes stdin), the guard
//! kills every rank of this host.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::unix::pipe::Receiver;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use thiserror::Error;

use crate::bootserver::{Action, BootServer, ConnId, Report};
use crate::control::{
    ControlReader, Down, HEARTBEAT, LINK_TIMEOUT, LaunchSpec, MAX_DOWN_FRAME, STDERR, STDOUT, Up,
    encode, encode_into, same_secret,
};
use crate::spawn::{Guard, RankCommand, spawn_rank};

/// Hidden first argument that turns `mprun` into a per-host daemon.
pub(crate) const DAEMON_ARG: &str = "--mprun-daemon";
/// Variable carrying the job secret to a daemon started by fork or srun.
pub(crate) const SECRET_ENV: &str = "MPRUN_DAEMON_SECRET";

const CONTROL: Token = Token(0);
const SIGNALS: Token = Token(1);
const LISTENER: Token = Token(2);
const WAKER: Token = Token(3);
const PIPE_BASE: usize = 16;
const CONN_BASE: usize = 1 << 40;
/// How long the daemon tries to reach `mprun`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Output bytes queued for `mprun` past which the ranks' pipes are not read
/// (the ranks then block on a full pipe: backpressure, bounded memory).
const OUTBOX_HIGH: usize = 16 << 20;
/// How long output pipes may stay open after every rank exited.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Why the daemon stops without finishing its ranks.
#[derive(Debug, Error)]
pub(crate) enum DaemonError {
    /// The command line is not the one `mprun` builds.
    #[error("bad daemon arguments: {0}")]
    Usage(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The peer at the control address did not prove the job secret.
    #[error("the launcher at {0} did not prove the job secret")]
    Impostor(String),
    /// The control link broke or went silent: `mprun` is gone.
    #[error("lost the link to mprun: {0}; killing this host's ranks")]
    LinkLost(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// The daemon's entry point (`args` follow [`DAEMON_ARG`]).
pub(crate) fn daemon_main(args: &[String]) -> ! {
    match run(args) {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            eprintln!("mprun daemon on {}: {error}", node_name());
            std::process::exit(1)
        }
    }
}

/// This node's name: Slurm's name for it, or the host name.
fn node_name() -> String {
    std::env::var("SLURMD_NODENAME").unwrap_or_else(|_| crate::job::mpr_host_name())
}

struct DaemonArgs {
    connect: String,
    host: Option<u32>,
}

fn parse_args(args: &[String]) -> Result<DaemonArgs, DaemonError> {
    let mut connect = None;
    let mut host = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || {
            iter.next()
                .cloned()
                .ok_or_else(|| DaemonError::Usage(format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--connect" => connect = Some(value()?),
            "--host-index" => {
                let text = value()?;
                host = Some(
                    text.parse()
                        .map_err(|_| DaemonError::Usage(format!("--host-index {text}")))?,
                );
            }
            other => return Err(DaemonError::Usage(format!("unknown argument {other:?}"))),
        }
    }
    let connect = connect.ok_or_else(|| DaemonError::Usage("--connect is required".into()))?;
    Ok(DaemonArgs { connect, host })
}

/// The secret, and whether it came over stdin (whose end then means that
/// the launch agent, hence `mprun`, is gone).
fn read_secret() -> Result<(Vec<u8>, bool), DaemonError> {
    if let Ok(secret) = std::env::var(SECRET_ENV) {
        return Ok((secret.into_bytes(), false));
    }
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let mut stdin = std::io::stdin().lock();
    while line.len() < 1024 {
        match stdin.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(io("cannot read the job secret from stdin")(error)),
        }
    }
    if line.is_empty() {
        return Err(DaemonError::Usage(format!(
            "no job secret: set {SECRET_ENV} or write it on stdin"
        )));
    }
    Ok((line, true))
}

fn connect(addr: &str) -> Result<std::net::TcpStream, DaemonError> {
    let candidates: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(io(format!("cannot resolve mprun's address {addr}")))?
        .collect();
    let mut last = std::io::Error::new(ErrorKind::NotFound, "no address");
    for candidate in candidates {
        match std::net::TcpStream::connect_timeout(&candidate, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(error) => last = error,
        }
    }
    Err(io(format!("cannot connect to mprun at {addr}"))(last))
}

/// Reads the launch spec (blocking, bounded by [`LINK_TIMEOUT`] per read).
fn receive_spec(stream: &mut std::net::TcpStream, addr: &str) -> Result<LaunchSpec, DaemonError> {
    stream
        .set_read_timeout(Some(LINK_TIMEOUT))
        .map_err(io("cannot set a read timeout"))?;
    let mut reader = ControlReader::<Down>::new(MAX_DOWN_FRAME);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match reader.next_message() {
            Ok(Some(Down::Launch(spec))) => return Ok(*spec),
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(error) => return Err(DaemonError::LinkLost(error.to_string())),
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(DaemonError::Impostor(addr.to_owned())),
            Ok(n) => reader.push(&chunk[..n]),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(DaemonError::LinkLost(error.to_string())),
        }
    }
}

/// Why the ranks cannot run here, if they cannot: the program or the
/// working directory does not exist on this host.
pub(crate) fn check_paths(spec: &LaunchSpec, host: &str) -> Result<(), String> {
    let wdir = Path::new(&spec.wdir);
    if !wdir.is_dir() {
        return Err(format!(
            "working directory {} not found on host {host}: mprun assumes a shared filesystem \
             (the same paths on every host)",
            wdir.display()
        ));
    }
    let program = spec.command.first().map(String::as_str).unwrap_or("");
    let found = if program.contains('/') {
        executable(&wdir.join(program))
    } else {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| executable(&wdir.join(dir).join(program)))
        })
    };
    if found {
        Ok(())
    } else {
        Err(format!(
            "program {program} not found on host {host}: mprun assumes a shared filesystem \
             (the same program path and working directory on every host)"
        ))
    }
}

fn executable(path: &PathBuf) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn run(args: &[String]) -> Result<(), DaemonError> {
    let args = parse_args(args)?;
    let (secret, over_stdin) = read_secret()?;
    let mut stream = connect(&args.connect)?;
    let _ = stream.set_nodelay(true);
    let hello = Up::Hello {
        host: args.host,
        node_name: node_name(),
        secret: secret.clone(),
    };
    stream
        .write_all(&encode(&hello))
        .map_err(io("cannot greet mprun"))?;
    let spec = receive_spec(&mut stream, &args.connect)?;
    if !same_secret(&spec.secret, &secret) {
        return Err(DaemonError::Impostor(args.connect));
    }
    stream
        .set_nonblocking(true)
        .map_err(io("cannot make the control link non-blocking"))?;
    let mut daemon = Daemon::new(TcpStream::from_std(stream), &spec)?;
    if over_stdin {
        daemon.watch_stdin()?;
    }
    if let Err(message) = check_paths(&spec, &spec.host) {
        daemon.send(&Up::Failed { code: 127, message });
        daemon.send(&Up::Done);
        return daemon.flush_blocking();
    }
    let guard = Guard::start().map_err(io("cannot start the guard process"))?;
    daemon.spawn_all(&spec, guard.group())?;
    let result = daemon.event_loop();
    // Whatever happened, nothing of this host's job outlives the daemon.
    guard.release();
    result
}

/// One rank of this host.
#[derive(Debug)]
struct LocalRank {
    rank: u32,
    child: Option<Child>,
    pid: u32,
    exited: bool,
    pipes: [Option<Receiver>; 2],
}

/// One bootstrap connection from a local rank.
#[derive(Debug)]
struct BootConn {
    stream: TcpStream,
    outbox: Vec<u8>,
}

/// The daemon's running state.
struct Daemon {
    poll: Poll,
    control: TcpStream,
    reader: ControlReader<Down>,
    outbox: Vec<u8>,
    last_heard: Instant,
    next_heartbeat: Instant,
    listener: TcpListener,
    bootstrap: SocketAddr,
    server: BootServer,
    conns: HashMap<ConnId, BootConn>,
    next_conn: usize,
    ranks: Vec<LocalRank>,
    signals: Signals,
    stdin_closed: Arc<AtomicBool>,
    waker: Arc<Waker>,
    drain_deadline: Option<Instant>,
}

impl Daemon {
    fn new(mut control: TcpStream, spec: &LaunchSpec) -> Result<Daemon, DaemonError> {
        let poll = Poll::new().map_err(io("cannot create a poller"))?;
        poll.registry()
            .register(
                &mut control,
                CONTROL,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(io("cannot poll the control link"))?;
        let listener = crate::job::listen_loopback().map_err(io("cannot open a bootstrap port"))?;
        listener
            .set_nonblocking(true)
            .map_err(io("cannot open a bootstrap port"))?;
        let bootstrap = listener
            .local_addr()
            .map_err(io("cannot read the bootstrap address"))?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io("cannot poll the bootstrap port"))?;
        let mut signals =
            Signals::new([SIGCHLD, SIGINT, SIGTERM, SIGHUP]).map_err(io("cannot catch signals"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(io("cannot poll signals"))?;
        let waker =
            Arc::new(Waker::new(poll.registry(), WAKER).map_err(io("cannot make a waker"))?);
        let local: Vec<u32> = spec.ranks.iter().map(|rank| rank.rank).collect();
        let now = Instant::now();
        Ok(Daemon {
            poll,
            control,
            reader: ControlReader::new(MAX_DOWN_FRAME),
            outbox: Vec::new(),
            last_heard: now,
            next_heartbeat: now + HEARTBEAT,
            listener,
            bootstrap,
            server: BootServer::relay(spec.size, spec.secret.clone(), &local),
            conns: HashMap::new(),
            next_conn: CONN_BASE,
            ranks: Vec::new(),
            signals,
            stdin_closed: Arc::new(AtomicBool::new(false)),
            waker,
            drain_deadline: None,
        })
    }

    /// Reads stdin to its end on a thread; its end wakes the loop.
    fn watch_stdin(&mut self) -> Result<(), DaemonError> {
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

    fn send(&mut self, message: &Up) {
        encode_into(message, &mut self.outbox);
    }

    fn spawn_all(&mut self, spec: &LaunchSpec, group: i32) -> Result<(), DaemonError> {
        for (index, launch) in spec.ranks.iter().enumerate() {
            let mut env = launch.env.clone();
            env.push((
                mpr::env::var::BOOTSTRAP.to_owned(),
                self.bootstrap.to_string(),
            ));
            let command = RankCommand {
                command: spec.command.clone(),
                env,
                wdir: Some(PathBuf::from(&spec.wdir)),
                stdin: false,
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
                    let outputs = [
                        child.stdout.take().map(Receiver::from),
                        child.stderr.take().map(Receiver::from),
                    ];
                    for (stream, pipe) in outputs.into_iter().enumerate() {
                        if let Some(mut pipe) = pipe {
                            let token = Token(PIPE_BASE + 2 * index + stream);
                            if pipe.set_nonblocking(true).is_ok()
                                && self
                                    .poll
                                    .registry()
                                    .register(&mut pipe, token, Interest::READABLE)
                                    .is_ok()
                            {
                                state.pipes[stream] = Some(pipe);
                            }
                        }
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

    fn event_loop(&mut self) -> Result<(), DaemonError> {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            if now >= self.next_heartbeat {
                self.send(&Up::Heartbeat);
                self.next_heartbeat = now + HEARTBEAT;
            }
            if now.duration_since(self.last_heard) >= LINK_TIMEOUT {
                return Err(DaemonError::LinkLost(format!(
                    "no word from mprun for {} s",
                    LINK_TIMEOUT.as_secs_f64()
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
            let wakeup = [
                Some(self.next_heartbeat),
                Some(self.last_heard + LINK_TIMEOUT),
                self.drain_deadline,
            ]
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
                    LISTENER => self.accept(),
                    WAKER => {}
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

    /// Sends everything queued before exiting (bounded by [`LINK_TIMEOUT`]).
    fn flush_blocking(&mut self) -> Result<(), DaemonError> {
        let deadline = Instant::now() + LINK_TIMEOUT;
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
                    self.last_heard = Instant::now();
                    self.reader.push(&chunk[..n]);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(DaemonError::LinkLost(error.to_string())),
            }
        }
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
                self.server.deliver_fence(epoch, cards, &mut actions);
                self.apply(actions);
            }
            Down::PeerFailed { rank } => {
                let notice = mpr::bootstrap::wire::Message::PeerFailed { rank }.encode();
                let actions = self
                    .server
                    .rank_conns()
                    .map(|conn| Action::Send(conn, notice.clone()))
                    .collect();
                self.apply(actions);
            }
            Down::Signal { signal } => {
                if let Ok(signal) = Signal::try_from(signal) {
                    self.signal_ranks(signal);
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
            let left_fence = self.server.fence_waits_for(rank) && !self.server.finalized(rank);
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

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let id = self.next_conn;
                    self.next_conn += 1;
                    let _ = stream.set_nodelay(true);
                    if self
                        .poll
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
                            BootConn {
                                stream,
                                outbox: Vec::new(),
                            },
                        );
                    }
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn on_conn(&mut self, id: ConnId) {
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
        self.apply(actions);
        if !self.write_conn(id) || closed {
            self.close_conn(id);
        }
    }

    fn write_conn(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return true;
        };
        while !conn.outbox.is_empty() {
            match conn.stream.write(&conn.outbox) {
                Ok(n) => {
                    conn.outbox.drain(..n);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return true,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        true
    }

    fn close_conn(&mut self, id: ConnId) {
        if let Some(mut conn) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        self.server.on_close(id);
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(id, bytes) => {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.outbox.extend_from_slice(&bytes);
                    }
                    if !self.write_conn(id) {
                        self.close_conn(id);
                    }
                }
                Action::Close(id, _) => self.close_conn(id),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(program: &str, wdir: &str) -> LaunchSpec {
        LaunchSpec {
            secret: Vec::new(),
            host: "h1".into(),
            size: 1,
            command: vec![program.into()],
            wdir: wdir.into(),
            ranks: Vec::new(),
        }
    }

    #[test]
    fn missing_program_or_directory_is_a_clear_error_naming_the_host() {
        assert!(check_paths(&spec("sh", "/"), "h1").is_ok());
        assert!(check_paths(&spec("/bin/sh", "/tmp"), "h1").is_ok());
        let error = check_paths(&spec("/no/such/prog", "/"), "h1").unwrap_err();
        assert!(error.contains("program /no/such/prog not found on host h1"));
        assert!(error.contains("shared filesystem"));
        let error = check_paths(&spec("sh", "/no/such/dir"), "h1").unwrap_err();
        assert!(error.contains("working directory /no/such/dir not found on host h1"));
    }

    #[test]
    fn arguments_are_checked() {
        let args: Vec<String> = ["--connect", "a:1", "--host-index", "3"]
            .map(String::from)
            .to_vec();
        let parsed = parse_args(&args).unwrap();
        assert_eq!((parsed.connect.as_str(), parsed.host), ("a:1", Some(3)));
        assert!(parse_args(&["--host-index".into()]).is_err());
        assert!(parse_args(&["--bogus".into()]).is_err());
        assert!(parse_args(&[]).is_err());
    }
}
