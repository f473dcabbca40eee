//! `init`, the [`Universe`] and finalization.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;

use crate::bootstrap::addresses;
use crate::bootstrap::card::{Card, memory_domains};
use crate::bootstrap::client::{BootstrapError, Connected, Registered};
use std::net::{IpAddr, Ipv4Addr};

use crate::Rank;
use crate::binding::{self, BindTo};
use crate::comm::Comm;
use crate::engine::Engine;
use crate::env::{EnvError, JobEnv};
use crate::runtime::{PeerNotices, Runtime};
use crate::transport::shm::{self, Prepared, ShmConfig};
use crate::transport::tcp::{Listening, Tcp, TcpConfig};
use crate::tuning::{ErrorMode, Tuning};

/// Set once per process: MPI allows one initialization.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Why [`init`] failed.
#[derive(Debug, Error)]
pub enum InitError {
    /// `init` was already called in this process.
    #[error("mpr::init was already called in this process")]
    AlreadyInitialized,
    /// The `MPR_*` job variables are inconsistent.
    #[error("bad job environment: {0}")]
    Env(#[from] EnvError),
    /// Registering with the launcher failed.
    #[error("bootstrap failed: {0}")]
    Bootstrap(#[from] BootstrapError),
    /// The data-plane listener or poller could not be set up.
    #[error("cannot set up the TCP transport: {0}")]
    Transport(#[source] std::io::Error),
    /// A rank published a business card that does not decode.
    #[error("rank {rank} published an invalid business card: {source}")]
    BadCard {
        /// Whose card.
        rank: u32,
        /// Decoder error.
        source: postcard::Error,
    },
}

/// Placement of this rank in the job, as the launcher decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Rank among the ranks on this host.
    pub local_rank: u32,
    /// Number of ranks on this host.
    pub local_size: u32,
    /// Index of this host in the job.
    pub node: u32,
    /// Job id (empty for a singleton).
    pub job: String,
}

/// An initialized runtime. Dropping it finalizes: the launcher learns that
/// this rank ended cleanly.
#[derive(Debug)]
pub struct Universe {
    world: Comm,
    runtime: Arc<Runtime>,
    placement: Placement,
    bootstrap: Option<Arc<Connected>>,
    cards: Vec<Card>,
}

/// Initializes the runtime: reads the job environment, registers with the
/// launcher, exchanges business cards at a fence and returns the
/// [`Universe`]. Without `MPR_*` variables the program is a singleton: a
/// world of one rank.
///
/// ```
/// let universe = mpr::init()?;
/// let world = universe.world();
/// assert!(world.rank() < world.size());
/// # Ok::<(), mpr::InitError>(())
/// ```
pub fn init() -> Result<Universe, InitError> {
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Err(InitError::AlreadyInitialized);
    }
    let Some(job) = JobEnv::from_process()? else {
        return Universe::singleton();
    };
    // Before binding: oversubscription is judged by the CPUs the job has,
    // not by the one this rank is about to be bound to.
    let mut tuning = Tuning::from_env(true, job.local_size);
    // Before any thread starts, so that every thread inherits the binding.
    let bound = binding::bind(
        BindTo::parse(std::env::var("MPR_BIND_TO").ok().as_deref()),
        job.local_rank,
        job.local_size,
    );
    tuning
        .shm_direct
        .after_binding(!matches!(bound, binding::Bound::Unbound(_)));
    if matches!(
        std::env::var("MPR_REPORT_BINDINGS").as_deref(),
        Ok("1" | "true" | "yes")
    ) {
        eprintln!(
            "mpr: rank {} (pid {}) on {}: {bound}",
            job.rank,
            std::process::id(),
            host_name()
        );
    }
    let registered = Registered::connect(&job.bootstrap, job.rank, job.secret.as_bytes())?;
    let plane = addresses::data_plane().map_err(InitError::Transport)?;
    let listening =
        Listening::bind(plane.bind, tuning.tcp_congestion.clone()).map_err(InitError::Transport)?;
    let port = listening.addr().map_err(InitError::Transport)?.port();
    let rank = Rank(job.rank);
    let prepared = prepare_shared_memory(&tuning, rank, job.local_rank, job.local_size, job.node);
    let card = Card {
        host: host_name(),
        pid: std::process::id(),
        addrs: plane
            .addrs
            .iter()
            .map(|ip| std::net::SocketAddr::new(*ip, port))
            .collect(),
        shm: prepared.as_ref().map(Prepared::card),
    };
    let (connected, raw_cards) = registered.fence(card.encode())?;
    let cards = raw_cards
        .iter()
        .enumerate()
        .map(|(rank, bytes)| {
            Card::decode(bytes).map_err(|source| InitError::BadCard {
                rank: rank as u32,
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let connected = Arc::new(connected);
    install_panic_abort(Arc::clone(&connected), job.rank);
    let addrs = cards.iter().map(|card| card.addrs.clone()).collect();
    let config = TcpConfig {
        socket_buffer: tuning.socket_buffer,
    };
    let mut tcp = Tcp::new(rank, listening, addrs, job.secret.into_bytes(), config)
        .map_err(InitError::Transport)?;
    let shm = prepared.and_then(|prepared| shm::attach(rank, prepared, &cards, &mut tcp));
    let engine = Engine::new(rank, job.size, tuning.engine.clone());
    let notices: Arc<dyn PeerNotices> = connected.clone();
    let runtime = Runtime::new(
        engine,
        tcp,
        shm,
        tuning,
        Some(Arc::clone(&connected)),
        Some(notices),
        memory_domains(&cards),
    );
    Ok(Universe {
        world: Comm::world(Arc::clone(&runtime)),
        runtime,
        placement: Placement {
            local_rank: job.local_rank,
            local_size: job.local_size,
            node: job.node,
            job: job.job,
        },
        bootstrap: Some(connected),
        cards,
    })
}

/// Makes this rank's shared-memory segment when the job has other ranks
/// on this host and shared memory is on; a failure only costs speed (TCP
/// carries everything), so it is a notice, not an error.
pub(crate) fn prepare_shared_memory(
    tuning: &Tuning,
    rank: Rank,
    local_rank: u32,
    local_size: u32,
    node: u32,
) -> Option<Prepared> {
    if !tuning.shared_memory || local_size < 2 {
        return None;
    }
    let config = ShmConfig {
        ring_bytes: tuning.shm_ring,
        record_bytes: tuning.shm_record,
        single_copy_min: tuning.shm_single_copy,
        single_copy_max: tuning.shm_single_copy_max,
        single_copy_lone: tuning.shm_single_copy_lone,
        pull_max: tuning.shm_pull_max,
        pull_max_lone: tuning.shm_pull_max_lone,
        coop_min: tuning.shm_coop_min,
    };
    Prepared::new(rank, local_rank, local_size, node, config)
        .map_err(|error| {
            eprintln!("mpr: rank {rank}: shared memory unavailable, using TCP: {error}")
        })
        .ok()
}

/// Makes a panic anywhere in a launched rank abort the whole job, with the
/// panic message, before the default hook prints it.
fn install_panic_abort(link: Arc<Connected>, rank: u32) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = format!("rank {rank} panicked: {info}");
        let _ = link.abort(101, &message);
        previous(info);
    }));
}

/// This machine's host name, or `localhost` if it has none.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl Universe {
    fn singleton() -> Result<Universe, InitError> {
        let tuning = Tuning::from_env(false, 1);
        let listening = Listening::bind(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            tuning.tcp_congestion.clone(),
        )
        .map_err(InitError::Transport)?;
        let addr = listening.addr().map_err(InitError::Transport)?;
        let config = TcpConfig {
            socket_buffer: tuning.socket_buffer,
        };
        let tcp = Tcp::new(Rank(0), listening, vec![vec![addr]], Vec::new(), config)
            .map_err(InitError::Transport)?;
        let engine = Engine::new(Rank(0), 1, tuning.engine.clone());
        let runtime = Runtime::new(engine, tcp, None, tuning, None, None, vec![None]);
        Ok(Universe {
            world: Comm::world(Arc::clone(&runtime)),
            runtime,
            placement: Placement {
                local_rank: 0,
                local_size: 1,
                node: 0,
                job: String::new(),
            },
            bootstrap: None,
            cards: vec![Card {
                host: host_name(),
                pid: std::process::id(),
                addrs: vec![addr],
                shm: None,
            }],
        })
    }

