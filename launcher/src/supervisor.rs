//! The job's event loop: spawn the ranks, serve their bootstrap, forward
//! their output, watch their exits and apply the supervision rules.
//!
//! One thread, one `mio` poll: the bootstrap listener and connections, every
//! rank's stdout and stderr pipe, and the signals (SIGCHLD for exits,
//! SIGINT/SIGTERM/SIGHUP to stop the job). The rules (DESIGN §3):
//! exit 0 only if every rank exited 0 after finalizing (or never
//! initialized); the first failure prints one line naming rank, host, pid
//! and cause, stops every other rank (SIGTERM, then SIGKILL after a grace
//! period) and becomes the exit code (128+signal for a signal).

use std::io::{ErrorKind, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use mio::unix::pipe::Receiver;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::bootport::BootPort;
use crate::bootserver::{Action, BootServer, ConnId, Report};
use crate::output::{LineBuffer, flush, register_output_pipes};
use crate::rules::{Cause, describe};
use crate::spawn::{Guard, RankCommand, spawn_rank};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
/// Pipe tokens: `PIPE_BASE + 2 * rank + {0: stdout, 1: stderr}`.
const PIPE_BASE: usize = 16;
/// Bootstrap connections get tokens from here up.
const CONN_BASE: usize = 1 << 40;
/// How long output pipes may stay open after every rank exited (a rank's
/// orphaned child may hold them).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// One rank to start, with the host it runs on.
#[derive(Debug, Clone)]
pub(crate) struct RankSpec {
    /// How to start it.
    pub(crate) command: RankCommand,
    /// Host name, for messages.
    pub(crate) host: String,
}

/// What the job as a whole needs besides its ranks.
#[derive(Debug)]
pub(crate) struct JobOptions {
    /// Prefix output lines with `[rank] `.
    pub(crate) tag_output: bool,
    /// Stop the job after this long.
    pub(crate) timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub(crate) grace: Duration,
}

/// A rank being supervised.
#[derive(Debug)]
struct RankState {
    host: String,
    child: Option<Child>,
    pid: u32,
    status: Option<ExitStatus>,
    pipes: [Option<Receiver>; 2],
    lines: [LineBuffer; 2],
    tag: Vec<u8>,
    initialized: bool,
}

/// The running job.
struct Supervisor {
    poll: Poll,
    signals: Signals,
    port: BootPort,
    ranks: Vec<RankState>,
    options: JobOptions,
    started: Instant,
    failure: Option<(Option<u32>, Cause)>,
    stop_deadline: Option<Instant>,
    drain_deadline: Option<Instant>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("ranks", &self.ranks.len())
            .finish()
    }
}

