//! Supervising a job that spans hosts: one daemon per host, started by a
//! launch agent, reporting over a control link (see `control`).
//!
//! One thread, one `mio` poll, as in `supervisor`: the control listener and
//! links, the agents' stderr pipes, the signals and the timers. Agents are
//! started in parallel, at most `concurrency` of them still waiting for
//! their daemon to call back at once. The ranks' events flow through the
//! same rules as local ones (`rules`); a host whose daemon dies, whose
//! link closes or stays silent for the link timeout, or whose agent fails
//! before the daemon calls back, stops the job with a line naming it.

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::signal::Signal;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::agent::{self, LauncherKind};
use crate::agents::Agents;
use crate::control::{
    ControlReader, Down, LaunchSpec, LinkWatch, MAX_UP_FRAME, RankLaunch, Up, encode_into,
    same_secret,
};
use crate::fence::Fences;
use crate::hosts::{HostState, Hosts};
use crate::output::{LineBuffer, flush};
use crate::rules::{Cause, describe};
use crate::stdin::StdinSource;
use crate::supervisor::JobOptions;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const WAKER: Token = Token(2);
/// Agent stderr tokens: `AGENT_BASE + agent`.
const AGENT_BASE: usize = 16;
/// Control connections get tokens from here up.
const CONN_BASE: usize = 1 << 40;
/// How long a daemon may take to call back after its agent started.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Most connections that have not said hello kept at once.
const MAX_STRANGERS: usize = 256;

/// One host of the job and the ranks it runs.
#[derive(Debug, Clone)]
pub(crate) struct PlannedHost {
    /// Name as in the hostfile or allocation.
    pub(crate) name: String,
    /// `addr:port` its daemon dials.
    pub(crate) connect: String,
    /// Its ranks.
    pub(crate) ranks: Vec<RankLaunch>,
}

/// Everything a multi-host job needs.
#[derive(Debug)]
pub(crate) struct ClusterPlan {
    /// Hosts that run ranks, in node order.
    pub(crate) hosts: Vec<PlannedHost>,
    /// World size.
    pub(crate) size: u32,
    /// Program and arguments.
    pub(crate) command: Vec<String>,
    /// Working directory of every rank.
    pub(crate) wdir: String,
    /// How daemons are started.
    pub(crate) kind: LauncherKind,
    /// The split `--launch-agent`.
    pub(crate) agent: Vec<String>,
    /// Most agents waiting for their daemon at once.
    pub(crate) concurrency: usize,
    /// `mprun` itself, as the daemons run it (same path on every host).
    pub(crate) exe: PathBuf,
    /// Silence after which a host (or, on its side, `mprun`) counts as gone.
    pub(crate) link_timeout: Duration,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    reader: ControlReader<Up>,
    outbox: Vec<u8>,
    host: Option<usize>,
    link: LinkWatch,
}

#[derive(Debug)]
struct RankState {
    host: usize,
    pid: u32,
    ended: bool,
    initialized: bool,
    finalized: bool,
    lines: [LineBuffer; 2],
    tag: Vec<u8>,
}

struct Cluster {
    poll: Poll,
    listener: TcpListener,
    signals: Signals,
    secret: Vec<u8>,
    plan: ClusterPlan,
    hosts: Hosts,
    ranks: Vec<RankState>,
    conns: HashMap<usize, Conn>,
    next_conn: usize,
    agents: Agents,
    stdin: Option<StdinSource>,
    /// The host of rank 0, which reads `mprun`'s stdin.
    stdin_host: Option<usize>,
    fences: Fences,
    options: JobOptions,
    started: Instant,
    failure: Option<Cause>,
    stop_deadline: Option<Instant>,
    give_up_deadline: Option<Instant>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("hosts", &self.hosts.len())
            .finish()
    }
}