    /// The world communicator: every rank of the job.
    pub fn world(&self) -> &Comm {
        &self.world
    }

    /// How communication errors are handled: abort the job (the default in
    /// a launched job, `MPR_ERRORS=abort`) or return them (`MPR_ERRORS=return`).
    pub fn error_mode(&self) -> ErrorMode {
        self.runtime.error_mode()
    }

    /// Switches the error policy for every communicator of this rank.
    pub fn set_error_mode(&self, mode: ErrorMode) {
        self.runtime.set_error_mode(mode);
    }

    /// Data-plane addresses a world rank published on its business card
    /// (for diagnostics; empty for an unknown rank).
    pub fn data_addresses(&self, rank: u32) -> &[std::net::SocketAddr] {
        self.cards
            .get(rank as usize)
            .map_or(&[], |card| card.addrs.as_slice())
    }

    /// Where the launcher placed this rank.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Host name of every rank, indexed by world rank.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.cards.iter().map(|card| card.host.as_str())
    }

    /// Aborts the whole job: the launcher stops every rank and exits with
    /// `code`. Never returns.
    pub fn abort(&self, code: i32, message: &str) -> ! {
        if let Some(link) = &self.bootstrap {
            let _ = link.abort(code, message);
        }
        eprintln!(
            "mpr: rank {} aborts the job (code {code}): {message}",
            self.world.rank()
        );
        std::process::exit(code)
    }

    /// Finalizes explicitly, reporting a failure to reach the launcher.
    /// Dropping the universe does the same and ignores that error.
    pub fn finalize(mut self) -> Result<(), BootstrapError> {
        self.finalize_once()
    }

    fn finalize_once(&mut self) -> Result<(), BootstrapError> {
        self.runtime.finalize();
        match self.bootstrap.take() {
            Some(link) => link.finalize(),
            None => Ok(()),
        }
    }
}

impl Drop for Universe {
    fn drop(&mut self) {
        if let Err(error) = self.finalize_once() {
            eprintln!("mpr: rank {}: finalize failed: {error}", self.world.rank());
        }
    }
}
