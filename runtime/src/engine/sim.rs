//! A simulated world of engines joined by in-order byte links, and property
//! tests of random programs against an MPI matching oracle.
//!
//! The scheduler is seeded: it repeatedly picks a random link with pending
//! bytes and moves a random-length prefix of `transmit_slices` into the
//! receiver's `recv_target`, so frames split at arbitrary byte boundaries.

use std::collections::HashMap;

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::request::{Request, SendState};
use super::*;

/// The small limits used in tests, so both protocols and credit exhaustion show up.
pub(super) fn small_config() -> EngineConfig {
    EngineConfig {
        eager_limit: 256,
        eager_limit_lone: 256,
        eager_limit_expected: 256,
        credit_window: 4096,
        direct_read_min: 64,
        eager_by_reference_min: 128,
    }
}

/// N engines and the links between them.
pub(super) struct World {
    pub(super) engines: Vec<Engine>,
    pub(super) rng: StdRng,
    /// Largest prefix moved in one step.
    pub(super) max_chunk: usize,
    /// What the runs exercised, to check the tests reach every path.
    pub(super) coverage: Coverage,
}

/// Counters of interesting events seen by the simulator.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Coverage {
    /// Reads straight into a user buffer.
    direct_reads: usize,
    /// Deliveries parsed in place (`received_from`).
    in_place_reads: usize,
    /// Steps after which some sender had messages waiting for credit.
    credit_waits: usize,
    /// Eager-sized messages sent as RTS (or PULL) for lack of credit.
    rts_fallbacks: usize,
    /// Truncated receives.
    truncations: usize,
    /// Messages received through improbe + mrecv.
    mrecvs: usize,
    /// Sends offered for pulling (PULL queued when posted).
    pulls: usize,
    /// Large unexpected eager payloads matched once whole.
    arrivals_whole: usize,
    /// Large unexpected eager payloads matched while still arriving.
    arrivals_taken_over: usize,
}

impl World {
    pub(super) fn new(n: usize, config: EngineConfig, seed: u64) -> World {
        let engines = (0..n)
            .map(|r| Engine::new(Rank(r as u32), n as u32, config.clone()))
            .collect();
        World {
            engines,
            rng: StdRng::seed_from_u64(seed),
            max_chunk: 2000,
            coverage: Coverage::default(),
        }
    }

    /// Links (from, to) with bytes waiting; checks the dirty set against
    /// `wants_transmit`.
    pub(super) fn pending_links(&self) -> Vec<(usize, usize)> {
        let mut links = Vec::new();
        for (a, e) in self.engines.iter().enumerate() {
            let mut dirty: Vec<usize> = e.peers_with_transmit().map(|r| r.index()).collect();
            dirty.sort_unstable();
            let wanting: Vec<usize> = (0..self.engines.len())
                .filter(|&b| e.wants_transmit(Rank(b as u32)))
                .collect();
            assert_eq!(
                dirty, wanting,
                "rank {a}: peers_with_transmit disagrees with wants_transmit"
            );
            assert!(!dirty.contains(&a), "rank {a} transmits to itself");
            links.extend(dirty.into_iter().map(|b| (a, b)));
        }
        links
    }