/// Runs a job to its end and returns `mprun`'s exit code.
pub(crate) fn run(
    listener: std::net::TcpListener,
    secret: Vec<u8>,
    ranks: Vec<RankSpec>,
    options: JobOptions,
) -> std::io::Result<i32> {
    let guard = Guard::start()?;
    let poll = Poll::new()?;
    let mut signals = Signals::new([SIGCHLD, SIGINT, SIGTERM, SIGHUP])?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    let size = ranks.len() as u32;
    let server = BootServer::new(size, secret);
    let port = BootPort::new(&poll, listener, LISTENER, CONN_BASE, server)?;
    let mut supervisor = Supervisor {
        poll,
        port,
        signals,
        ranks: Vec::with_capacity(ranks.len()),
        options,
        started: Instant::now(),
        failure: None,
        stop_deadline: None,
        drain_deadline: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    supervisor.spawn_all(ranks, guard.group());
    let code = supervisor.event_loop();
    guard.release();
    code
}

impl Supervisor {
    fn spawn_all(&mut self, ranks: Vec<RankSpec>, group: i32) {
        for (rank, spec) in ranks.into_iter().enumerate() {
            let tag = if self.options.tag_output {
                format!("[{rank}] ").into_bytes()
            } else {
                Vec::new()
            };
            let mut state = RankState {
                host: spec.host,
                child: None,
                pid: 0,
                status: None,
                pipes: [None, None],
                lines: [LineBuffer::default(), LineBuffer::default()],
                tag,
                initialized: false,
            };
            if self.failure.is_some() {
                // A rank failed to start: don't start the rest.
                state.status = Some(ExitStatus::from_raw(0));
                self.ranks.push(state);
                continue;
            }
            match spawn_rank(&spec.command, group) {
                Ok(mut child) => {
                    state.pid = child.id();
                    if let Some(stdin) = child.stdin.take() {
                        forward_stdin(stdin);
                    }
                    state.pipes = register_output_pipes(
                        self.poll.registry(),
                        &mut child,
                        PIPE_BASE + 2 * rank,
                    );
                    state.child = Some(child);
                    self.ranks.push(state);
                }
                Err(error) => {
                    state.status = Some(ExitStatus::from_raw(127 << 8));
                    self.ranks.push(state);
                    let program = spec.command.command.first().cloned().unwrap_or_default();
                    self.fail(
                        rank as u32,
                        Cause::Spawn(format!("cannot start {program:?}: {error}")),
                    );
                }
            }
        }
    }

    fn event_loop(&mut self) -> std::io::Result<i32> {
        let mut events = Events::with_capacity(256);
        loop {
            self.check_deadlines();
            self.flush_output();
            if self.finished() {
                break;
            }
            match self.poll.poll(&mut events, self.next_wakeup()) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.port.accept(&self.poll),
                    SIGNALS => self.on_signals(),
                    Token(token) if token >= CONN_BASE => self.on_conn(token),
                    Token(token) if token >= PIPE_BASE => {
                        let index = token - PIPE_BASE;
                        self.read_pipe(index / 2, index % 2);
                    }
                    Token(_) => {}
                }
            }
        }
        self.flush_output();
        Ok(self
            .failure
            .as_ref()
            .map_or(0, |(_, cause)| cause.exit_code()))
    }

    /// Every rank exited and every pipe closed (or the drain grace ran out).
    fn finished(&mut self) -> bool {
        if self.ranks.iter().any(|rank| rank.status.is_none()) {
            return false;
        }
        let open = self
            .ranks
            .iter()
            .any(|rank| rank.pipes.iter().any(Option::is_some));
        if !open {
            return true;
        }
        let deadline = *self
            .drain_deadline
            .get_or_insert_with(|| Instant::now() + DRAIN_GRACE);
        Instant::now() >= deadline
    }

    fn next_wakeup(&self) -> Option<Duration> {
        let now = Instant::now();
        [
            self.options.timeout.map(|limit| self.started + limit),
            self.stop_deadline,
            self.drain_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|deadline| deadline.saturating_duration_since(now))
    }

    fn check_deadlines(&mut self) {
        let now = Instant::now();
        if let Some(limit) = self.options.timeout {
            if self.failure.is_none() && now >= self.started + limit {
                self.fail_job(None, Cause::Timeout(limit));
            }
        }
        if self.stop_deadline.is_some_and(|deadline| now >= deadline) {
            self.stop_deadline = None;
            self.signal_running(Signal::SIGKILL);
        }
    }

    fn on_conn(&mut self, id: ConnId) {
        let events = self.port.on_conn(&self.poll, id);
        self.apply(events);
        self.check_fence_stall();
    }

    /// Handles the bootstrap events the port hands back.
    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Report(Report::Initialized(rank)) => {
                    if let Some(state) = self.ranks.get_mut(rank as usize) {
                        state.initialized = true;
                    }
                }
                Action::Report(Report::Finalized(_))
                | Action::FenceBatch { .. }
                | Action::Send(..)
                | Action::Close(..) => {}
                Action::Report(Report::Aborted {
                    rank,
                    code,
                    message,
                }) => {
                    self.fail(rank, Cause::Abort { code, message });
                }
            }
        }
    }

    fn on_signals(&mut self) {
        let received: Vec<i32> = self.signals.pending().collect();
        for signal in received {
            match signal {
                SIGCHLD => self.reap(),
                other => self.fail_job(None, Cause::Interrupted(other)),
            }
        }
    }

    /// Collects exited ranks and applies the supervision rules.
    fn reap(&mut self) {
        for rank in 0..self.ranks.len() {
            let Some(child) = self.ranks[rank].child.as_mut() else {
                continue;
            };
            let status = match child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) | Err(_) => continue,
            };
            self.ranks[rank].child = None;
            self.ranks[rank].status = Some(status);
            // Its last words first, then any verdict on it.
            self.read_pipe(rank, 0);
            self.read_pipe(rank, 1);
            let rank = rank as u32;
            if let Some(code) = status.code() {
                if code != 0 {
                    self.fail(rank, Cause::Exit(code));
                } else if self.ranks[rank as usize].initialized && !self.port.server.finalized(rank)
                {
                    self.fail(rank, Cause::NoFinalize);
                }
            } else if let Some(signal) = status.signal() {
                self.fail(rank, Cause::Signal(signal));
            }
        }
        self.check_fence_stall();
    }

    /// Fails the job if ranks wait at a fence that an exited rank never
    /// reached (checked on exits and on fence arrivals, whichever is last).
    fn check_fence_stall(&mut self) {
        for rank in 0..self.ranks.len() as u32 {
            if self.ranks[rank as usize].status.is_some() && self.port.server.fence_waits_for(rank)
            {
                self.fail(rank, Cause::LeftFence);
            }
        }
    }

    fn read_pipe(&mut self, rank: usize, stream: usize) {
        let Some(state) = self.ranks.get_mut(rank) else {
            return;
        };
        let Some(pipe) = state.pipes[stream].as_mut() else {
            return;
        };
        let out = if stream == 0 {
            &mut self.stdout
        } else {
            &mut self.stderr
        };
        let mut buffer = [0u8; 64 * 1024];
        let eof = loop {
            match pipe.read(&mut buffer) {
                Ok(0) => break true,
                Ok(n) => state.lines[stream].push(&buffer[..n], &state.tag, out),
                Err(error) if error.kind() == ErrorKind::WouldBlock => break false,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break true,
            }
            if out.len() >= 1 << 20 {
                // Keep memory bounded while a rank floods its output.
                flush(out, stream);
            }
        };
        if eof {
            state.lines[stream].finish(&state.tag, out);
            if let Some(mut pipe) = state.pipes[stream].take() {
                let _ = self.poll.registry().deregister(&mut pipe);
            }
        }
    }

    fn flush_output(&mut self) {
        flush(&mut self.stdout, 0);
        flush(&mut self.stderr, 1);
    }

    /// Records the first failure of a rank and stops the job.
    fn fail(&mut self, rank: u32, cause: Cause) {
        self.fail_job(Some(rank), cause);
    }

    fn fail_job(&mut self, rank: Option<u32>, cause: Cause) {
        if self.failure.is_some() {
            return;
        }
        self.flush_output();
        let line = match rank {
            Some(rank) => {
                let state = &self.ranks[rank as usize];
                format!(
                    "mprun: rank {rank} (host {}, pid {}) {}; stopping the job",
                    state.host,
                    state.pid,
                    describe(&cause)
                )
            }
            None => format!("mprun: {}; stopping the job", describe(&cause)),
        };
        eprintln!("{line}");
        self.failure = Some((rank, cause));
        self.tell_ranks_about_failure(rank);
        self.signal_running(Signal::SIGTERM);
        self.stop_deadline = Some(Instant::now() + self.options.grace);
    }

    fn tell_ranks_about_failure(&mut self, rank: Option<u32>) {
        let Some(rank) = rank else { return };
        let notice = mpr::bootstrap::wire::Message::PeerFailed { rank }.encode();
        self.port.tell_ranks(&self.poll, &notice);
    }

    fn signal_running(&self, signal: Signal) {
        for state in &self.ranks {
            if state.child.is_some() && state.status.is_none() {
                let _ = kill(Pid::from_raw(state.pid as i32), signal);
            }
        }
    }
}

/// Copies `mprun`'s stdin to rank 0 on a thread of its own (stdin may be a
/// terminal, which must stay blocking).
fn forward_stdin(mut rank_stdin: std::process::ChildStdin) {
    let _ = std::thread::Builder::new()
        .name("mprun-stdin".into())
        .spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut rank_stdin);
        });
}
