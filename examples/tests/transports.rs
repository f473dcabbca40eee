//! Jobs over each transport and over a mix of both: shared memory between
//! ranks of one host (the default), TCP (`MPR_TRANSPORT=tcp`), and jobs
//! where some ranks refuse shared memory. Also the shared-memory liveness
//! and cleanup guarantees, with `kill -9`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpr::bootstrap::wire::{FrameReader, MAX_SERVER_FRAME, Message};

mod support;

use support::{bin_dir, binary};

fn ring() -> String {
    binary(PathBuf::from(env!("CARGO_BIN_EXE_ring")))
}

fn stress() -> String {
    binary(bin_dir().join("examples").join("p2p_stress"))
}

fn coll_check() -> String {
    binary(bin_dir().join("examples").join("coll_check"))
}

fn mprun() -> String {
    binary(bin_dir().join("mprun"))
}

/// Waits for `child` at most `limit`, killing it (and failing) past that.
fn wait_bounded(child: Child, limit: Duration, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("the child ran"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{what} hung");
        }
    }
}

/// `mprun -n N ARGS` with `MPR_TRANSPORT` set as given.
fn run_job(n: u32, transport: &str, args: &[&str]) -> String {
    run_job_with(n, transport, &[], args)
}

/// `mprun -n N ARGS` with `MPR_TRANSPORT` and `env` set.
fn run_job_with(n: u32, transport: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let child = Command::new(mprun())
        .args(["-n", &n.to_string(), "--timeout", "120"])
        .args(args)
        .envs(env.iter().copied())
        .env("MPR_TRANSPORT", transport)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mprun starts");
    let output = wait_bounded(child, Duration::from_secs(130), "the job");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?} over {transport} failed ({:?}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn oks(out: &str) -> usize {
    out.lines().filter(|line| line.ends_with(" ok")).count()
}

#[test]
fn tcp_alone_still_carries_rings_floods_and_large_messages() {
    for n in [2, 5, 8] {
        let out = run_job(n, "tcp", &[&ring(), "20"]);
        assert!(out.contains(&format!("over {n} ranks")) && out.contains("(correct)"));
    }
    let out = run_job(4, "tcp", &[&stress(), "flood", "50000"]);
    assert_eq!(oks(&out), 4, "{out}");
    let out = run_job(2, "tcp", &[&stress(), "big", "67108864"]);
    assert_eq!(oks(&out), 2, "{out}");
}

/// Over TCP, a reduce of large vectors streams in pieces: the root posts
/// every piece at once and combines each as it arrives.
#[test]
fn tcp_reduces_in_pieces_combine_in_rank_order_at_every_root() {
    for n in [2, 3, 4, 5] {
        let out = run_job(n, "tcp", &[&coll_check(), "reduce"]);
        assert_eq!(oks(&out), n as usize, "{out}");
    }
}

/// Over shared memory, small barriers, bcasts, gathers, allreduces and
/// all-to-alls of the world run on the collective boards, and larger ones
/// copy straight between the processes: results match a serial fold in
/// rank order, and wrong or disagreeing arguments fail the call on the
/// ranks that can tell without hanging any (also across the board limit).
/// The same with direct copies off (above the limit by messages), and with
/// ranks whose direct limits differ (modes that differ: by messages, or as
/// the root chose). Over TCP the same calls go by messages.
#[test]
fn board_collectives_match_a_serial_fold_and_fail_together_on_bad_arguments() {
    // Direct copies for every operand above the limit, also with two
    // ranks (whose defaults keep some sizes on messages).
    let limit = [
        ("MPR_SHM_BOARD_MAX", "2048"),
        ("MPR_SHM_BOARD_BCAST_MAX", "2048"),
        ("MPR_SHM_DIRECT_MIN", "1"),
    ];
    let messages = [limit[0], limit[1], ("MPR_SHM_DIRECT_MIN", "0")];
    let check = [coll_check(), "board".to_owned(), "straddle".to_owned()];
    let check: Vec<&str> = check.iter().map(String::as_str).collect();
    for n in [2, 3, 4, 5] {
        let out = run_job_with(n, "auto", &limit, &check);
        assert_eq!(oks(&out), n as usize, "direct: {out}");
    }
    for n in [2, 4] {
        let out = run_job_with(n, "auto", &messages, &check);
        assert_eq!(oks(&out), n as usize, "by messages: {out}");
    }
    let uneven = "if [ $((MPR_RANK % 2)) = 1 ]; then export MPR_SHM_DIRECT_MIN=1m; fi; exec \"$@\"";
    let mut args = vec!["sh", "-c", uneven, "sh"];
    args.extend(&check);
    let out = run_job_with(3, "auto", &limit, &args);
    assert_eq!(oks(&out), 3, "uneven direct limits: {out}");
    let out = run_job_with(3, "tcp", &limit, &check[..2]);
    assert_eq!(oks(&out), 3, "{out}");
}

/// Communicators made from the world (split_shared, dup, split) run on
/// boards of their own: the same checks on the host's ranks, on a
/// duplicate, on two halves at once, and after many communicators were
/// made and dropped while more were alive than there are boards; by
/// messages over TCP; and in a job whose odd ranks use TCP alone, on the
/// boards of the even ranks' host communicator only.
#[test]
fn derived_communicators_run_the_board_checks_on_boards_of_their_own() {
    let limit = [
        ("MPR_SHM_BOARD_MAX", "2048"),
        ("MPR_SHM_BOARD_BCAST_MAX", "2048"),
        ("MPR_SHM_DIRECT_MIN", "1"),
    ];
    let check = [coll_check(), "comms".to_owned(), "straddle".to_owned()];
    let check: Vec<&str> = check.iter().map(String::as_str).collect();
    for n in [3, 4, 5] {
        let out = run_job_with(n, "auto", &limit, &check);
        assert_eq!(oks(&out), n as usize, "{n} ranks: {out}");
    }
    let out = run_job_with(4, "tcp", &limit, &check[..2]);
    assert_eq!(oks(&out), 4, "over TCP: {out}");
    // Odd ranks on TCP alone: the even ranks' host communicator is the
    // only one on boards (the world and its copies go by messages, where
    // disagreements across the board limit would hang: no `straddle`).
    let wrapper = "if [ $((MPR_RANK % 2)) = 1 ]; then export MPR_TRANSPORT=tcp; fi; exec \"$@\"";
    let mut args = vec!["sh", "-c", wrapper, "sh"];
    args.extend(&check[..2]);
    let out = run_job_with(5, "auto", &limit, &args);
    assert_eq!(oks(&out), 5, "odd ranks over TCP: {out}");
}

#[test]
fn shared_memory_carries_floods_and_large_messages() {
    let out = run_job(8, "auto", &[&stress(), "flood", "50000"]);
    assert_eq!(oks(&out), 8, "{out}");
    let out = run_job(2, "auto", &[&stress(), "big", "268435456"]);
    assert_eq!(oks(&out), 2, "{out}");
}

/// Odd ranks turn shared memory off, so ranks 0 and 2 talk through memory
/// and every other pair through TCP, in the same job and the same streams
/// of wildcard receives; collectives then all go by messages (the boards
/// need every rank), and still agree.
#[test]
fn shared_memory_and_tcp_peers_mix_in_one_job() {
    let wrapper = "if [ $((MPR_RANK % 2)) = 1 ]; then export MPR_TRANSPORT=tcp; fi; exec \"$@\"";
    for program in [
        vec![ring(), "30".to_owned()],
        vec![stress(), "flood".to_owned(), "50000".to_owned()],
        vec![coll_check(), "board".to_owned()],
    ] {
        let mut args = vec!["sh", "-c", wrapper, "sh"];
        args.extend(program.iter().map(String::as_str));
        let out = run_job(4, "auto", &args);
        assert!(
            out.contains("(correct)") || oks(&out) == 4,
            "{program:?}: {out}"
        );
    }
}

/// A bootstrap server for `n` ranks that wires them and then reports
/// nothing, so failures can only be noticed by the ranks themselves.
fn silent_bootstrap(n: usize) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let server = std::thread::spawn(move || {
        let mut links: Vec<(u32, TcpStream, FrameReader)> = Vec::new();
        let mut cards = vec![Vec::new(); n];
        while links.len() < n {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut reader = FrameReader::new(MAX_SERVER_FRAME);
            let Message::Hello { rank, .. } = read(&mut stream, &mut reader) else {
                panic!("a rank must say hello first");
            };
            let Message::Fence { card, .. } = read(&mut stream, &mut reader) else {
                panic!("then fence");
            };
            cards[rank as usize] = card;
            links.push((rank, stream, reader));
        }
        let done = Message::FenceDone { epoch: 0, cards }.encode();
        for (_, stream, _) in &mut links {
            stream.write_all(&done).expect("send the cards");
        }
        // Acknowledge finalizes until every link closes.
        let handles: Vec<_> = links
            .into_iter()
            .map(|(_, mut stream, mut reader)| {
                std::thread::spawn(move || {
                    while let Some(message) = try_read(&mut stream, &mut reader) {
                        if message == Message::Finalize {
                            let _ = stream.write_all(&Message::FinalizeAck.encode());
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            let _ = handle.join();
        }
    });
    (addr, server)
}

fn try_read(stream: &mut TcpStream, reader: &mut FrameReader) -> Option<Message> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(message) = reader.next_message().ok()? {
            return Some(message);
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        reader.push(&chunk[..n]);
    }
}

fn read(stream: &mut TcpStream, reader: &mut FrameReader) -> Message {
    try_read(stream, reader).expect("a whole message")
}

/// Over shared memory a dead peer sends no end-of-file: without any
/// launcher notice, the rank waiting for it still fails within a second,
/// with an error naming it (the pidfd in its poller). Over TCP the socket
/// says it.
#[test]
fn a_peer_killed_with_sigkill_fails_the_receive_within_a_second_without_a_launcher() {
    let program = binary(bin_dir().join("examples").join("peer_death"));
    let cases = [
        ("auto", "recv"),
        ("tcp", "recv"),
        ("auto", "barrier"),
        ("auto", "allreduce"),
        ("auto", "bcast"),
        ("auto", "alltoall"),
        ("auto", "allgather"),
        ("auto", "scatter"),
        ("auto", "gather"),
    ];
    for (transport, wait) in cases {
        let (addr, server) = silent_bootstrap(2);
        let ranks: Vec<Child> = (0..2)
            .map(|rank| {
                Command::new(&program)
                    .arg(wait)
                    .env("MPR_RANK", rank.to_string())
                    .env("MPR_SIZE", "2")
                    .env("MPR_LOCAL_RANK", rank.to_string())
                    .env("MPR_LOCAL_SIZE", "2")
                    .env("MPR_NODE", "0")
                    .env("MPR_JOB", "liveness-test")
                    .env("MPR_BOOTSTRAP", &addr)
                    .env("MPR_SECRET", "00112233445566778899aabbccddeeff")
                    .env("MPR_TRANSPORT", transport)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("a rank starts")
            })
            .collect();
        let mut ranks = ranks.into_iter();
        let rank0 = ranks.next().expect("rank 0");
        let rank1 = ranks.next().expect("rank 1");
        let output = wait_bounded(rank0, Duration::from_secs(20), "rank 0");
        let killed = wait_bounded(rank1, Duration::from_secs(20), "rank 1");
        let _ = server.join();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("PeerFailed { rank: Rank(1) }"),
            "{transport}, {wait}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let millis: u64 = stdout
            .split("ended after ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|ms| ms.parse().ok())
            .expect("rank 0 prints the time");
        assert!(
            millis < 1000,
            "{transport}, {wait}: noticed after {millis} ms"
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(killed.status.signal(), Some(9), "rank 1 died of SIGKILL");
    }
}

/// Names in `/dev/shm`.
fn dev_shm() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose environment holds `marker`.
fn marked_processes(marker: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|&b| b == 0).any(|var| var == marker.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Shared-memory segments a process maps.
fn mapped_segments(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|maps| maps.lines().filter(|l| l.contains("memfd:mpr-shm")).count())
        .unwrap_or(0)
}

/// Polls `condition` until it holds or `limit` passes.
fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// `kill -9` of every rank and of `mprun` in the middle of a job leaves no
/// process and no shared-memory object behind: segments are anonymous
/// (memfd) and die with the last process that maps them.
#[test]
fn kill_9_of_every_rank_and_of_mprun_leaves_nothing_behind() {
    let before = dev_shm();
    let marker = format!("MPR_TEST_MARK={}-{}", std::process::id(), line!());
    let (name, value) = marker.split_once('=').expect("a marker");
    let mut job = Command::new(mprun())
        .args([
            "-n",
            "4",
            "--timeout",
            "60",
            "-x",
            name,
            &ring(),
            "100000000",
        ])
        .env(name, value)
        .env("MPR_TRANSPORT", "auto")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mprun starts");
    // The four ranks are up and each maps its own segment and three peers'.
    let mut ranks = Vec::new();
    let wired = eventually(Duration::from_secs(30), || {
        ranks = marked_processes(&marker)
            .into_iter()
            .filter(|&pid| pid != job.id() && mapped_segments(pid) >= 4)
            .collect();
        ranks.len() == 4
    });
    let mut victims: Vec<u32> = marked_processes(&marker);
    victims.push(job.id());
    for pid in &victims {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let _ = job.wait();
    assert!(wired, "the ranks never mapped their segments: {ranks:?}");
    let gone = eventually(Duration::from_secs(10), || {
        marked_processes(&marker).is_empty()
    });
    assert!(gone, "left running: {:?}", marked_processes(&marker));
    let after = dev_shm();
    let new: Vec<_> = after.difference(&before).collect();
    assert!(new.is_empty(), "left in /dev/shm: {new:?}");
}

/// `--report-bindings` makes every rank say where it runs; by default a
/// host with no more ranks than CPUs binds each rank to its own CPU, and
/// `--bind-to none` binds nothing; `--bind-to core` binds an
/// oversubscribed host round robin.
#[test]
fn ranks_bind_to_cores_unless_told_not_to_and_report_it() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hello = binary(PathBuf::from(env!("CARGO_BIN_EXE_hello")));
    let report = |extra: &[&str], n: usize| {
        let child = Command::new(mprun())
            .args(["-n", &n.to_string(), "--report-bindings"])
            .args(extra)
            .arg(&hello)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mprun starts");
        let output = wait_bounded(child, Duration::from_secs(60), "hello");
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let n = cpus.min(4);
    let bound = report(&[], n);
    let mut cpus_taken: Vec<&str> = bound
        .lines()
        .filter_map(|line| line.split("bound to CPU ").nth(1))
        .collect();
    cpus_taken.sort();
    cpus_taken.dedup();
    assert_eq!(cpus_taken.len(), n, "one CPU each: {bound}");
    let unbound = report(&["--bind-to", "none"], n);
    assert_eq!(
        unbound.matches("not bound (--bind-to none)").count(),
        n,
        "{unbound}"
    );
    let crowded = report(&[], cpus + 1);
    assert_eq!(
        crowded
            .matches("not bound (more ranks than CPUs on this host)")
            .count(),
        cpus + 1,
        "{crowded}"
    );
    // Asked for, an oversubscribed host binds round robin: every CPU, and
    // the first one twice.
    let shared = report(&["--bind-to", "core"], cpus + 1);
    let mut per_cpu: Vec<&str> = shared
        .lines()
        .filter_map(|line| line.split("bound to CPU ").nth(1))
        .filter_map(|rest| rest.strip_suffix(", shared (more ranks than CPUs on this host)"))
        .collect();
    assert_eq!(per_cpu.len(), cpus + 1, "{shared}");
    per_cpu.sort();
    per_cpu.dedup();
    assert_eq!(per_cpu.len(), cpus, "every CPU: {shared}");
}
