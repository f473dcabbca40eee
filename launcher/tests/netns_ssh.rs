//! Multi-host jobs over ssh on this one machine: three network namespaces
//! joined by veth pairs and a bridge, each with its own sshd (see
//! `support/lab.rs`). Needs root and `ip` (skipped, saying why, without
//! them); CI runs it as root with openssh-server installed.

mod support;

use std::time::Duration;

use support::lab::{self, Lab};
use support::{all_gone, ready_pids, run_mprun, start_mprun, workspace_bin};

const LIMIT: Duration = Duration::from_secs(120);

fn bin(name: &str) -> String {
    workspace_bin(name).to_string_lossy().into_owned()
}

/// One lab for every scenario (namespaces and sshd take a moment to set up).
#[test]
fn jobs_span_three_namespaces_over_ssh_and_fail_cleanly() {
    if let Some(reason) = lab::unavailable() {
        println!("skipped: the netns/ssh test {reason}");
        return;
    }
    let lab = Lab::with_sshd("s", 3);
    let agent = lab.agent();
    let hosts = lab.hostfile(2);
    let hosts = hosts.to_str().unwrap();
    let base = ["--launch-agent", agent.as_str(), "--hostfile", hosts];

    // Real programs with ranks on every host: the data plane must use the
    // hosts' addresses, as each namespace has a loopback of its own.
    let hello = run_mprun(&[&base[..], &["-l", &bin("hello")]].concat(), b"", LIMIT);
    assert_eq!(hello.code, Some(0), "hello: {}", hello.stderr);
    assert_eq!(hello.stdout.lines().count(), 6, "{}", hello.stdout);
    for program in ["ring", "pi", "jacobi"] {
        let run = run_mprun(&[&base[..], &[&bin(program)]].concat(), b"", LIMIT);
        assert_eq!(
            run.code,
            Some(0),
            "{program}: {}\n{}",
            run.stdout,
            run.stderr
        );
        assert!(run.stdout.contains("correct"), "{program}: {}", run.stdout);
    }
    let placement = run_mprun(
        &[&base[..], &["-l", "sh", "-c", "echo $MPR_NODE $MPR_MULTI_HOST $(ip -br addr show eth0 | tr -s ' ' | cut -d' ' -f3)"]].concat(),
        b"",
        LIMIT,
    );
    assert_eq!(placement.code, Some(0), "{}", placement.stderr);
    for (node, addr) in lab.addrs.iter().enumerate() {
        let line = format!("{node} 1 {addr}/24");
        assert_eq!(
            placement.stdout.matches(&line).count(),
            2,
            "{}",
            placement.stdout
        );
    }

    // This machine joins in: its daemon is forked (no ssh), and every rank
    // publishes the address its host reaches mprun from (the bridge's here).
    let mixed_hosts = format!("localhost:2,{}:2,{}:2", lab.addrs[0], lab.addrs[1]);
    let mixed = ["--launch-agent", agent.as_str(), "-H", mixed_hosts.as_str()];
    let ring = run_mprun(&[&mixed[..], &[&bin("ring")]].concat(), b"", LIMIT);
    assert_eq!(ring.code, Some(0), "{}\n{}", ring.stdout, ring.stderr);
    assert!(ring.stdout.contains("correct"), "{}", ring.stdout);
    let hints = run_mprun(
        &[
            &mixed[..],
            &["sh", "-c", "echo node $MPR_NODE $MPR_INTERFACE"],
        ]
        .concat(),
        b"",
        LIMIT,
    );
    assert_eq!(hints.code, Some(0), "{}", hints.stderr);
    for (node, ip) in [(0, &lab.gateway), (1, &lab.addrs[0]), (2, &lab.addrs[1])] {
        let line = format!("node {node} {ip}/32");
        assert_eq!(hints.stdout.matches(&line).count(), 2, "{}", hints.stdout);
    }

    // A rank killed on one host: the job stops everywhere, naming it.
    let mark = format!("MPRUN_TEST_MARK=netns-kill-{}", std::process::id());
    let job = start_mprun(
        &[
            &base[..],
            &["-x", &mark, "sh", "-c", "echo ready $$; exec sleep 60"],
        ]
        .concat(),
    );
    let ranks = ready_pids(&job.wait_for_lines("ready", 6, LIMIT));
    assert_eq!(ranks.len(), 6, "{ranks:?}");
    let victim = *ranks.iter().max().unwrap();
    lab::sh("kill", &["-9", &victim.to_string()]);
    let (code, stderr, _) = job.finish(LIMIT);
    assert_eq!(code, Some(137), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {victim}) was killed by signal 9")),
        "{stderr}"
    );
    assert!(stderr.contains("(host 198.18."), "{stderr}");
    assert!(
        all_gone(&ranks, Duration::from_secs(10)),
        "ranks left behind"
    );

    // One host's link cut: the job ends within a bounded time, naming it,
    // and the ranks on the cut host are killed by its daemon.
    let mark = format!("MPRUN_TEST_MARK=netns-cut-{}", std::process::id());
    let job = start_mprun(
        &[
            &base[..],
            &["--link-timeout", "2", "-x", &mark, "sh", "-c"],
            &["echo ready $$; exec sleep 60"],
        ]
        .concat(),
    );
    let ranks = ready_pids(&job.wait_for_lines("ready", 6, LIMIT));
    assert_eq!(ranks.len(), 6, "{ranks:?}");
    lab.cut(1);
    let (code, stderr, elapsed) = job.finish(LIMIT);
    assert_eq!(code, Some(255), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "host {} is lost: no heartbeat from its daemon for 2 s",
            lab.addrs[1]
        )),
        "{stderr}"
    );
    println!("a cut link (--link-timeout 2) ended the job in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    assert!(
        all_gone(&ranks, Duration::from_secs(10)),
        "ranks left behind"
    );
}
