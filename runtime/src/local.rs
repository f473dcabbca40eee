//! Run n ranks as threads of one process, over the real engine and
//! transports (shared memory between the threads, TCP on loopback with
//! `MPR_TRANSPORT=tcp`): unit-test parallel code with `cargo test`, no
//! launcher needed.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::Rank;
use crate::bootstrap::card::{Card, memory_domains};
use crate::comm::Comm;
use crate::engine::Engine;
use crate::runtime::{PeerNotices, Runtime};
use crate::transport::shm::{self, Prepared};
use crate::transport::tcp::{Listening, Tcp, TcpConfig};
use crate::tuning::{ErrorMode, Tuning};
use crate::universe::{host_name, prepare_shared_memory};

/// Runs `body` on `n` ranks, each a thread with its own runtime and world
/// communicator, and returns each rank's result in rank order. Errors are
/// returned to the caller (the `MPR_ERRORS` policy is `return`). A panic in
/// a rank is re-raised here after the other ranks finished; its links close
/// without a goodbye, so the others see it as a failed peer.
///
/// ```
/// let sums = mpr::local::run(3, |world| {
///     let mut total = world.rank();
///     for peer in (0..world.size()).filter(|&p| p != world.rank()) {
///         world.send(&[world.rank()], peer, 0).unwrap();
///     }
///     for _ in 1..world.size() {
///         let mut x = [0u32];
///         world.recv(&mut x, mpr::ANY_SOURCE, 0).unwrap();
///         total += x[0];
///     }
///     total
/// });
/// assert_eq!(sums, [3, 3, 3]);
/// ```
pub fn run<R, F>(n: u32, body: F) -> Vec<R>
where
    F: Fn(Comm) -> R + Sync,
    R: Send,
{
    assert!(n > 0, "mpr::local::run needs at least one rank");
    let mut tuning = Tuning::from_env(false, n);
    tuning.errors = ErrorMode::Return;
    let listeners: Vec<Listening> = (0..n)
        .map(|_| {
            Listening::bind(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                tuning.tcp_congestion.clone(),
            )
            .expect("bind a loopback listener")
        })
        .collect();
    let addrs: Vec<Vec<std::net::SocketAddr>> = listeners
        .iter()
        .map(|l| vec![l.addr().expect("a bound listener has an address")])
        .collect();
    let prepared: Vec<Option<Prepared>> = (0..n)
        .map(|rank| prepare_shared_memory(&tuning, Rank(rank), rank, n, 0))
        .collect();
    let cards: Vec<Card> = prepared
        .iter()
        .zip(&addrs)
        .map(|(prepared, addrs)| Card {
            host: host_name(),
            pid: std::process::id(),
            addrs: addrs.clone(),
            shm: prepared.as_ref().map(Prepared::card),
        })
        .collect();
    let mut secret = vec![0u8; 16];
    let _ = getrandom::fill(&mut secret);
    let body = &body;
    let failed = Arc::new(FailedRanks::default());
    std::thread::scope(|scope| {
        let handles: Vec<_> = listeners
            .into_iter()
            .zip(prepared)
            .enumerate()
            .map(|(rank, (listening, prepared))| {
                let cards = &cards;
                let addrs = addrs.clone();
                let secret = secret.clone();
                let tuning = tuning.clone();
                let failed = Arc::clone(&failed);
                std::thread::Builder::new()
                    .name(format!("mpr-rank-{rank}"))
                    .spawn_scoped(scope, move || {
                        let rank = Rank(rank as u32);
                        let config = TcpConfig {
                            socket_buffer: tuning.socket_buffer,
                        };
                        let mut tcp = Tcp::new(rank, listening, addrs, secret, config)
                            .expect("set up the transport");
                        let shm = prepared
                            .and_then(|prepared| shm::attach(rank, prepared, cards, &mut tcp));
                        let engine = Engine::new(rank, n, tuning.engine.clone());
                        let notices: Arc<dyn PeerNotices> = failed.clone();
                        let runtime = Runtime::new(
                            engine,
                            tcp,
                            shm,
                            tuning,
                            None,
                            Some(notices),
                            memory_domains(cards),
                        );
                        let world = Comm::world(runtime.clone());
                        let result =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(world)));
                        match result {
                            Ok(result) => {
                                runtime.finalize();
                                result
                            }
                            Err(payload) => {
                                // Like a dead process: links close without a
                                // goodbye, and the others hear of it as they
                                // would from the launcher.
                                drop(runtime);
                                failed.report(rank.0);
                                std::panic::resume_unwind(payload)
                            }
                        }
                    })
                    .expect("spawn a rank thread")
            })
            .collect();
        let mut results = Vec::with_capacity(n as usize);
        let mut panic = None;
        for handle in handles {
            match handle.join() {
                Ok(result) => results.push(result),
                Err(payload) => {
                    panic.get_or_insert(payload);
                }
            }
        }
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
        results
    })
}

/// Ranks of a `local::run` whose thread panicked.
#[derive(Debug, Default)]
struct FailedRanks {
    ranks: Mutex<Vec<u32>>,
    /// The length of `ranks`, readable without its lock.
    count: AtomicUsize,
}

impl FailedRanks {
    fn report(&self, rank: u32) {
        let mut ranks = self.ranks.lock().unwrap_or_else(PoisonError::into_inner);
        ranks.push(rank);
        self.count.store(ranks.len(), Ordering::Release);
    }
}

impl PeerNotices for FailedRanks {
    fn failed_peers(&self) -> Vec<u32> {
        self.ranks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn failed_count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}
