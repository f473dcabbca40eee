//! The examples and the runtime's stress programs, run as real jobs under
//! `mprun` (built by `cargo test --workspace`).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod support;

use support::{bin_dir, binary};

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

/// Runs `program ARGS` under `mprun` at 1, 2, 3 and 4 ranks: every run
/// must succeed and print a line with `over N ranks` and `(correct)`, and,
/// if `phases`, the timing of its phases.
fn correct_at_1_to_4_ranks(program: &str, args: &[&str], phases: bool) {
    for n in 1..=4 {
        let what = format!("{program} {args:?} at {n}");
        let out = assert_success(&mprun(n, program, args, LIMIT), &what);
        let over = format!("over {n} ranks");
        assert!(
            out.lines()
                .any(|line| line.contains(&over) && line.contains("(correct)")),
            "{what}:\n{out}"
        );
        if phases {
            assert!(out.contains(": phase total "), "{what}:\n{out}");
        }
    }
}

#[test]
fn hello_greets_from_every_rank_at_1_to_4_ranks() {
    let hello = binary(PathBuf::from(env!("CARGO_BIN_EXE_hello")));
    for n in 1..=4 {
        let out = assert_success(&mprun(n, &hello, &[], LIMIT), &format!("hello at {n}"));
        for rank in 0..n {
            assert!(
                out.contains(&format!("Hello from rank {rank} of {n} on ")),
                "{out}"
            );
        }
    }
}

#[test]
fn ring_is_correct_at_1_to_4_ranks() {
    let ring = binary(PathBuf::from(env!("CARGO_BIN_EXE_ring")));
    correct_at_1_to_4_ranks(&ring, &["5"], false);
}

#[test]
fn pingpong_checks_every_size_at_2_to_4_ranks_and_refuses_1() {
    let pingpong = binary(PathBuf::from(env!("CARGO_BIN_EXE_pingpong")));
    let alone = mprun(1, &pingpong, &["4096"], LIMIT);
    let stderr = String::from_utf8_lossy(&alone.stderr);
    assert!(
        !alone.status.success() && stderr.contains("pingpong: needs at least 2 ranks"),
        "pingpong at 1 rank: {:?}\n{stderr}",
        alone.status
    );
    for n in 2..=4 {
        let out = assert_success(
            &mprun(n, &pingpong, &["4096"], LIMIT),
            &format!("pingpong at {n}"),
        );
        // 1, 4, 16, ..., 4096 bytes.
        assert_eq!(
            out.lines().filter(|l| l.contains("(checked)")).count(),
            7,
            "{out}"
        );
    }
}

#[test]
fn pi_is_correct_at_1_to_4_ranks() {
    let pi = binary(PathBuf::from(env!("CARGO_BIN_EXE_pi")));
    correct_at_1_to_4_ranks(&pi, &[], true);
    // A step count no rank count divides evenly.
    correct_at_1_to_4_ranks(&pi, &["1000003"], true);
}

#[test]
fn jacobi_matches_the_serial_solve_at_1_to_4_ranks() {
    let jacobi = binary(PathBuf::from(env!("CARGO_BIN_EXE_jacobi")));
    // The default 64 rows split unevenly over 3 ranks (gatherv).
    correct_at_1_to_4_ranks(&jacobi, &[], true);
    // Stops at the iteration cap.
    correct_at_1_to_4_ranks(&jacobi, &["40", "300"], true);
    // Converges before the cap; as many ranks as rows at 4.
    let out = assert_success(
        &mprun(4, &jacobi, &["4", "1000", "1e-6"], LIMIT),
        "jacobi on a 4x4 grid",
    );
    assert!(
        out.contains("converged after") && out.contains("(correct)"),
        "{out}"
    );
}

#[test]
fn matmul_matches_the_serial_product_at_1_to_4_ranks() {
    let matmul = binary(PathBuf::from(env!("CARGO_BIN_EXE_matmul")));
    correct_at_1_to_4_ranks(&matmul, &[], true);
    // Rows must divide evenly: 3 ranks cannot share 100.
    let refused = mprun(3, &matmul, &["100"], LIMIT);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("multiple of the rank count 3"),
        "{refused:?}"
    );
}

#[test]
fn samplesort_sorts_a_permutation_at_1_to_4_ranks() {
    let samplesort = binary(PathBuf::from(env!("CARGO_BIN_EXE_samplesort")));
    correct_at_1_to_4_ranks(&samplesort, &[], true);
    // Fewer keys than samples, and no keys at all.
    correct_at_1_to_4_ranks(&samplesort, &["3"], false);
    correct_at_1_to_4_ranks(&samplesort, &["0"], false);
}

#[test]
fn wordcount_merges_to_the_serial_count_at_1_to_4_ranks() {
    let wordcount = binary(PathBuf::from(env!("CARGO_BIN_EXE_wordcount")));
    correct_at_1_to_4_ranks(&wordcount, &[], true);
    // Fewer lines than ranks: some ranks get empty chunks.
    correct_at_1_to_4_ranks(&wordcount, &["2"], false);
    // A file that is not there stops every rank with a clear message.
    let missing = mprun(3, &wordcount, &["/nonexistent/words.txt"], LIMIT);
    assert!(
        !missing.status.success()
            && String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent"),
        "{missing:?}"
    );
}
