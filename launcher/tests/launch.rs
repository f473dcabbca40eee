//! `mprun` end to end: real launches of real programs, including failures.

mod support;

use std::time::Duration;

use support::{all_gone, example, processes_marked, run_mprun, workspace_bin};

const LIMIT: Duration = Duration::from_secs(60);

fn hello_at(n: u32) {
    let hello = workspace_bin("hello");
    let n_text = n.to_string();
    let run = run_mprun(&["-n", &n_text, hello.to_str().unwrap()], b"", LIMIT);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    for rank in 0..n {
        let line = format!("Hello from rank {rank} of {n} on ");
        assert_eq!(
            run.stdout.lines().filter(|l| l.starts_with(&line)).count(),
            1,
            "rank {rank} must greet exactly once; stdout:\n{}",
            run.stdout
        );
    }
    assert_eq!(run.stdout.lines().count(), n as usize);
}

#[test]
fn hello_runs_at_1_2_4_16_and_64_ranks() {
    for n in [1, 2, 4, 16, 64] {
        hello_at(n);
    }
}

#[test]
fn any_program_runs_and_every_rank_gets_its_environment() {
    let run = run_mprun(
        &[
            "-n",
            "3",
            "--tag-output",
            "sh",
            "-c",
            "echo $MPR_RANK/$MPR_SIZE/$MPR_LOCAL_RANK/$MPR_LOCAL_SIZE/$MPR_NODE",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut lines: Vec<&str> = run.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["[0] 0/3/0/3/0", "[1] 1/3/1/3/0", "[2] 2/3/2/3/0"]);
}

#[test]
fn exit_code_of_the_failing_rank_is_mprun_exit_code() {
    let run = run_mprun(
        &[
            "-n",
            "3",
            "sh",
            "-c",
            "[ $MPR_RANK = 1 ] && exit 3; sleep 30",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(3));
    assert!(run.stderr.contains("rank 1 (host"), "{}", run.stderr);
    assert!(run.stderr.contains("exited with code 3"), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("stopping the job").count(),
        1,
        "one failure line: {}",
        run.stderr
    );
}

#[test]
fn a_rank_killed_by_sigkill_ends_the_job_with_137_and_leaves_no_process() {
    let mark = format!("MPRUN_TEST_MARK=sigkill-{}", std::process::id());
    let run = run_mprun(
        &[
            "-n",
            "4",
            "-x",
            &mark,
            "sh",
            "-c",
            "[ $MPR_RANK = 2 ] && kill -9 $$; exec sleep 30",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(137), "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(2),
        "took {:?}",
        run.elapsed
    );
    assert!(
        run.stderr.contains("rank 2") && run.stderr.contains("SIGKILL"),
        "{}",
        run.stderr
    );
    assert!(
        all_gone(&processes_marked(&mark), Duration::from_secs(5)),
        "job processes survived"
    );
}

#[test]
fn a_panicking_rank_aborts_the_job_with_its_message() {
    let prog = example("misbehave");
    let run = run_mprun(&["-n", "3", prog.to_str().unwrap(), "panic"], b"", LIMIT);
    assert_eq!(run.code, Some(101), "{}", run.stderr);
    assert!(
        run.stderr.contains("deliberate panic in rank 1"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("mprun: rank 1 (host"), "{}", run.stderr);
}

#[test]
fn abort_propagates_its_code() {
    let prog = example("misbehave");
    let run = run_mprun(
        &["-n", "2", prog.to_str().unwrap(), "abort", "0"],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(7), "{}", run.stderr);
    assert!(
        run.stderr.contains("rank 0") && run.stderr.contains("deliberate abort"),
        "{}",
        run.stderr
    );
}

#[test]
fn exiting_without_finalize_is_a_failure() {
    let prog = example("misbehave");
    let run = run_mprun(
        &["-n", "2", prog.to_str().unwrap(), "no-finalize"],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("without finalizing"), "{}", run.stderr);
}

#[test]
fn a_rank_that_never_initializes_does_not_leave_the_others_hanging() {
    let prog = example("misbehave");
    let run = run_mprun(&["-n", "3", prog.to_str().unwrap(), "no-init"], b"", LIMIT);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("rank 1") && run.stderr.contains("without calling mpr::init"),
        "{}",
        run.stderr
    );
}

#[test]
fn garbage_on_the_bootstrap_port_leaves_the_job_unharmed() {
    let prog = example("misbehave");
    let run = run_mprun(&["-n", "4", prog.to_str().unwrap(), "garbage"], b"", LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout.lines().filter(|l| l.ends_with("done")).count(),
        4,
        "{}",
        run.stdout
    );
}

#[test]
fn timeout_stops_the_job_and_says_so() {
    let run = run_mprun(&["-n", "2", "--timeout", "1", "sleep", "30"], b"", LIMIT);
    assert_eq!(run.code, Some(124));
    assert!(run.stderr.contains("--timeout"), "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:?}",
        run.elapsed
    );
}

#[test]
fn stdin_reaches_rank_0_only() {
    let run = run_mprun(
        &["-n", "3", "--tag-output", "sh", "-c", "cat; echo end"],
        b"line one\nline two\n",
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut lines: Vec<&str> = run.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "[0] end",
            "[0] line one",
            "[0] line two",
            "[1] end",
            "[2] end"
        ]
    );
}

#[test]
fn tag_output_prefixes_stdout_and_stderr_lines() {
    let run = run_mprun(
        &["-n", "2", "-l", "sh", "-c", "printf 'a\\nb'; echo oops >&2"],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut out: Vec<&str> = run.stdout.lines().collect();
    out.sort();
    assert_eq!(out, ["[0] a", "[0] b", "[1] a", "[1] b"]);
    let mut err: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.starts_with("mprun: note"))
        .collect();
    err.sort();
    assert_eq!(err, ["[0] oops", "[1] oops"]);
}

#[test]
fn megabytes_of_output_arrive_whole_and_never_mixed_within_a_line() {
    // Two ranks each print 20 000 lines of 200 characters (4 MB each).
    let script = "i=0; line=$(printf '%0200d' $MPR_RANK); while [ $i -lt 20000 ]; do echo $line; i=$((i+1)); done";
    let run = run_mprun(&["-n", "2", "--tag-output", "sh", "-c", script], b"", LIMIT);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for rank in 0..2 {
        let expected = format!("[{rank}] {rank:0200}");
        assert_eq!(
            run.stdout.lines().filter(|l| *l == expected).count(),
            20_000
        );
    }
    assert_eq!(
        run.stdout.lines().count(),
        40_000,
        "no mixed or extra lines"
    );
}

#[test]
fn malformed_hostfile_names_file_and_line() {
    let dir = std::env::temp_dir().join(format!("mprun-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hosts");
    std::fs::write(&path, "localhost slots=2\n# fine\nlocalhost slots=abc\n").unwrap();
    let run = run_mprun(
        &["-n", "2", "--hostfile", path.to_str().unwrap(), "true"],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains(&format!("{}:3:", path.display())),
        "{}",
        run.stderr
    );
    std::fs::write(&path, "localhost slots=2\n").unwrap();
    let run = run_mprun(
        &["-n", "3", "--hostfile", path.to_str().unwrap(), "true"],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("--oversubscribe"), "{}", run.stderr);
    let run = run_mprun(
        &[
            "-n",
            "3",
            "--oversubscribe",
            "--hostfile",
            path.to_str().unwrap(),
            "true",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_program_is_a_clear_error() {
    let run = run_mprun(&["-n", "2", "/nonexistent/program"], b"", LIMIT);
    assert_eq!(run.code, Some(127));
    assert!(
        run.stderr.contains("cannot start \"/nonexistent/program\""),
        "{}",
        run.stderr
    );
}

#[test]
fn a_communication_error_aborts_the_job_by_default_and_returns_on_request() {
    let prog = example("misbehave");
    let run = run_mprun(&["-n", "2", prog.to_str().unwrap(), "truncate"], b"", LIMIT);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("message truncated: 100 bytes from rank 0"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("mprun: rank 1 (host"), "{}", run.stderr);
    let run = run_mprun(
        &[
            "-n",
            "2",
            "-x",
            "MPR_ERRORS=return",
            prog.to_str().unwrap(),
            "truncate",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("rank 1 got Err(Truncated"),
        "{}",
        run.stdout
    );
}

#[test]
fn exports_and_working_directory_reach_every_rank() {
    let dir = std::env::temp_dir().join(format!("mprun-wdir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = run_mprun(
        &[
            "-n",
            "2",
            "-x",
            "MPR_TEST_GREETING=hi there",
            "--wdir",
            dir.to_str().unwrap(),
            "sh",
            "-c",
            "echo \"$MPR_TEST_GREETING $(pwd)\"",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let expected = format!("hi there {}", dir.canonicalize().unwrap().display());
    assert_eq!(
        run.stdout.lines().filter(|l| *l == expected).count(),
        2,
        "{}",
        run.stdout
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
