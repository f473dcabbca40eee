//! The per-rank runtime core: the engine and the transport behind one lock,
//! and the progress loop every blocking call runs.
//!
//! Progress is driven by the calling thread: a waiting call polls the
//! sockets without blocking for up to the spin budget (`MPR_SPIN_US`),
//! yielding the core between polls when the host is oversubscribed, then
//! sleeps in the poller until a socket or the waker fires. A thread that
//! wants the lock while another sleeps in the poller rings the waker first.
//! With `MPR_ASYNC_PROGRESS=1`, a progress thread also drives the
//! transport, so communication advances while every user thread computes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::bootstrap::client::Connected;
use crate::engine::frame::SHORT_HEADER_LEN;
use crate::engine::{Completion, Engine, RequestId, SendData, SendMode};
use crate::error::Error;
use crate::transport::shm::board::{Boards, HostBoards};
use crate::transport::shm::{Shm, ShmEvent};
use crate::transport::tcp::{LinkEvent, Tcp};
use crate::tuning::{ErrorMode, Tuning};
use crate::{ContextId, Rank, Tag};

/// Longest single sleep in the poller, so that launcher notices (failed
/// peers) are looked at regularly.
const MAX_BLOCK: Duration = Duration::from_millis(20);
/// Direct link reads only while this few operations are pending: a
/// ping-pong waits for one message; a window of many is a stream, which
/// the poller serves better (measured: direct reads cost 10-20% of the
/// bandwidth at 512 KiB-1 MiB with 64 requests in flight).
const DIRECT_MAX_PENDING: usize = 2;
/// Polls between two looks at the launcher's failed-peer notices while
/// spinning. The first look comes at the end of the first period, not at
/// the first poll: most waits end sooner, and on a shared core the notices'
/// cache line is cold after every switch (a 2-rank barrier with both ranks
/// on one core spent 2% of its user time there).
const NOTICE_EVERY: u32 = 256;
/// While no TCP link is in use, spinning polls between two looks at the
/// poller (pidfds, new connections): the shared-memory rings are read on
/// every poll without a system call.
const POLLER_EVERY: u32 = 64;

/// A source of news about failed ranks: the launcher through the
/// bootstrap link, or the thread supervisor of `local::run`.
pub(crate) trait PeerNotices: Send + Sync + std::fmt::Debug {
    /// World ranks reported failed so far, in the order reported.
    fn failed_peers(&self) -> Vec<u32>;

    /// How many that is, cheaply (no lock, no allocation): spinning waits
    /// ask often.
    fn failed_count(&self) -> usize;
}

impl PeerNotices for Connected {
    fn failed_peers(&self) -> Vec<u32> {
        Connected::failed_peers(self)
    }

    fn failed_count(&self) -> usize {
        Connected::failed_count(self)
    }
}

impl State {
    /// Sends a small standard-mode message to `peer` at once if its
    /// shared-memory lane can take the whole frame now and the engine has
    /// nothing queued for it (see `engine/inline.rs`): no request, no
    /// queue. False: nothing happened, post the send as usual.
    pub(crate) fn send_inline(
        &mut self,
        peer: Rank,
        context: ContextId,
        tag: Tag,
        payload: &[u8],
    ) -> bool {
        let Some(shm) = self.shm.as_mut() else {
            return false;
        };
        if !shm.fits(peer, SHORT_HEADER_LEN + payload.len()) {
            return false;
        }
        let Some(header) = self.engine.inline_send(peer, context, tag, payload.len()) else {
            return false;
        };
        shm.write_inline(peer, &header, payload);
        true
    }

    /// Writes what the engine queued, each peer on its transport.
    pub(crate) fn flush(&mut self) {
        if let Some(shm) = self.shm.as_mut() {
            shm.flush(&mut self.engine);
        }
        self.tcp.flush(&mut self.engine);
    }
}

/// The engine and its transports: what the lock protects.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) engine: Engine,
    pub(crate) tcp: Tcp,
    /// Lanes to peers on this host, if any.
    pub(crate) shm: Option<Shm>,
    /// Launcher notices already applied.
    notices_seen: usize,
    /// The poller failed once; every peer was failed then.
    poll_failed: bool,
}

