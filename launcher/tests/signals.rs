//! Stopping `mprun` from outside: SIGINT and SIGKILL leave nothing behind.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{all_gone, mprun};

/// Starts a 3-rank job whose ranks print their pid and sleep; returns the
/// child and the rank pids.
fn start_sleeping_job() -> (std::process::Child, Vec<u32>) {
    let mut child = Command::new(mprun())
        .args([
            "-n",
            "3",
            "--timeout",
            "60",
            "sh",
            "-c",
            "echo pid $$; exec sleep 60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mprun starts");
    let stdout = child.stdout.take().expect("piped");
    let mut pids = Vec::new();
    for line in BufReader::new(stdout).lines().take(3) {
        let line = line.expect("output is text");
        pids.push(
            line.strip_prefix("pid ")
                .and_then(|p| p.parse().ok())
                .expect("a pid line"),
        );
    }
    (child, pids)
}

#[test]
fn sigkill_of_mprun_leaves_no_orphan() {
    let (mut child, pids) = start_sleeping_job();
    child.kill().expect("SIGKILL mprun");
    child.wait().expect("reaped");
    assert!(
        all_gone(&pids, Duration::from_secs(5)),
        "ranks outlived mprun: {pids:?}"
    );
}

#[test]
fn sigint_stops_the_job_with_130() {
    let (mut child, pids) = start_sleeping_job();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let status = child.wait().expect("mprun exits");
    assert_eq!(status.code(), Some(130));
    assert!(
        all_gone(&pids, Duration::from_secs(5)),
        "ranks survived SIGINT: {pids:?}"
    );
}
