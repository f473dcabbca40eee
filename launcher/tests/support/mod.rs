//! Helpers shared by the launcher's integration tests: run `mprun` with a
//! bounded wait, find the workspace's binaries.

#![allow(dead_code)]

pub(crate) mod lab;
pub(crate) mod slurm;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `mprun` binary under test.
pub(crate) fn mprun() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mprun"))
}

/// A binary of the workspace built next to `mprun` (examples, benches).
pub(crate) fn workspace_bin(name: &str) -> PathBuf {
    let dir = mprun()
        .parent()
        .expect("mprun has a directory")
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds every binary)",
        path.display()
    );
    path
}

/// A cargo example of this package (built by `cargo test`).
pub(crate) fn example(name: &str) -> PathBuf {
    let dir = mprun()
        .parent()
        .expect("mprun has a directory")
        .join("examples");
    dir.join(name)
}

/// What a finished `mprun` run produced.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) elapsed: Duration,
}

/// Runs `mprun ARGS` with `stdin` fed in, killing it if it runs past
/// `limit` (a hung launcher fails the test instead of hanging it).
pub(crate) fn run_mprun(args: &[&str], stdin: &[u8], limit: Duration) -> Run {
    let started = Instant::now();
    let mut child = Command::new(mprun())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mprun starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin).expect("stdin accepts input");
    drop(input);
    let pid = child.id();
    let (done, finished) = mpsc::channel::<Output>();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output().expect("mprun can be waited for"));
    });
    let output = match finished.recv_timeout(limit) {
        Ok(output) => output,
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("mprun {args:?} did not finish within {limit:?}");
        }
    };
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// Whether a process with this pid still exists (and is not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits (bounded) until none of `pids` is alive; false if some survive.
pub(crate) fn all_gone(pids: &[u32], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pids.iter().all(|&pid| !alive(pid)) {
            return true;
        }
        std::thread::yield_now();
    }
    pids.iter().all(|&pid| !alive(pid))
}

/// Pids of the processes whose environment holds `VAR=VALUE` `mark`.
pub(crate) fn processes_marked(mark: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == mark.as_bytes()))
        })
        .collect()
}

/// A running `mprun` whose stdout lines arrive on a channel; dropping it
/// kills `mprun` if it still runs (which stops its whole job).
pub(crate) struct Running {
    child: Option<std::process::Child>,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Starts `mprun ARGS` with piped output.
pub(crate) fn start_mprun(args: &[&str]) -> Running {
    use std::io::BufRead;
    let mut child = Command::new(mprun())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mprun starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    Running {
        child: Some(child),
        lines,
        stderr: Some(stderr),
    }
}

impl Running {
    /// Waits (bounded) until `count` stdout lines contain `needle`; the
    /// lines seen so far.
    pub(crate) fn wait_for_lines(
        &self,
        needle: &str,
        count: usize,
        limit: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while seen
            .iter()
            .filter(|line: &&String| line.contains(needle))
            .count()
            < count
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "{count} lines with {needle:?} did not come within {limit:?}; got {seen:?}"
                ),
            }
        }
        seen
    }

    /// Sends `mprun` a signal (`-INT`, `-TERM`, ...); whether `kill` worked.
    pub(crate) fn signal(&self, signal: &str) -> bool {
        let Some(child) = &self.child else {
            return false;
        };
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Waits (bounded) for `mprun` to exit: its code, stderr, and how long it took.
    pub(crate) fn finish(mut self, limit: Duration) -> (Option<i32>, String, Duration) {
        let started = Instant::now();
        let mut child = self.child.take().expect("running");
        let pid = child.id();
        let (done, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait().expect("mprun can be waited for"));
        });
        let status = match exited.recv_timeout(limit) {
            Ok(status) => status,
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("mprun did not finish within {limit:?}");
            }
        };
        let stderr = self
            .stderr
            .take()
            .map(|handle| handle.join().unwrap_or_default())
            .unwrap_or_default();
        (status.code(), stderr, started.elapsed())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Pids from the `ready PID` lines among `lines`.
pub(crate) fn ready_pids(lines: &[String]) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|line| line.trim().strip_prefix("ready ")?.trim().parse().ok())
        .collect()
}