/// Runs a multi-host job to its end and returns `mprun`'s exit code.
pub(crate) fn run(
    listener: std::net::TcpListener,
    secret: Vec<u8>,
    plan: ClusterPlan,
    options: JobOptions,
) -> std::io::Result<i32> {
    let poll = Poll::new()?;
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut signals = Signals::new([SIGCHLD, SIGINT, SIGTERM, SIGHUP])?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    let mut ranks: Vec<RankState> = (0..plan.size)
        .map(|rank| RankState {
            host: 0,
            pid: 0,
            ended: false,
            initialized: false,
            finalized: false,
            lines: [LineBuffer::default(), LineBuffer::default()],
            tag: if options.tag_output {
                format!("[{rank}] ").into_bytes()
            } else {
                Vec::new()
            },
        })
        .collect();
    let mut named = Vec::with_capacity(plan.hosts.len());
    for (index, host) in plan.hosts.iter().enumerate() {
        for launch in &host.ranks {
            if let Some(rank) = ranks.get_mut(launch.rank as usize) {
                rank.host = index;
            }
        }
        let local: Vec<u32> = host.ranks.iter().map(|launch| launch.rank).collect();
        named.push((host.name.clone(), local));
    }
    let hosts = Hosts::new(named, plan.concurrency);
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let stdin_host = ranks.first().map(|rank| rank.host);
    let now = Instant::now();
    let mut cluster = Cluster {
        poll,
        listener,
        signals,
        secret,
        fences: Fences::new(plan.size),
        plan,
        hosts,
        ranks,
        conns: HashMap::new(),
        next_conn: CONN_BASE,
        agents: Agents::new(AGENT_BASE),
        stdin: Some(StdinSource::start(waker)?),
        stdin_host,
        options,
        started: now,
        failure: None,
        stop_deadline: None,
        give_up_deadline: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    cluster.launch();
    let result = cluster.event_loop();
    cluster.flush_output();
    let Cluster {
        agents,
        poll,
        signals,
        hosts,
        ..
    } = &mut cluster;
    let doomed: Vec<usize> = hosts
        .iter()
        .filter(|host| host.state == HostState::Lost)
        .filter_map(|host| host.agent)
        .collect();
    agents.finish(poll, &doomed, || {
        let _ = signals.pending().count();
    });
    result
}

impl Cluster {
    /// Starts agents: under Slurm one `srun` for every host, otherwise one
    /// agent per host, at most `concurrency` waiting for a call-back.
    fn launch(&mut self) {
        if self.failure.is_some() {
            return;
        }
        if self.plan.kind == LauncherKind::Slurm {
            if !self.hosts.none_launched() {
                return;
            }
            let nodes: Vec<String> = self.hosts.iter().map(|host| host.name.clone()).collect();
            let connect = self.plan.hosts.first().map(|h| h.connect.clone());
            let line =
                agent::srun_command_line(&self.plan.exe, &nodes, &connect.unwrap_or_default());
            let all: Vec<usize> = (0..self.hosts.len()).collect();
            self.start_agent(&line, true, &all);
            return;
        }
        for index in self.hosts.to_launch() {
            let planned = &self.plan.hosts[index];
            // This machine's share of the job needs no ssh.
            let kind = if crate::job::is_local(&planned.name) {
                LauncherKind::Fork
            } else {
                self.plan.kind
            };
            let line = agent::host_command_line(
                kind,
                &self.plan.agent,
                &self.plan.exe,
                &planned.name,
                index as u32,
                &planned.connect,
            );
            self.start_agent(&line, false, &[index]);
        }
    }

    fn start_agent(&mut self, line: &[String], secret_in_env: bool, hosts: &[usize]) {
        let started = self
            .agents
            .spawn(&self.poll, line, &self.secret, secret_in_env);
        self.hosts
            .launching(hosts, started.as_ref().ok().copied(), Instant::now());
        if let Err(error) = started {
            let program = line.first().cloned().unwrap_or_default();
            for &index in hosts {
                self.lose_host(
                    index,
                    format!("cannot run the launch agent {program:?}: {error}"),
                );
            }
        }
    }

    fn on_agent_exits(&mut self) {
        for (id, status) in self.agents.reap(&self.poll) {
            // 127: the remote shell did not find mprun there.
            let hint = if status.code() == Some(127) {
                format!(
                    " (is {} there? mprun assumes a shared filesystem)",
                    self.plan.exe.display()
                )
            } else {
                String::new()
            };
            for index in self.hosts.launching_by(id) {
                let reason = format!(
                    "its launch agent exited ({status}) before the daemon called back{hint}{}",
                    self.agents.tail(Some(id))
                );
                self.lose_host(index, reason);
            }
        }
    }

    fn event_loop(&mut self) -> std::io::Result<i32> {
        let mut events = Events::with_capacity(256);
        loop {
            self.check_timers();
            self.flush_output();
            if self.hosts.all_finished() {
                break;
            }
            match self.poll.poll(&mut events, self.next_wakeup()) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => self.pump_stdin(),
                    SIGNALS => self.on_signals(),
                    Token(token) if token >= CONN_BASE => self.on_conn(token),
                    Token(token) if token >= AGENT_BASE => {
                        self.agents.read(&self.poll, token - AGENT_BASE)
                    }
                    Token(_) => {}
                }
            }
        }
        Ok(self.failure.as_ref().map_or(0, Cause::exit_code))
    }

    fn next_wakeup(&self) -> Option<Duration> {
        let now = Instant::now();
        let launching = self.hosts.next_launch_deadline(LAUNCH_TIMEOUT);
        let links = self.conns.values().map(|conn| conn.link.next_deadline());
        [
            self.options.timeout.map(|limit| self.started + limit),
            self.stop_deadline,
            self.give_up_deadline,
        ]
        .into_iter()
        .flatten()
        .chain(launching)
        .chain(links)
        .min()
        .map(|deadline| deadline.saturating_duration_since(now))
    }

    fn check_timers(&mut self) {
        let now = Instant::now();
        // Strangers that never said hello are dropped.
        let stale: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.host.is_none() && conn.link.dead(now))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.close_conn(id);
        }
        if let Some(limit) = self.options.timeout {
            if self.failure.is_none() && now >= self.started + limit {
                self.fail_job(None, Cause::Timeout(limit));
            }
        }
        for index in self.hosts.launch_expired(now, LAUNCH_TIMEOUT) {
            let reason = format!(
                "its daemon did not call back within {} s{}",
                LAUNCH_TIMEOUT.as_secs(),
                self.agents.tail(self.hosts[index].agent)
            );
            self.lose_host(index, reason);
        }
        for index in 0..self.hosts.len() {
            if self.hosts[index].state != HostState::Running {
                continue;
            }
            let Some(conn) = self.hosts[index]
                .conn
                .and_then(|id| self.conns.get_mut(&id))
            else {
                continue;
            };
            let beat = conn.link.beat_due(now);
            if conn.link.dead(now) {
                let silence = conn.link.timeout().as_secs_f64();
                self.lose_host(
                    index,
                    format!(
                        "no heartbeat from its daemon for {silence} s (the host is down or its link is cut)"
                    ),
                );
            } else if beat {
                self.send(index, &Down::Heartbeat);
            }
        }
        if self.stop_deadline.is_some_and(|deadline| now >= deadline) {
            self.stop_deadline = None;
            self.broadcast(&Down::Signal {
                signal: Signal::SIGKILL as i32,
            });
        }
        if self
            .give_up_deadline
            .is_some_and(|deadline| now >= deadline)
        {
            self.give_up_deadline = None;
            for index in 0..self.hosts.len() {
                if !self.hosts[index].state.finished() {
                    self.lose_host(
                        index,
                        "its daemon did not finish after the job stopped".into(),
                    );
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let strangers = self.conns.values().filter(|c| c.host.is_none()).count();
                    if strangers >= MAX_STRANGERS {
                        continue;
                    }
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
                        self.conns.insert(
                            id,
                            Conn {
                                stream,
                                reader: ControlReader::new(MAX_UP_FRAME),
                                outbox: Vec::new(),
                                host: None,
                                link: LinkWatch::new(Instant::now(), self.plan.link_timeout),
                            },
                        );
                    }
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn on_conn(&mut self, id: usize) {
        let mut chunk = [0u8; 64 * 1024];
        let mut broken = None;
        let mut messages = Vec::new();
        if let Some(conn) = self.conns.get_mut(&id) {
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => {
                        broken =
                            Some("its daemon closed the link (it died or was killed)".to_owned());
                        break;
                    }
                    Ok(n) => {
                        conn.link.heard(Instant::now());
                        conn.reader.push(&chunk[..n]);
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                    Err(error) => {
                        broken = Some(format!("its control link failed: {error}"));
                        break;
                    }
                }
            }
            loop {
                match conn.reader.next_message() {
                    Ok(Some(message)) => messages.push(message),
                    Ok(None) => break,
                    Err(error) => {
                        broken = Some(format!("its daemon sent an invalid message: {error}"));
                        break;
                    }
                }
            }
        }
        for message in messages {
            self.on_up(id, message);
        }
        if !self.write_conn(id) && broken.is_none() {
            broken = Some("its control link broke".into());
        }
        if let Some(reason) = broken {
            match self.conns.get(&id).and_then(|conn| conn.host) {
                Some(host) => self.lose_host(host, reason),
                None => self.close_conn(id),
            }
        }
    }

    fn write_conn(&mut self, id: usize) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return true;
        };
        crate::bootport::drain_outbox(&mut conn.stream, &mut conn.outbox)
    }

    fn close_conn(&mut self, id: usize) {
        if let Some(mut conn) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }

    fn send(&mut self, host: usize, message: &Down) {
        let Some(id) = self.hosts[host].conn else {
            return;
        };
        if let Some(conn) = self.conns.get_mut(&id) {
            encode_into(message, &mut conn.outbox);
        }
        if !self.write_conn(id) {
            self.lose_host(host, "its control link broke".into());
        }
    }

    fn broadcast(&mut self, message: &Down) {
        for host in 0..self.hosts.len() {
            if self.hosts[host].state == HostState::Running {
                self.send(host, message);
            }
        }
    }

    fn on_up(&mut self, id: usize, message: Up) {
        let Some(host) = self.conns.get(&id).map(|conn| conn.host) else {
            return;
        };
        let Some(host) = host else {
            return self.on_hello(id, message);
        };
        if self.hosts[host].state != HostState::Running {
            return;
        }
        let ours = |ranks: &[RankState], rank: u32| {
            ranks
                .get(rank as usize)
                .is_some_and(|state| state.host == host)
        };
        match message {
            Up::Started { rank, pid } if ours(&self.ranks, rank) => {
                self.ranks[rank as usize].pid = pid;
            }
            Up::Output {
                rank,
                stream,
                bytes,
            } if ours(&self.ranks, rank) => {
                let state = &mut self.ranks[rank as usize];
                let out = if stream == 0 {
                    &mut self.stdout
                } else {
                    &mut self.stderr
                };
                state.lines[usize::from(stream != 0)].push(&bytes, &state.tag, out);
                if out.len() >= 1 << 20 {
                    flush(out, usize::from(stream != 0));
                }
            }
            Up::Exited {
                rank,
                code,
                signal,
                left_fence,
            } if ours(&self.ranks, rank) => self.on_exit(rank, code, signal, left_fence),
            Up::Initialized { rank } if ours(&self.ranks, rank) => {
                self.ranks[rank as usize].initialized = true;
            }
            Up::Finalized { rank } if ours(&self.ranks, rank) => {
                self.ranks[rank as usize].finalized = true;
            }
            Up::Aborted {
                rank,
                code,
                message,
            } if ours(&self.ranks, rank) => {
                self.fail_job(Some(rank), Cause::Abort { code, message })
            }
            Up::Fence { epoch, cards } => {
                let ranks = &self.ranks;
                match self.fences.add(epoch, cards, |rank| ours(ranks, rank)) {
                    Ok(Some(done)) => self.broadcast(&Down::FenceDone {
                        epoch: done.epoch,
                        cards: done.cards,
                    }),
                    Ok(None) => {}
                    Err(error) => self.lose_host(host, format!("its daemon {error}")),
                }
                self.check_fence_stall();
            }
            Up::Failed { code, message } => {
                self.fail_job(None, Cause::HostFailed { code, message })
            }
            Up::StdinAck { chunks } if Some(host) == self.stdin_host => {
                if let Some(stdin) = self.stdin.as_mut() {
                    stdin.acked(chunks);
                }
                self.pump_stdin();
            }
            Up::Heartbeat => {}
            Up::Done => {
                self.hosts[host].state = HostState::Done;
                self.end_ranks_of(host);
                if let Some(id) = self.hosts[host].conn.take() {
                    self.close_conn(id);
                }
            }
            other => self.lose_host(host, format!("its daemon sent an unexpected {other:?}")),
        }
    }

    fn on_hello(&mut self, id: usize, message: Up) {
        let Up::Hello {
            host,
            node_name,
            secret,
        } = message
        else {
            return self.close_conn(id);
        };
        if !same_secret(&secret, &self.secret) {
            return self.close_conn(id);
        }
        let Some(index) = self.hosts.claim(host, &node_name, id) else {
            return self.close_conn(id);
        };
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.host = Some(index);
        }
        let planned = &self.plan.hosts[index];
        let spec = LaunchSpec {
            secret: self.secret.clone(),
            host: planned.name.clone(),
            size: self.plan.size,
            command: self.plan.command.clone(),
            wdir: self.plan.wdir.clone(),
            ranks: planned.ranks.clone(),
            link_timeout_ms: u64::try_from(self.plan.link_timeout.as_millis()).unwrap_or(u64::MAX),
        };
        self.send(index, &Down::Launch(Box::new(spec)));
        if Some(index) == self.stdin_host {
            self.pump_stdin();
        }
        if self.failure.is_some() {
            // The job stopped while this daemon was on its way: stop it too.
            self.send(
                index,
                &Down::Signal {
                    signal: Signal::SIGTERM as i32,
                },
            );
        }
        self.launch();
    }

    /// Sends rank 0's daemon the stdin its window allows.
    fn pump_stdin(&mut self) {
        let Some(host) = self.stdin_host else {
            return;
        };
        if self.hosts[host].state != HostState::Running {
            return;
        }
        let chunks = self
            .stdin
            .as_mut()
            .map(StdinSource::ready)
            .unwrap_or_default();
        for chunk in chunks {
            let message = match chunk {
                Some(bytes) => Down::Stdin(bytes),
                None => Down::StdinClosed,
            };
            self.send(host, &message);
        }
    }

    fn on_exit(&mut self, rank: u32, code: Option<i32>, signal: Option<i32>, left_fence: bool) {
        let state = &mut self.ranks[rank as usize];
        if state.ended {
            return;
        }
        state.ended = true;
        for stream in 0..2 {
            let out = if stream == 0 {
                &mut self.stdout
            } else {
                &mut self.stderr
            };
            state.lines[stream].finish(&state.tag, out);
        }
        let (initialized, finalized) = (state.initialized, state.finalized);
        match (code, signal) {
            (Some(code), _) if code != 0 => self.fail_job(Some(rank), Cause::Exit(code)),
            (_, Some(signal)) => self.fail_job(Some(rank), Cause::Signal(signal)),
            _ if initialized && !finalized => self.fail_job(Some(rank), Cause::NoFinalize),
            _ if left_fence => self.fail_job(Some(rank), Cause::LeftFence),
            _ => {}
        }
        self.check_fence_stall();
    }

    /// Fails the job if ranks wait at a fence that an ended rank never reached.
    fn check_fence_stall(&mut self) {
        for rank in 0..self.ranks.len() as u32 {
            let state = &self.ranks[rank as usize];
            if state.ended && !state.finalized && self.fences.waits_for(rank) {
                self.fail_job(Some(rank), Cause::LeftFence);
            }
        }
    }

    /// The ranks of a host that is gone count as ended.
    fn end_ranks_of(&mut self, host: usize) {
        for rank in self.hosts[host].ranks.clone() {
            let state = &mut self.ranks[rank as usize];
            if !state.ended {
                state.ended = true;
                for stream in 0..2 {
                    let out = if stream == 0 {
                        &mut self.stdout
                    } else {
                        &mut self.stderr
                    };
                    state.lines[stream].finish(&state.tag, out);
                }
            }
        }
    }

    fn lose_host(&mut self, index: usize, reason: String) {
        if self.hosts[index].state.finished() {
            return;
        }
        let was_running = self.hosts[index].state == HostState::Running;
        self.hosts[index].state = HostState::Lost;
        if let Some(id) = self.hosts[index].conn.take() {
            // Closing the link makes the daemon kill its ranks.
            self.close_conn(id);
        }
        self.end_ranks_of(index);
        let name = self.hosts[index].name.clone();
        if self.failure.is_none() {
            self.fail_job(None, Cause::HostLost { host: name, reason });
        } else if was_running {
            eprintln!("mprun: host {name} is lost too: {reason}");
        }
        self.launch();
    }

    fn on_signals(&mut self) {
        let received: Vec<i32> = self.signals.pending().collect();
        for signal in received {
            match signal {
                SIGCHLD => self.on_agent_exits(),
                other => self.fail_job(None, Cause::Interrupted(other)),
            }
        }
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
                    self.hosts[state.host].name,
                    state.pid,
                    describe(&cause)
                )
            }
            None => format!("mprun: {}; stopping the job", describe(&cause)),
        };
        eprintln!("{line}");
        self.failure = Some(cause);
        if let Some(rank) = rank {
            self.broadcast(&Down::PeerFailed { rank });
        }
        self.broadcast(&Down::Signal {
            signal: Signal::SIGTERM as i32,
        });
        self.hosts.skip_waiting();
        let now = Instant::now();
        self.stop_deadline = Some(now + self.options.grace);
        self.give_up_deadline = Some(now + self.options.grace + self.plan.link_timeout);
    }

    fn flush_output(&mut self) {
        flush(&mut self.stdout, 0);
        flush(&mut self.stderr, 1);
    }
}
