//! The running launch agents of a multi-host job: their processes, the
//! tail of their stderr (for the message when a host cannot be reached),
//! their exits, and their end.

use std::io::{ErrorKind, Read, Write};
use std::process::{Child, ChildStdin, ExitStatus};
use std::time::{Duration, Instant};

use mio::unix::pipe::Receiver;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::agent;

/// How much of an agent's stderr is kept for the error message.
const TAIL: usize = 2048;
/// How long agents may take to exit once the job is over.
const EXIT_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct AgentProc {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<Receiver>,
    tail: Vec<u8>,
    exited: bool,
}

/// Every agent started for the job; agent `id` polls its stderr under
/// token `base + id`.
#[derive(Debug)]
pub(crate) struct Agents {
    procs: Vec<AgentProc>,
    base: usize,
}

impl Agents {
    /// No agents yet; their stderr tokens start at `base`.
    pub(crate) fn new(base: usize) -> Self {
        Agents {
            procs: Vec::new(),
            base,
        }
    }

    /// Starts `line`; the daemon gets `secret` in its environment
    /// (`secret_in_env`) or as the first line of its stdin.
    pub(crate) fn spawn(
        &mut self,
        poll: &Poll,
        line: &[String],
        secret: &[u8],
        secret_in_env: bool,
    ) -> std::io::Result<usize> {
        let env_secret = String::from_utf8_lossy(secret).into_owned();
        let mut command = agent::command(line, secret_in_env.then_some(env_secret.as_str()))
            .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "empty agent command"))?;
        let mut child = command.spawn()?;
        let id = self.procs.len();
        let mut stdin = child.stdin.take();
        if !secret_in_env {
            if let Some(pipe) = stdin.as_mut() {
                let mut first_line = secret.to_vec();
                first_line.push(b'\n');
                // A daemon that is already gone shows up as the agent's exit.
                let _ = pipe.write_all(&first_line);
            }
        }
        let stderr = child
            .stderr
            .take()
            .map(Receiver::from)
            .and_then(|mut pipe| {
                pipe.set_nonblocking(true).ok()?;
                poll.registry()
                    .register(&mut pipe, Token(self.base + id), Interest::READABLE)
                    .ok()?;
                Some(pipe)
            });
        self.procs.push(AgentProc {
            child,
            stdin,
            stderr,
            tail: Vec::new(),
            exited: false,
        });
        Ok(id)
    }

    /// Reads what agent `id` wrote to stderr, keeping the last [`TAIL`] bytes.
    pub(crate) fn read(&mut self, poll: &Poll, id: usize) {
        let Some(agent) = self.procs.get_mut(id) else {
            return;
        };
        let Some(pipe) = agent.stderr.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let eof = loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => {
                    agent.tail.extend_from_slice(&chunk[..n]);
                    let excess = agent.tail.len().saturating_sub(TAIL);
                    agent.tail.drain(..excess);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break false,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break true,
            }
        };
        if eof {
            if let Some(mut pipe) = agent.stderr.take() {
                let _ = poll.registry().deregister(&mut pipe);
            }
        }
    }

    /// Agents that exited since the last call, with their status (their
    /// stderr read to the end first).
    pub(crate) fn reap(&mut self, poll: &Poll) -> Vec<(usize, ExitStatus)> {
        let mut exited = Vec::new();
        for id in 0..self.procs.len() {
            if self.procs[id].exited {
                continue;
            }
            if let Ok(Some(status)) = self.procs[id].child.try_wait() {
                self.procs[id].exited = true;
                self.read(poll, id);
                exited.push((id, status));
            }
        }
        exited
    }

    /// The last lines agent `id` wrote to stderr, as `: line | line`, or
    /// nothing.
    pub(crate) fn tail(&self, id: Option<usize>) -> String {
        let Some(agent) = id.and_then(|id| self.procs.get(id)) else {
            return String::new();
        };
        let text = String::from_utf8_lossy(&agent.tail);
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else {
            format!(": {}", text.replace('\n', " | "))
        }
    }

    /// Ends every agent: closes their stdin (a daemon reading it stops),
    /// lets them exit for [`EXIT_GRACE`] (SIGCHLD wakes `poll`, whose
    /// events are then dropped), then kills their process groups.
    /// Agents in `doomed` (those of lost hosts, whose link is gone) are
    /// killed at once.
    pub(crate) fn finish(
        &mut self,
        poll: &mut Poll,
        doomed: &[usize],
        mut drain_signals: impl FnMut(),
    ) {
        for (id, agent) in self.procs.iter_mut().enumerate() {
            agent.stdin.take();
            if doomed.contains(&id) && !agent.exited {
                let _ = killpg(Pid::from_raw(agent.child.id() as i32), Signal::SIGKILL);
            }
        }
        let deadline = Instant::now() + EXIT_GRACE;
        let mut events = Events::with_capacity(16);
        loop {
            let mut running = false;
            for agent in &mut self.procs {
                if !agent.exited {
                    agent.exited = matches!(agent.child.try_wait(), Ok(Some(_)));
                    running |= !agent.exited;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !running || left.is_zero() {
                break;
            }
            let _ = poll.poll(&mut events, Some(left.min(Duration::from_millis(100))));
            drain_signals();
        }
        for agent in &mut self.procs {
            if !agent.exited {
                let _ = killpg(Pid::from_raw(agent.child.id() as i32), Signal::SIGKILL);
                let _ = agent.child.wait();
            }
        }
    }
}
