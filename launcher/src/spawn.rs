//! Starting the ranks and the guard process that outlives nothing.
//!
//! Every rank runs in one process group led by a small guard process (this
//! same binary, hidden mode). The guard reads its stdin, a pipe from
//! `mprun`, until end of file, then kills its whole process group. Whether
//! `mprun` exits normally or is killed with SIGKILL, the pipe closes, so no
//! rank (nor anything a rank started) outlives the job.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::getpgrp;

/// Hidden first argument that turns `mprun` into the guard.
pub(crate) const GUARD_ARG: &str = "--mprun-guard";

/// The guard's entry point: wait for the launcher to go away, then kill the
/// process group (ranks, their children, and the guard itself).
pub(crate) fn guard_main() -> ! {
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin();
    loop {
        match stdin.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = killpg(getpgrp(), Signal::SIGKILL);
    std::process::exit(0)
}

/// The running guard: dropping [`Guard::release`]'s pipe triggers it.
#[derive(Debug)]
pub(crate) struct Guard {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Guard {
    /// Starts the guard as the leader of a new process group.
    pub(crate) fn start() -> std::io::Result<Guard> {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg(GUARD_ARG)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Guard { child, pipe })
    }

    /// Process group id the ranks join.
    pub(crate) fn group(&self) -> i32 {
        self.child.id() as i32
    }

    /// Ends the job's process group and waits for the guard.
    pub(crate) fn release(mut self) {
        self.pipe.take();
        let _ = self.child.wait();
    }
}

/// How to start one rank.
#[derive(Debug, Clone)]
pub(crate) struct RankCommand {
    /// Program and arguments.
    pub(crate) command: Vec<String>,
    /// Variables to set, on top of the inherited environment.
    pub(crate) env: Vec<(String, String)>,
    /// Working directory.
    pub(crate) wdir: Option<PathBuf>,
    /// Whether the rank reads the launcher's stdin (rank 0 only).
    pub(crate) stdin: bool,
}

/// Starts a rank in the guard's process group with piped output.
pub(crate) fn spawn_rank(rank: &RankCommand, group: i32) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let (program, args) = rank
        .command
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no program given"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(rank.env.iter().map(|(k, v)| (k, v)))
        .process_group(group)
        .stdin(if rank.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &rank.wdir {
        command.current_dir(dir);
    }
    command.spawn()
}