/// Shared by every communicator of a rank.
#[derive(Debug)]
pub(crate) struct Runtime {
    /// Every world rank's collective board, when all ranks share this
    /// host's memory (`collective/board.rs`); use [`Runtime::boards`].
    boards: Option<Boards>,
    /// The boards of this rank and its local peers, which communicators
    /// of local ranks made from the world use (`collective/board_number.rs`).
    host_boards: Option<HostBoards>,
    /// Whether every rank has its boards (decided at the first use).
    boards_agreed: std::sync::OnceLock<bool>,
    /// Which boards this rank's communicators use
    /// (`collective/board_number.rs`).
    board_numbers: Mutex<crate::collective::board_number::BoardNumbers>,
    rank: Rank,
    size: u32,
    state: Mutex<State>,
    waker: Arc<Waker>,
    sleeping: AtomicBool,
    tuning: Tuning,
    bootstrap: Option<Arc<Connected>>,
    /// Who tells this rank about failed peers (the launcher, or `local::run`).
    notices: Option<Arc<dyn PeerNotices>>,
    /// Ends the progress thread.
    shutdown: AtomicBool,
    finalized: AtomicBool,
    /// The error policy: abort the job (true) or return errors.
    abort_on_error: AtomicBool,
    /// Per world rank, its shared-memory domain (see
    /// [`memory_domains`](crate::bootstrap::card::memory_domains)).
    memory_domains: Vec<Option<u32>>,
}

impl Runtime {
    /// A runtime over wired transports.
    pub(crate) fn new(
        mut engine: Engine,
        tcp: Tcp,
        shm: Option<Shm>,
        tuning: Tuning,
        bootstrap: Option<Arc<Connected>>,
        notices: Option<Arc<dyn PeerNotices>>,
        memory_domains: Vec<Option<u32>>,
    ) -> Arc<Runtime> {
        let waker = tcp.waker();
        // Every peer starts with the TCP limits; shared memory then sets
        // its own for the peers it carries.
        let stream_limit = engine.config().eager_limit;
        let expected_limit = engine.config().eager_limit_expected;
        for peer in 0..engine.size() {
            engine.limit_eager(
                Rank(peer),
                stream_limit,
                tuning.tcp_eager_limit_lone,
                expected_limit,
            );
        }
        if let Some(shm) = &shm {
            shm.configure(
                &mut engine,
                tuning.shm_eager_limit,
                tuning.shm_eager_limit_lone,
            );
        }
        let host_boards = shm.as_ref().and_then(|shm| {
            shm.boards(
                engine.rank(),
                engine.size(),
                tuning.shm_board_max > 0,
                tuning.shm_direct.any(),
            )
        });
        let everyone: Vec<usize> = (0..engine.size() as usize).collect();
        let boards = host_boards
            .as_ref()
            .and_then(|host| host.view(&everyone, 0, 0, None));
        let runtime = Arc::new(Runtime {
            boards,
            host_boards,
            boards_agreed: std::sync::OnceLock::new(),
            board_numbers: Mutex::default(),
            rank: engine.rank(),
            size: engine.size(),
            state: Mutex::new(State {
                engine,
                tcp,
                shm,
                notices_seen: 0,
                poll_failed: false,
            }),
            waker,
            sleeping: AtomicBool::new(false),
            abort_on_error: AtomicBool::new(tuning.errors == ErrorMode::Abort),
            tuning,
            bootstrap,
            notices,
            shutdown: AtomicBool::new(false),
            finalized: AtomicBool::new(false),
            memory_domains,
        });
        if runtime.tuning.async_progress {
            let weak = Arc::downgrade(&runtime);
            let _ = std::thread::Builder::new()
                .name(format!("mpr-progress-{}", runtime.rank))
                .spawn(move || progress_thread(weak));
        }
        runtime
    }

    /// World rank of this process.
    pub(crate) fn rank(&self) -> Rank {
        self.rank
    }

    /// The collective boards, if every rank of the job has them: the first
    /// call waits until every rank has said whether it mapped them all.
    pub(crate) fn boards(&self) -> Option<&Boards> {
        let boards = self.boards.as_ref()?;
        let agreed = *self.boards_agreed.get_or_init(|| {
            self.wait_until(|engine| {
                boards.agreed().or_else(|| {
                    (0..self.size)
                        .any(|rank| engine.peer_gone_error(Rank(rank)).is_some())
                        .then_some(false)
                })
            })
        });
        agreed.then_some(boards)
    }

    /// The boards of this rank and of the local peers it mapped.
    pub(crate) fn host_boards(&self) -> Option<&HostBoards> {
        self.host_boards.as_ref()
    }

    /// The board numbers of this rank's communicators.
    pub(crate) fn board_numbers(
        &self,
    ) -> MutexGuard<'_, crate::collective::board_number::BoardNumbers> {
        self.board_numbers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The tunables.
    pub(crate) fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// World size.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// The shared-memory domain of world rank `rank` (a number shared by
    /// exactly the ranks that share memory with it), if it offered one.
    pub(crate) fn memory_domain(&self, rank: Rank) -> Option<u32> {
        self.memory_domains.get(rank.index()).copied().flatten()
    }