    /// Moves up to `k` bytes from `a` to `b`; returns how many moved.
    pub(super) fn move_bytes(&mut self, a: usize, b: usize, k: usize) -> usize {
        let (from, to) = if a < b {
            let (x, y) = self.engines.split_at_mut(b);
            (&mut x[a], &mut y[0])
        } else {
            let (x, y) = self.engines.split_at_mut(a);
            (&mut y[0], &mut x[b])
        };
        let (ra, rb) = (Rank(a as u32), Rank(b as u32));
        let mut slices = Slices::new();
        from.transmit_slices(rb, &mut slices, k);
        if self.rng.random_bool(0.5) {
            // The shared-memory way: the engine parses bytes in place.
            let bytes: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
            assert!(
                !bytes.is_empty(),
                "link {a}->{b} is pending but offered no bytes"
            );
            drop(slices);
            to.received_from(ra, &bytes)
                .unwrap_or_else(|e| panic!("protocol error on link {a}->{b}: {e}"));
            from.transmitted(rb, bytes.len());
            self.coverage.in_place_reads += 1;
            self.note_credit_waits();
            return bytes.len();
        }
        // Sometimes as a transport that reads payloads in capped pieces.
        let direct_max = if self.rng.random_bool(0.25) {
            self.rng.random_range(1..=4096)
        } else {
            usize::MAX
        };
        let target = to.recv_target_at_most(ra, direct_max);
        let direct = target.len() < super::rx::STAGING_SPARE; // staging always offers more
        let mut n = 0;
        for s in &slices {
            let take = s.len().min(target.len() - n);
            target[n..n + take].copy_from_slice(&s[..take]);
            n += take;
        }
        assert!(n > 0, "link {a}->{b} is pending but offered no bytes");
        drop(slices);
        to.received(ra, n)
            .unwrap_or_else(|e| panic!("protocol error on link {a}->{b}: {e}"));
        from.transmitted(rb, n);
        self.coverage.direct_reads += direct as usize;
        self.note_credit_waits();
        n
    }

    /// Counts a step after which some sender waits for credit.
    fn note_credit_waits(&mut self) {
        if self
            .engines
            .iter()
            .any(|e| e.peers.iter().any(|p| !p.waiting.is_empty()))
        {
            self.coverage.credit_waits += 1;
        }
    }

    /// One random step on a random pending link; false if none is pending.
    pub(super) fn step(&mut self) -> bool {
        let links = self.pending_links();
        if links.is_empty() {
            return false;
        }
        let (a, b) = links[self.rng.random_range(0..links.len())];
        let k = if self.rng.random_bool(0.5) {
            self.rng.random_range(1..=48)
        } else {
            self.rng.random_range(1..=self.max_chunk)
        };
        self.move_bytes(a, b, k);
        true
    }

    /// Steps until no link has bytes; panics after `bound` steps (livelock).
    pub(super) fn drive(&mut self, bound: usize) {
        for _ in 0..bound {
            if !self.step() {
                return;
            }
        }
        panic!("world still busy after {bound} steps: livelock or runaway traffic");
    }

    /// Checks the flow-control bound on buffered unexpected bytes.
    pub(super) fn check_unexpected_bound(&self) {
        for e in &self.engines {
            for p in 0..self.engines.len() {
                let bytes = e.unexpected_bytes(Rank(p as u32));
                assert!(
                    bytes <= e.config().credit_window,
                    "rank {} buffers {bytes} unexpected bytes from {p}, over the window",
                    e.rank()
                );
            }
        }
    }
}

/// The payload of message `id`.
pub(super) fn payload(id: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (id.wrapping_mul(131) ^ i.wrapping_mul(7) ^ (i >> 8)) as u8)
        .collect()
}

/// One message of a random program.
#[derive(Debug, Clone)]
struct Msg {
    src: usize,
    dst: usize,
    /// Context, which also fixes the receive selector shape (see `selector`).
    ctx: u32,
    tag: i32,
    /// Selector shape of the receive in context 4.
    shape: u32,
    len: usize,
    sync: bool,
    /// Buffer length of the receive generated for it.
    buf_len: usize,
}

/// Receive selector for a message: context 0 exact, 1 ANY_TAG, 2
/// ANY_SOURCE, 3 both. Within one (receiver, context) every receive has the
/// same shape, so every interleaving lets all receives complete. Context 4
/// mixes all four shapes, but all its messages to a rank come from one
/// source with one tag, so every receive matches every message there and
/// posting order alone decides.
fn selector(m: &Msg) -> (Source, TagMatch) {
    let src = Source::Rank(Rank(m.src as u32));
    let tag = TagMatch::Tag(Tag(m.tag));
    match if m.ctx == 4 { m.shape } else { m.ctx } {
        0 => (src, tag),
        1 => (src, TagMatch::Any),
        2 => (Source::Any, tag),
        _ => (Source::Any, TagMatch::Any),
    }
}

