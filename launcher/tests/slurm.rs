//! `mprun` inside real Slurm allocations: munged, slurmctld and three
//! slurmd (one per network namespace, nodes n1..n3) configured by the test
//! (see `support/slurm.rs`). `salloc` and `sbatch` run `mprun`, which reads
//! the allocation's nodes and task counts and starts its daemons with
//! `srun`. Needs root and `ip` (skipped, saying why, without them); CI
//! installs slurm-wlm and munge and runs it as root.

mod support;

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::lab::{self, Lab};
use support::slurm::{self, Slurm};
use support::{mprun, workspace_bin};

const LIMIT: Duration = Duration::from_secs(120);

/// Runs a Slurm client command with a bounded wait.
fn run(mut command: Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the Slurm client starts");
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(LIMIT) {
        Ok(output) => output.expect("the Slurm client ran"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{command:?} did not finish within {LIMIT:?}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn salloc_and_sbatch_run_mprun_across_three_slurm_nodes() {
    if let Some(reason) = lab::unavailable() {
        println!("skipped: the Slurm test {reason}");
        return;
    }
    if let Some(reason) = slurm::unavailable() {
        panic!("{reason}");
    }
    let lab = Lab::new("l", 3);
    let cluster = Slurm::start(&lab, 4);
    let mprun = mprun().to_string_lossy().into_owned();
    let interface = lab.cidr();
    let interface = interface.as_str();

    // salloc: the ranks run under the slurmd of every node (srun started
    // their daemons), placed by SLURM_JOB_NODELIST / SLURM_TASKS_PER_NODE.
    let mut salloc = cluster.command("salloc");
    salloc.args([
        "-N3",
        "-n6",
        &mprun,
        "--interface",
        interface,
        "-l",
        "sh",
        "-c",
    ]);
    salloc.arg("echo $MPR_RANK/$MPR_SIZE on $SLURMD_NODENAME node $MPR_NODE");
    let out = run(salloc);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        text(&out.stderr),
        cluster.logs()
    );
    assert_eq!(stdout.lines().count(), 6, "{stdout}");
    for node in 1..=3 {
        let on = format!(" on n{node} node {}", node - 1);
        assert!(stdout.contains(&on), "no rank on n{node}: {stdout}");
    }

    for program in ["hello", "ring", "pi"] {
        let mut salloc = cluster.command("salloc");
        salloc.args(["-N3", "-n6", &mprun, "--interface", interface]);
        salloc.arg(workspace_bin(program));
        let out = run(salloc);
        assert!(
            out.status.success(),
            "{program}: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    // A failing rank inside an allocation: its code, naming rank and node.
    let mut salloc = cluster.command("salloc");
    salloc.args(["-N3", "-n6", &mprun, "--interface", interface, "sh", "-c"]);
    salloc.arg("[ $MPR_RANK = 5 ] && exit 3; exec sleep 60");
    let out = run(salloc);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("rank 5 (host n3, pid"), "{stderr}");
    assert!(stderr.contains("exited with code 3"), "{stderr}");

    // sbatch: the batch script runs on the first node, mprun from there.
    let output = cluster.dir.join("batch.out");
    let mut sbatch = cluster.command("sbatch");
    sbatch.args([
        "--wait",
        "-N3",
        "-n6",
        "-o",
        output.to_str().unwrap(),
        "--wrap",
    ]);
    sbatch.arg(format!(
        "{mprun} --interface {interface} -l {}",
        workspace_bin("hello").display()
    ));
    let out = run(sbatch);
    let batch = std::fs::read_to_string(&output).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{batch}\n{}",
        text(&out.stderr),
        cluster.logs()
    );
    for rank in 0..6 {
        let line = format!("[{rank}] Hello from rank {rank} of 6 on ");
        assert!(batch.contains(&line), "{batch}");
    }
}
