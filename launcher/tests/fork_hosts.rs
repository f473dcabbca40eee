//! Multi-host jobs without a network: `--launcher fork` runs one daemon per
//! "host" on this machine, through the same control protocol, bootstrap
//! relay and failure rules as ssh or Slurm launches.

mod support;

use std::time::Duration;

use support::{all_gone, ready_pids, run_mprun, start_mprun, workspace_bin};

const LIMIT: Duration = Duration::from_secs(60);

fn bin(name: &str) -> String {
    workspace_bin(name).to_string_lossy().into_owned()
}

#[test]
fn hello_ring_and_allreduce_run_across_three_daemons() {
    let hello = bin("hello");
    let run = run_mprun(
        &["--launcher", "fork", "-H", "a:2,b:2,c:2", "-l", &hello],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for rank in 0..6 {
        let line = format!("[{rank}] Hello from rank {rank} of 6 on ");
        assert_eq!(
            run.stdout.lines().filter(|l| l.starts_with(&line)).count(),
            1,
            "{}",
            run.stdout
        );
    }
    for program in ["ring", "pi"] {
        let run = run_mprun(
            &["--launcher", "fork", "-H", "a:2,b:1,c:2", &bin(program)],
            b"",
            LIMIT,
        );
        assert_eq!(run.code, Some(0), "{program}: {}", run.stderr);
        assert!(
            run.stdout.contains("correct") || run.stdout.contains("error"),
            "{program}: {}",
            run.stdout
        );
    }
}

#[test]
fn every_rank_gets_its_placement_from_its_host_daemon() {
    let run = run_mprun(
        &[
            "--launcher",
            "fork",
            "-H",
            "a:2,b:1",
            "-l",
            "sh",
            "-c",
            "echo $MPR_RANK/$MPR_SIZE/$MPR_LOCAL_RANK/$MPR_LOCAL_SIZE/$MPR_NODE/${MPR_BOOTSTRAP%:*}",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut lines: Vec<&str> = run.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "[0] 0/3/0/2/0/127.0.0.1",
            "[1] 1/3/1/2/0/127.0.0.1",
            "[2] 2/3/0/1/1/127.0.0.1"
        ]
    );
}

#[test]
fn a_killed_remote_rank_names_rank_host_and_pid_and_stops_every_host() {
    let mark = format!("MPRUN_TEST_MARK=fork-kill-{}", std::process::id());
    let (name, value) = mark.split_once('=').unwrap();
    let export = format!("{name}={value}");
    let job = start_mprun(&[
        "--launcher",
        "fork",
        "-H",
        "a:2,b:2",
        "-x",
        &export,
        "sh",
        "-c",
        "echo ready $$; exec sleep 60",
    ]);
    let ranks = ready_pids(&job.wait_for_lines("ready", 4, LIMIT));
    let victim = *ranks.iter().max().expect("ranks run");
    assert!(ranks.len() >= 4, "{ranks:?}");
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let (code, stderr, _) = job.finish(LIMIT);
    assert_eq!(code, Some(137), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {victim}) was killed by signal 9")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("stopping the job").count(), 1, "{stderr}");
    assert!(
        all_gone(&ranks, Duration::from_secs(10)),
        "ranks left behind"
    );
}

#[test]
fn a_dead_daemon_is_a_lost_host_and_nothing_is_left_running() {
    let mark = format!("MPRUN_TEST_MARK=fork-daemon-{}", std::process::id());
    let job = start_mprun(&[
        "--launcher",
        "fork",
        "-H",
        "a:1,b:2",
        "-x",
        &mark,
        "sh",
        "-c",
        "echo ready $$; exec sleep 60",
    ]);
    let ranks = ready_pids(&job.wait_for_lines("ready", 3, LIMIT));
    // The daemons carry the job's variables only in their ranks; find them
    // as the parents of host b's ranks.
    let daemons: Vec<u32> = ranks
        .iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
            fields.get(1)?.parse().ok()
        })
        .collect();
    let daemon = *daemons.iter().max().expect("daemon pid");
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &daemon.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let (code, stderr, _) = job.finish(LIMIT);
    assert_eq!(code, Some(255), "{stderr}");
    assert!(
        stderr.contains("host b is lost") || stderr.contains("host a is lost"),
        "{stderr}"
    );
    assert!(
        all_gone(&ranks, Duration::from_secs(10)),
        "ranks left behind"
    );
}

