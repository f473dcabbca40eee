//! Smoke test of `mpr-bench` under `mprun`: every benchmark runs at small
//! sizes and prints well-formed results (a check that it works, not a
//! timing).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn bench() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mpr-bench"))
}

fn mprun_path() -> PathBuf {
    let path = bench()
        .parent()
        .map(|dir| dir.join("mprun"))
        .unwrap_or_default();
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace`, which builds mprun",
        path.display()
    );
    path
}

/// `mprun -n N mpr-bench ARGS`, killed if it runs past a minute.
fn run(n: u32, args: &[&str]) -> Output {
    let child = Command::new(mprun_path())
        .args(["-n", &n.to_string(), "--timeout", "60"])
        .arg(bench())
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
    match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(output) => output.expect("mprun ran"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("mpr-bench {args:?} hung");
        }
    }
}

/// Runs a benchmark with `--csv` and returns its (size, value) rows.
fn rows(n: u32, name: &str, sizes: &str) -> Vec<(usize, f64)> {
    rows_with(n, name, sizes, &[])
}

/// [`rows`] with extra options.
fn rows_with(n: u32, name: &str, sizes: &str, extra: &[&str]) -> Vec<(usize, f64)> {
    let mut args = vec![name, "-m", sizes, "-i", "20", "-x", "2", "--csv"];
    args.extend_from_slice(extra);
    let output = run(n, &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{name} at {n} ranks failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("size,"), "{name}: header {header:?}");
    lines
        .map(|line| {
            let mut fields = line.split(',');
            let size = fields.next().and_then(|f| f.parse().ok()).expect("a size");
            let value = fields.next().and_then(|f| f.parse().ok()).expect("a value");
            (size, value)
        })
        .collect()
}

#[test]
fn point_to_point_benchmarks_report_every_size() {
    for name in ["latency", "bw", "bibw"] {
        let rows = rows(2, name, "1:64");
        let sizes: Vec<usize> = rows.iter().map(|r| r.0).collect();
        assert_eq!(sizes, [1, 2, 4, 8, 16, 32, 64], "{name}");
        assert!(
            rows.iter().all(|r| r.1 > 0.0 && r.1.is_finite()),
            "{name}: {rows:?}"
        );
    }
    let rows = rows(4, "mbw_mr", "8:8");
    assert_eq!(rows.len(), 1);
    assert!(rows[0].1 > 0.0);
}

#[test]
fn bandwidth_windows_posted_in_batches_complete_at_every_size() {
    // A 100-byte footprint posts 64-byte receives one at a time, 16-byte
    // ones six at a time (the last batch of the window short), 1-byte ones
    // all 64 at once.
    for name in ["bw", "bibw"] {
        let rows = rows_with(2, name, "1:64", &["--recv-footprint", "100"]);
        let sizes: Vec<usize> = rows.iter().map(|r| r.0).collect();
        assert_eq!(sizes, [1, 2, 4, 8, 16, 32, 64], "{name}");
        assert!(
            rows.iter().all(|r| r.1 > 0.0 && r.1.is_finite()),
            "{name}: {rows:?}"
        );
    }
    let rows = rows_with(4, "mbw_mr", "64:64", &["--recv-footprint", "100"]);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].1 > 0.0);
}

#[test]
fn collective_benchmarks_report_every_size_at_3_ranks() {
    for name in [
        "bcast",
        "allreduce",
        "reduce",
        "gather",
        "scatter",
        "allgather",
        "alltoall",
        "reduce_scatter",
    ] {
        let rows = rows(3, name, "4:256");
        let sizes: Vec<usize> = rows.iter().map(|r| r.0).collect();
        assert_eq!(sizes, [4, 8, 16, 32, 64, 128, 256], "{name}");
        assert!(
            rows.iter().all(|r| r.1 > 0.0 && r.1.is_finite()),
            "{name}: {rows:?}"
        );
    }
    let rows = rows(3, "barrier", "4:4");
    assert_eq!(rows.len(), 1);
}

#[test]
fn table_output_and_full_statistics_work() {
    let output = run(2, &["allreduce", "-m", "4:8", "-i", "10", "-x", "1", "-f"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("# mpr-bench allreduce (2 ranks)"),
        "{stdout}"
    );
    assert!(stdout.contains("Min Latency(us)"), "{stdout}");
}

#[test]
fn forcing_an_algorithm_by_environment_works_and_a_bad_name_is_reported() {
    for algorithm in ["recursive_doubling", "ring", "rabenseifner"] {
        let var = format!("MPR_COLL_ALLREDUCE={algorithm}");
        let output = Command::new(mprun_path())
            .args(["-n", "3", "--timeout", "60", "-x", &var])
            .arg(bench())
            .args(["allreduce", "-m", "4:4096", "-i", "10", "-x", "1", "--csv"])
            .output()
            .expect("mprun runs");
        assert!(
            output.status.success(),
            "{algorithm}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&output.stderr).contains("ignoring"),
            "{algorithm} was rejected"
        );
    }
    let output = Command::new(mprun_path())
        .args([
            "-n",
            "2",
            "--timeout",
            "60",
            "-x",
            "MPR_COLL_ALLREDUCE=bogus",
        ])
        .arg(bench())
        .args(["allreduce", "-m", "4:4", "-i", "5", "-x", "1"])
        .output()
        .expect("mprun runs");
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ignoring MPR_COLL_ALLREDUCE=bogus"),
        "{stderr}"
    );
}
