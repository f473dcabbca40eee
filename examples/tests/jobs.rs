//! The examples and the runtime's stress programs, run as real jobs under
//! `mprun` (built by `cargo test --workspace`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Directory of the workspace's binaries.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_hello"))
        .parent()
        .expect("binaries have a directory")
        .to_path_buf()
}

fn binary(path: PathBuf) -> String {
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace`, which builds mprun and the runtime's examples",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// Runs `mprun -n N PROGRAM ARGS` with a bounded wait and returns its output.
fn mprun(n: u32, program: &str, args: &[&str], limit: Duration) -> Output {
    let child = Command::new(binary(bin_dir().join("mprun")))
        .args([
            "-n",
            &n.to_string(),
            "--timeout",
            &limit.as_secs().to_string(),
            program,
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mprun starts");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit + Duration::from_secs(10)) {
        Ok(output) => output.expect("mprun ran"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("mprun -n {n} {program} {args:?} hung");
        }
    }
}

fn assert_success(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({:?}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn ring_runs_at_2_to_8_ranks() {
    let ring = binary(PathBuf::from(env!("CARGO_BIN_EXE_ring")));
    for n in 2..=8 {
        let out = assert_success(&mprun(n, &ring, &["20"], LIMIT), &format!("ring at {n}"));
        assert!(
            out.contains(&format!("20 laps over {n} ranks")) && out.contains("(correct)"),
            "{out}"
        );
    }
}

#[test]
fn pingpong_checks_sizes_up_to_64_mib() {
    let pingpong = binary(PathBuf::from(env!("CARGO_BIN_EXE_pingpong")));
    let out = assert_success(&mprun(2, &pingpong, &[], LIMIT), "pingpong");
    assert_eq!(
        out.lines().filter(|l| l.contains("(checked)")).count(),
        14,
        "{out}"
    );
    assert!(out.contains("67108864 bytes"), "{out}");
    // Extra ranks idle; the pair still checks everything.
    let out = assert_success(&mprun(3, &pingpong, &["1048576"], LIMIT), "pingpong at 3");
    assert_eq!(
        out.lines().filter(|l| l.contains("(checked)")).count(),
        11,
        "{out}"
    );
}

fn stress() -> String {
    binary(bin_dir().join("examples").join("p2p_stress"))
}

#[test]
fn a_one_gib_message_arrives_intact_both_ways() {
    let out = assert_success(
        &mprun(
            2,
            &stress(),
            &["big", "1073741824"],
            Duration::from_secs(300),
        ),
        "1 GiB swap",
    );
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" ok")).count(),
        2,
        "{out}"
    );
}

#[test]
fn a_flood_of_100000_messages_with_random_tags_arrives_exactly_once_in_order() {
    for n in [2, 4, 8] {
        let out = assert_success(
            &mprun(n, &stress(), &["flood", "100000"], LIMIT),
            &format!("flood at {n}"),
        );
        assert_eq!(
            out.lines().filter(|l| l.ends_with(" ok")).count(),
            n as usize,
            "{out}"
        );
    }
}

#[test]
fn garbage_connections_to_data_ports_change_nothing() {
    let out = assert_success(&mprun(4, &stress(), &["garbage"], LIMIT), "garbage");
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" ok")).count(),
        4,
        "{out}"
    );
}

#[test]
fn the_ring_also_runs_with_a_progress_thread_and_with_returned_errors() {
    let ring = binary(PathBuf::from(env!("CARGO_BIN_EXE_ring")));
    let mut child = Command::new(binary(bin_dir().join("mprun")));
    child.args([
        "-n",
        "4",
        "--timeout",
        "60",
        "-x",
        "MPR_ASYNC_PROGRESS=1",
        "-x",
        "MPR_ERRORS=return",
        &ring,
        "50",
    ]);
    let output = child.output().expect("mprun runs");
    let out = assert_success(&output, "ring with a progress thread");
    assert!(
        out.contains("50 laps over 4 ranks") && out.contains("(correct)"),
        "{out}"
    );
}