#[test]
fn a_program_or_directory_missing_on_a_host_is_a_clear_error() {
    let run = run_mprun(
        &["--launcher", "fork", "-H", "a,b", "/surely/not/here"],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(127), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("program /surely/not/here not found on host")
            && run.stderr.contains("shared filesystem"),
        "{}",
        run.stderr
    );
    let run = run_mprun(
        &[
            "--launcher",
            "fork",
            "-H",
            "a,b",
            "--wdir",
            "/surely/not/a/dir",
            "hostname",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(127), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("working directory /surely/not/a/dir not found on host"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_failing_launch_agent_is_reported_with_its_words() {
    let run = run_mprun(
        &[
            "--launcher",
            "ssh",
            "--launch-agent",
            "sh -c 'echo agent says no >&2; exit 255' agent",
            "-H",
            "198.18.255.254",
            "hostname",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(255), "{}", run.stderr);
    assert!(
        run.stderr.contains("host 198.18.255.254 is lost") && run.stderr.contains("agent says no"),
        "{}",
        run.stderr
    );
}

#[test]
fn stdin_reaches_rank_0_through_its_daemon_whole() {
    let input: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let run = run_mprun(
        &["--launcher", "fork", "-H", "a,b", "-l", "sh", "-c", "wc -c"],
        &input,
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut lines: Vec<&str> = run.stdout.lines().map(str::trim).collect();
    lines.sort();
    assert_eq!(lines, [format!("[0] {}", input.len()).as_str(), "[1] 0"]);
}

/// A stand-in for ssh that runs the remote command here: `AGENT HOST CMD`,
/// after `delay` seconds (a slow connection).
fn local_agent(delay: &str) -> String {
    format!("sh -c 'sleep {delay}; exec sh -c \"$2\"' fake-ssh")
}

#[test]
fn launches_are_bounded_by_launch_concurrency() {
    let hello = bin("hello");
    let agent = local_agent("0.4");
    let hosts = "198.18.255.1,198.18.255.2,198.18.255.3";
    // One launch at a time: each agent starts after the previous daemon
    // called back, so the three slow connections add up.
    let serial = run_mprun(
        &[
            "--launch-agent",
            &agent,
            "--launch-concurrency",
            "1",
            "-H",
            hosts,
            "--interface",
            "lo",
            &hello,
        ],
        b"",
        LIMIT,
    );
    assert_eq!(serial.code, Some(0), "{}", serial.stderr);
    assert_eq!(serial.stdout.lines().count(), 3, "{}", serial.stdout);
    assert!(
        serial.elapsed >= Duration::from_millis(1200),
        "{:?}",
        serial.elapsed
    );
    let parallel = run_mprun(
        &[
            "--launch-agent",
            &agent,
            "-H",
            hosts,
            "--interface",
            "lo",
            &hello,
        ],
        b"",
        LIMIT,
    );
    assert_eq!(parallel.code, Some(0), "{}", parallel.stderr);
    assert!(
        parallel.elapsed < serial.elapsed,
        "{:?} vs {:?}",
        parallel.elapsed,
        serial.elapsed
    );
}

#[test]
fn sigint_and_timeout_stop_every_host() {
    let job = start_mprun(&[
        "--launcher",
        "fork",
        "-H",
        "a:2,b:2",
        "sh",
        "-c",
        "echo ready $$; exec sleep 60",
    ]);
    let ranks = ready_pids(&job.wait_for_lines("ready", 4, LIMIT));
    assert!(job.signal("-INT"));
    let (code, stderr, _) = job.finish(LIMIT);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("received SIGINT"), "{stderr}");
    assert!(
        all_gone(&ranks, Duration::from_secs(10)),
        "ranks left behind"
    );

    let run = run_mprun(
        &[
            "--launcher",
            "fork",
            "-H",
            "a,b",
            "--timeout",
            "0.5",
            "sleep",
            "60",
        ],
        b"",
        LIMIT,
    );
    assert_eq!(run.code, Some(124), "{}", run.stderr);
    assert!(run.stderr.contains("timeout of 0.5 s"), "{}", run.stderr);
}