    /// Whether all these world ranks offered shared memory in one domain
    /// (the same answer on every rank).
    pub(crate) fn share_memory(&self, ranks: &[Rank]) -> bool {
        let domain = |rank: &Rank| self.memory_domains.get(rank.index()).copied().flatten();
        ranks
            .first()
            .map(domain)
            .is_some_and(|first| first.is_some() && ranks.iter().all(|rank| domain(rank) == first))
    }

    /// The error policy.
    pub(crate) fn error_mode(&self) -> ErrorMode {
        if self.abort_on_error.load(Ordering::Relaxed) {
            ErrorMode::Abort
        } else {
            ErrorMode::Return
        }
    }

    /// Changes the error policy.
    pub(crate) fn set_error_mode(&self, mode: ErrorMode) {
        self.abort_on_error
            .store(mode == ErrorMode::Abort, Ordering::Relaxed);
    }

    /// Locks the state, waking a thread asleep in the poller first.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        if self.sleeping.load(Ordering::Acquire) {
            let _ = self.waker.wake();
        }
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `post` on the engine and its transports (so that it may send
    /// inline, see [`State::send_inline`]) and pushes out what it queued.
    pub(crate) fn post_state<R>(&self, post: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.lock();
        let state = &mut *state;
        let result = post(state);
        state.flush();
        result
    }

    /// Starts a send: inline when it can go so ([`State::send_inline`]:
    /// then it is complete and there is no request, `None`), else through
    /// the engine, marked with `scope` if that is not 0.
    pub(crate) fn post_send(
        &self,
        dest: Rank,
        context: ContextId,
        tag: Tag,
        data: SendData,
        mode: SendMode,
        scope: u64,
    ) -> Option<RequestId> {
        let mut state = self.lock();
        let state = &mut *state;
        if mode != SendMode::Synchronous && state.send_inline(dest, context, tag, data.bytes()) {
            return None;
        }
        let id = state.engine.post_send(dest, context, tag, data, mode);
        if scope != 0 {
            state.engine.set_scope(id, scope);
        }
        state.flush();
        Some(id)
    }

    /// Runs `post` on the engine and pushes out what it queued at once.
    pub(crate) fn post<R>(&self, post: impl FnOnce(&mut Engine) -> R) -> R {
        let mut state = self.lock();
        let state = &mut *state;
        let result = post(&mut state.engine);
        state.flush();
        result
    }

    /// Takes the completion of `id` if it is done, after one round of
    /// non-blocking progress.
    pub(crate) fn test(&self, id: RequestId) -> Option<Completion> {
        let mut state = self.lock();
        self.progress_once(&mut state, Some(Duration::ZERO));
        state.engine.take_completion(id)
    }

    /// Blocks until `id` completes and returns its completion.
    pub(crate) fn wait(&self, id: RequestId) -> Completion {
        self.wait_until(|engine| engine.take_completion(id))
    }

    /// Blocks until the first of `ids` completes; returns its index.
    pub(crate) fn wait_any(&self, ids: &[RequestId]) -> (usize, Completion) {
        self.wait_until(|engine| {
            ids.iter()
                .position(|&id| engine.is_complete(id))
                .and_then(|index| engine.take_completion(ids[index]).map(|c| (index, c)))
        })
    }

    /// Drives progress until `ready` yields a value: spin first, then sleep
    /// in the poller. Never fails: a broken transport fails every peer, so
    /// every operation that needs one completes (with an error).
    pub(crate) fn wait_until<T>(&self, mut ready: impl FnMut(&mut Engine) -> Option<T>) -> T {
        // The clock starts at the 64th poll: most waits of a ping-pong end
        // sooner, and reading it costs as much as a poll.
        let mut started: Option<Instant> = None;
        let mut polls: u32 = 0;
        let mut spinning = true;
        let mut moved = false;
        loop {
            if spinning && polls % 64 == 63 {
                let since = *started.get_or_insert_with(Instant::now);
                spinning = since.elapsed() < self.tuning.spin;
            }
            {
                let mut state = self.lock();
                if let Some(value) = ready(&mut state.engine) {
                    return value;
                }
                if polls % NOTICE_EVERY == NOTICE_EVERY - 1 || !spinning {
                    self.apply_notices(&mut state);
                }
                if spinning {
                    let state = &mut *state;
                    let moved_before = state.tcp.bytes_moved();
                    let shm_progress = self.poll_shm(state);
                    if shm_progress && !self.tuning.oversubscribed {
                        // A dedicated core spins for its budget since the
                        // last progress, not since the wait began: a
                        // stream of large messages keeps its sender
                        // awake to help copy them (`shm/coop.rs`).
                        started = None;
                    }
                    if state.shm.is_some() && state.tcp.is_idle() {
                        // Only strangers could show up on TCP (and pidfds
                        // in the poller): look there now and then.
                        if polls % POLLER_EVERY == POLLER_EVERY - 1 {
                            self.progress_once(state, Some(Duration::ZERO));
                        }
                    } else {
                        // Read the few links directly (saves the
                        // poll-then-read round of a ping-pong); every 16th
                        // poll asks the poller for new connections, and the
                        // transport itself falls back to the poller while
                        // data streams in.
                        let direct = polls % 16 != 15
                            && state.engine.pending_requests() <= DIRECT_MAX_PENDING
                            && state.tcp.read_links_directly(&mut state.engine);
                        if direct {
                            self.take_link_events(state);
                        } else {
                            self.progress_once(state, Some(Duration::ZERO));
                        }
                    }
                    // Bytes moved on TCP: a message is streaming through a
                    // socket, so poll again at once instead of yielding the
                    // core (and the spin budget restarts). Yielding after
                    // every read cost a context switch per chunk, and the
                    // budget ran out mid-message, sleeping between chunks:
                    // 4 ranks bound, allgather of 1 MiB blocks over TCP,
                    // 309 -> 50 context switches per call, 2 119 -> 1 604 us.
                    // Treating shared-memory progress the same way changed
                    // nothing beyond the noise (4 ranks bound, +-5%), so it
                    // keeps its rules.
                    moved = state.tcp.bytes_moved() != moved_before;
                    if moved {
                        started = None;
                    }
                } else {
                    // Raise the sleeping flag, then look once more: what the
                    // rings do not carry (the collective boards) is only
                    // caught by a look after the flag is up.
                    let may_sleep = state.shm.as_mut().is_none_or(Shm::prepare_sleep);
                    if let Some(value) = ready(&mut state.engine) {
                        if let Some(shm) = state.shm.as_mut() {
                            shm.woke();
                        }
                        return value;
                    }
                    let timeout = if may_sleep { MAX_BLOCK } else { Duration::ZERO };
                    self.sleep_prepared(&mut state, timeout);
                }
                if let Some(value) = ready(&mut state.engine) {
                    return value;
                }
            }
            polls = polls.wrapping_add(1);
            if moved {
                moved = false;
            } else if self.tuning.oversubscribed {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Sleeps in the poller for up to `timeout` (unless shared-memory data
    /// already waits), with the flags that make peers wake this rank.
    fn sleep_once(&self, state: &mut State, timeout: Duration) {
        let may_sleep = state.shm.as_mut().is_none_or(Shm::prepare_sleep);
        let timeout = if may_sleep { timeout } else { Duration::ZERO };
        self.sleep_prepared(state, timeout);
    }

    /// Sleeps in the poller for up to `timeout` once the sleeping flags are
    /// up ([`Shm::prepare_sleep`]), and lowers them after.
    fn sleep_prepared(&self, state: &mut State, timeout: Duration) {
        self.sleeping.store(true, Ordering::Release);
        self.progress_once(state, Some(timeout));
        self.sleeping.store(false, Ordering::Release);
        if let Some(shm) = state.shm.as_mut() {
            shm.woke();
        }
    }

    /// One round of progress. If the poller itself fails (an OS error, not
    /// a peer's), every peer is failed so that nothing waits forever.
    fn progress_once(&self, state: &mut State, timeout: Option<Duration>) {
        self.poll_shm(state);
        let State { engine, tcp, .. } = state;
        if let Err(error) = tcp.progress(engine, timeout) {
            if !state.poll_failed {
                state.poll_failed = true;
                eprintln!(
                    "mpr: rank {}: the transport's poller failed: {error}",
                    self.rank
                );
                for peer in (0..self.size).map(Rank).filter(|&peer| peer != self.rank) {
                    state.engine.peer_failed(peer);
                }
            }
        }
        self.take_link_events(state);
        if let Some(shm) = state.shm.as_mut() {
            let tokens = state.tcp.take_foreign();
            for token in tokens {
                shm.on_token(&mut state.engine, state.tcp.registry(), token);
            }
            self.take_shm_events(state);
        }
    }

    /// Reads the shared-memory rings and sends what that produced; true
    /// if anything came (or this rank helped a peer copy).
    fn poll_shm(&self, state: &mut State) -> bool {
        let Some(shm) = state.shm.as_mut() else {
            return false;
        };
        let progressed = shm.poll(&mut state.engine);
        if progressed || shm.blocked() {
            self.take_shm_events(state);
            state.flush();
        }
        progressed
    }

    /// Acts on what the shared-memory transport saw: exited peers (failed
    /// unless they said GOODBYE) and corrupt rings.
    fn take_shm_events(&self, state: &mut State) {
        let Some(shm) = state.shm.as_mut() else {
            return;
        };
        for event in shm.take_events() {
            match event {
                ShmEvent::Exited { peer } => {
                    // Whatever it sent over TCP is readable after its exit.
                    state.tcp.drain(&mut state.engine, peer);
                    // Gone for good: what it sent is read, and nothing more
                    // can reach it (even a GOODBYE of ours would wait forever).
                    shm.close(peer);
                    state.engine.peer_failed(peer);
                }
                ShmEvent::Corrupt { peer, error } => eprintln!(
                    "mpr: rank {}: closed the shared-memory lane from rank {peer}: {error}",
                    self.rank
                ),
                ShmEvent::Protocol { peer, error } => eprintln!(
                    "mpr: rank {}: closed the shared-memory lane from rank {peer}: {error}",
                    self.rank
                ),
            }
        }
    }

    /// Reports links the transport closed for a protocol violation.
    fn take_link_events(&self, state: &mut State) {
        for event in state.tcp.take_events() {
            let LinkEvent::Failed { peer, protocol } = event;
            if let Some(protocol) = protocol {
                eprintln!(
                    "mpr: rank {}: closed the link to rank {peer}: {protocol}",
                    self.rank
                );
            }
        }
    }

    /// Fails operations that involve ranks the launcher reported as failed.
    fn apply_notices(&self, state: &mut State) {
        let Some(notices) = &self.notices else { return };
        if notices.failed_count() <= state.notices_seen {
            return;
        }
        let failed = notices.failed_peers();
        for &peer in &failed[state.notices_seen.min(failed.len())..] {
            if peer != self.rank.0 && peer < self.size {
                state.engine.peer_failed(Rank(peer));
                if let Some(shm) = state.shm.as_mut() {
                    shm.close(Rank(peer));
                }
            }
        }
        state.notices_seen = failed.len();
    }

    /// Says GOODBYE to every peer and waits until each link has delivered
    /// everything and heard the peer's GOODBYE (or is gone).
    pub(crate) fn finalize(&self) {
        if self.finalized.swap(true, Ordering::SeqCst) {
            return;
        }
        self.post(Engine::queue_goodbye);
        let me = self.rank;
        let started = Instant::now();
        loop {
            let mut state = self.lock();
            let state = &mut *state;
            let done = (0..self.size)
                .map(Rank)
                .filter(|&peer| peer != me)
                .all(|peer| {
                    state.engine.all_transmitted(peer)
                        && (!state.tcp.is_up(peer) || state.engine.peer_said_goodbye(peer))
                });
            if done || state.poll_failed {
                break;
            }
            self.apply_notices(state);
            if started.elapsed() < self.tuning.spin {
                self.progress_once(state, Some(Duration::ZERO));
            } else {
                self.sleep_once(state, MAX_BLOCK);
            }
        }
        self.shutdown.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }

    /// Hands `error` back, or aborts the job with it, per the error policy.
    pub(crate) fn handle(&self, error: Error) -> Error {
        if self.error_mode() == ErrorMode::Abort {
            let message = format!(
                "rank {}: {error} (set MPR_ERRORS=return to handle errors)",
                self.rank
            );
            self.abort(1, &message);
        }
        error
    }

    /// Aborts the job: the launcher stops every rank. Never returns.
    pub(crate) fn abort(&self, code: i32, message: &str) -> ! {
        eprintln!("mpr: {message}");
        if let Some(link) = &self.bootstrap {
            let _ = link.abort(code, message);
        }
        std::process::exit(code)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Release);
    }
}

/// Drives the transport while user threads compute.
fn progress_thread(runtime: Weak<Runtime>) {
    loop {
        let Some(runtime) = runtime.upgrade() else {
            return;
        };
        if runtime.shutdown.load(Ordering::Acquire) {
            return;
        }
        let mut state = runtime.lock();
        runtime.sleep_once(&mut state, Duration::from_millis(1));
        drop(state);
        std::thread::yield_now();
    }
}