/// The oracle's group of a receive: receives in one group match the same
/// messages, so they must get them in send order.
fn group(m: &Msg) -> (Source, TagMatch) {
    if m.ctx == 4 {
        (Source::Any, TagMatch::Any)
    } else {
        selector(m)
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Send(usize),
    Recv(usize),
}

/// Runs a random program of `count` messages on `n` ranks, checking it
/// against the oracle. Panics (with the seed) on any violation.
fn run_program(seed: u64, n: usize, count: usize) -> Coverage {
    let config = small_config();
    let mut world = World::new(n, config.clone(), seed);
    // Half the links move rendezvous messages by pull (the "remote" memory
    // is this process's own), some only up to twice the eager limit.
    let links = &mut StdRng::seed_from_u64(seed ^ 0x5eed_f011);
    let me = PeerMemory::of_process(std::process::id());
    for a in 0..n {
        for b in (0..n).filter(|&b| b != a) {
            if links.random_bool(0.5) {
                let eager = config.eager_limit;
                let (max, lone) =
                    [(2 * eager, 3 * eager), (usize::MAX, usize::MAX)][links.random_range(0..2)];
                world.engines[a].offer_pulls(Rank(b as u32), max, lone);
                world.engines[b].pull_from(Rank(a as u32), std::sync::Arc::new(me));
            }
        }
    }
    let rng = &mut StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let eager = config.eager_limit;
    let msgs: Vec<Msg> = (0..count)
        .map(|_| {
            let len = match rng.random_range(0..10) {
                0 => 0,
                1 => eager,
                2 => eager + 1,
                _ => rng.random_range(0..=3 * eager),
            };
            let short = len > 0 && rng.random_bool(0.15);
            let (dst, ctx) = (rng.random_range(0..n), rng.random_range(0..5));
            Msg {
                src: if ctx == 4 {
                    (dst + 1) % n
                } else {
                    rng.random_range(0..n)
                },
                dst,
                ctx,
                tag: if ctx == 4 { 0 } else { rng.random_range(0..3) },
                shape: rng.random_range(0..4),
                len,
                sync: rng.random_bool(0.2),
                buf_len: if short {
                    rng.random_range(0..len)
                } else {
                    len + rng.random_range(0..=8)
                },
            }
        })
        .collect();
    // Per rank: its sends in order, its receives shuffled, merged at random.
    let mut programs: Vec<Vec<Op>> = (0..n)
        .map(|r| {
            let sends: Vec<Op> = (0..count)
                .filter(|&i| msgs[i].src == r)
                .map(Op::Send)
                .collect();
            let mut recvs: Vec<Op> = (0..count)
                .filter(|&i| msgs[i].dst == r)
                .map(Op::Recv)
                .collect();
            recvs.shuffle(rng);
            // Some ranks send everything before receiving, flooding their peers.
            let send_bias = [0.2, 0.5, 0.95][rng.random_range(0..3)];
            let (mut s, mut v) = (sends.into_iter().peekable(), recvs.into_iter().peekable());
            let mut ops = Vec::new();
            while s.peek().is_some() || v.peek().is_some() {
                let take_send =
                    v.peek().is_none() || (s.peek().is_some() && rng.random_bool(send_bias));
                ops.push(if take_send { s.next() } else { v.next() }.expect("non-empty"));
            }
            ops.reverse(); // popped from the back
            ops
        })
        .collect();
    let mut send_reqs: Vec<(usize, RequestId)> = Vec::new();
    let mut recv_reqs: Vec<(usize, RequestId)> = Vec::new(); // in posting order
    let link_bias = rng.random_range(0.3..0.9);
    let mut steps = 0usize;
    loop {
        steps += 1;
        assert!(
            steps < 2_000_000,
            "seed {seed}: no quiescence after {steps} steps"
        );
        let ready: Vec<usize> = (0..n).filter(|&r| !programs[r].is_empty()).collect();
        let links_busy = !world.pending_links().is_empty();
        if ready.is_empty() && !links_busy {
            break;
        }
        if ready.is_empty() || (links_busy && rng.random_bool(link_bias)) {
            world.step();
            world.check_unexpected_bound();
            continue;
        }
        let r = ready[rng.random_range(0..ready.len())];
        let e = &mut world.engines[r];
        match programs[r].pop().expect("ready") {
            Op::Send(i) => {
                let m = &msgs[i];
                let mode = if m.sync {
                    SendMode::Synchronous
                } else {
                    SendMode::Standard
                };
                let buf = Box::new(payload(i, m.len));
                let id = e.post_send(
                    Rank(m.dst as u32),
                    ContextId(m.ctx),
                    Tag(m.tag),
                    buf.into(),
                    mode,
                );
                let rts = matches!(e.requests.get(id), Some(Request::Send(s)) if matches!(s.state, SendState::AwaitCts | SendState::AwaitPulled));
                world.coverage.rts_fallbacks += (rts && m.len <= eager) as usize;
                let pull = matches!(e.requests.get(id), Some(Request::Send(s)) if s.state == SendState::AwaitPulled);
                world.coverage.pulls += pull as usize;
                send_reqs.push((i, id));
            }
            Op::Recv(i) => {
                let m = &msgs[i];
                let (source, tag) = selector(m);
                let buf = Box::new(vec![0xa5u8; m.buf_len]);
                let probed = e.iprobe(source, ContextId(m.ctx), tag);
                let id = if rng.random_bool(0.25) {
                    match e.improbe(source, ContextId(m.ctx), tag) {
                        Some((handle, status)) => {
                            assert_eq!(
                                Some(status),
                                probed,
                                "seed {seed}: iprobe and improbe disagree"
                            );
                            world.coverage.mrecvs += 1;
                            e.post_mrecv(handle, buf.into())
                        }
                        None => {
                            assert_eq!(probed, None);
                            e.post_recv(source, ContextId(m.ctx), tag, buf.into())
                        }
                    }
                } else {
                    e.post_recv(source, ContextId(m.ctx), tag, buf.into())
                };
                recv_reqs.push((i, id));
            }
        }
        world.check_unexpected_bound();
    }
    world.coverage.truncations = check_oracle(seed, &mut world, &msgs, &send_reqs, &recv_reqs);
    for engine in &world.engines {
        world.coverage.arrivals_whole += engine.arrivals.matched.0;
        world.coverage.arrivals_taken_over += engine.arrivals.matched.1;
    }
    world.coverage
}

/// Checks the final state of a program against MPI's rules.
fn check_oracle(
    seed: u64,
    world: &mut World,
    msgs: &[Msg],
    send_reqs: &[(usize, RequestId)],
    recv_reqs: &[(usize, RequestId)],
) -> usize {
    let mut truncations = 0;
    for e in &world.engines {
        assert_eq!(
            e.pending_requests(),
            0,
            "seed {seed}: rank {} has pending requests",
            e.rank()
        );
        assert_eq!(
            e.unexpected.len(),
            0,
            "seed {seed}: rank {} has unreceived messages",
            e.rank()
        );
        assert_eq!(
            e.posted.len(),
            0,
            "seed {seed}: rank {} has unmatched receives",
            e.rank()
        );
    }
    for &(i, id) in send_reqs {
        let e = &mut world.engines[msgs[i].src];
        let c = e
            .take_completion(id)
            .unwrap_or_else(|| panic!("seed {seed}: send {i} never completed"));
        assert!(
            e.take_completion(id).is_none(),
            "seed {seed}: send {i} completed twice"
        );
        let status = c
            .result
            .unwrap_or_else(|err| panic!("seed {seed}: send {i} failed: {err}"));
        assert_eq!(status.len, msgs[i].len);
        assert_eq!(
            c.send_buf.expect("send buffer returned").bytes(),
            &payload(i, msgs[i].len)[..]
        );
    }
    // The k-th receive (posting order) of a selector group that got a
    // message from source s must get the k-th message s sent that matches
    // the group: non-overtaking plus exactly-once.
    let mut candidates: HashMap<(usize, u32, Source, TagMatch, usize), Vec<usize>> = HashMap::new();
    for (i, m) in msgs.iter().enumerate() {
        let (source, tag) = group(m);
        candidates
            .entry((m.dst, m.ctx, source, tag, m.src))
            .or_default()
            .push(i);
    }
    let mut next: HashMap<(usize, u32, Source, TagMatch, usize), usize> = HashMap::new();
    for &(i, id) in recv_reqs {
        let r = &msgs[i];
        let e = &mut world.engines[r.dst];
        let c = e
            .take_completion(id)
            .unwrap_or_else(|| panic!("seed {seed}: receive {i} never completed"));
        assert!(
            e.take_completion(id).is_none(),
            "seed {seed}: receive {i} completed twice"
        );
        let got_source = match &c.result {
            Ok(status) => status.source,
            Err(OpError::Truncated { source, .. }) => *source,
            Err(err) => panic!("seed {seed}: receive {i} failed: {err}"),
        };
        let (source, tag) = group(r);
        let key = (r.dst, r.ctx, source, tag, got_source.index());
        let k = next.entry(key).or_default();
        let list = candidates.get(&key).map_or(&[][..], |v| &v[..]);
        let j = *list
            .get(*k)
            .unwrap_or_else(|| panic!("seed {seed}: receive {i} got a message nobody sent"));
        *k += 1;
        let m = &msgs[j];
        let mut buf = c.recv_buf.expect("receive buffer returned");
        if m.len > r.buf_len {
            let expected = OpError::Truncated {
                source: Rank(m.src as u32),
                tag: Tag(m.tag),
                message_len: m.len,
                buffer_len: r.buf_len,
            };
            assert_eq!(
                c.result,
                Err(expected),
                "seed {seed}: receive {i} should have been truncated by message {j}"
            );
            truncations += 1;
        } else {
            let status = Status {
                source: Rank(m.src as u32),
                tag: Tag(m.tag),
                len: m.len,
            };
            assert_eq!(
                c.result,
                Ok(status),
                "seed {seed}: receive {i} should have got message {j}"
            );
            assert_eq!(
                &buf.bytes_mut()[..m.len],
                &payload(j, m.len)[..],
                "seed {seed}: payload of message {j} corrupted"
            );
        }
    }
    for (key, list) in &candidates {
        assert_eq!(
            next.get(key).copied().unwrap_or(0),
            list.len(),
            "seed {seed}: messages of {key:?} lost"
        );
    }
    truncations
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random programs over both protocols, credit fallback, self-sends,
    /// wildcards, probes, synchronous sends and short buffers.
    #[test]
    fn random_programs_match_the_oracle(seed in any::<u64>(), n in 2usize..=6, count in 0usize..80) {
        run_program(seed, n, count);
    }

    /// Many messages between few ranks: credit runs out and messages wait.
    #[test]
    fn floods_respect_credit(seed in any::<u64>(), count in 100usize..250) {
        run_program(seed, 2, count);
    }
}

#[test]
fn fixed_seeds_match_the_oracle_and_cover_every_path() {
    let mut total = Coverage::default();
    for seed in 0..24 {
        let (n, count) = if seed % 3 == 0 {
            (2, 200)
        } else {
            (2 + seed as usize % 5, 40 + 10 * (seed as usize % 8))
        };
        let c = run_program(seed, n, count);
        total.direct_reads += c.direct_reads;
        total.in_place_reads += c.in_place_reads;
        total.credit_waits += c.credit_waits;
        total.rts_fallbacks += c.rts_fallbacks;
        total.truncations += c.truncations;
        total.mrecvs += c.mrecvs;
        total.pulls += c.pulls;
        total.arrivals_whole += c.arrivals_whole;
        total.arrivals_taken_over += c.arrivals_taken_over;
    }
    eprintln!("{total:?}");
    let Coverage {
        direct_reads,
        in_place_reads,
        credit_waits,
        rts_fallbacks,
        truncations,
        mrecvs,
        pulls,
        arrivals_whole,
        arrivals_taken_over,
    } = total;
    assert!(
        direct_reads > 0 && in_place_reads > 0 && credit_waits > 0 && rts_fallbacks > 0,
        "{total:?}"
    );
    assert!(truncations > 0 && mrecvs > 0 && pulls > 0, "{total:?}");
    assert!(arrivals_whole > 0 && arrivals_taken_over > 0, "{total:?}");
}
