//! The rank's side of the bootstrap: register, fence, finalize, abort.
//!
//! A rank connects to `MPR_BOOTSTRAP`, says [`Message::Hello`] with the job
//! secret, publishes its business card at a fence and receives everyone's.
//! After the fence a watcher thread keeps reading the link: the launcher's
//! notices of failed peers are recorded, and losing the link without having
//! finalized means the launcher is gone, so the rank exits rather than
//! outlive its job.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use thiserror::Error;

use super::wire::{FrameReader, MAX_SERVER_FRAME, Message, WireError};

/// How long a rank tries to reach the bootstrap server before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why talking to the bootstrap server failed.
#[derive(Debug, Error)]
pub enum BootstrapError {
    /// `MPR_BOOTSTRAP` does not resolve to an address.
    #[error("bootstrap address {addr:?} does not resolve: {source}")]
    Resolve {
        /// The address as given.
        addr: String,
        /// What the resolver said.
        source: std::io::Error,
    },
    /// No connection could be made to the bootstrap server.
    #[error("cannot connect to the bootstrap server at {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// The connection error.
        source: std::io::Error,
    },
    /// Reading or writing the bootstrap link failed.
    #[error("bootstrap link failed: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent bytes that are not a valid message.
    #[error("bootstrap server sent an invalid message: {0}")]
    Wire(#[from] WireError),
    /// The server closed the link (a wrong secret, or the launcher stopped).
    #[error("the bootstrap server closed the link")]
    Closed,
    /// Another rank failed before every rank reached the wire-up fence.
    #[error("rank {rank} failed before the job was wired up")]
    PeerFailedDuringInit {
        /// The failed rank.
        rank: u32,
    },
    /// The server answered with a message that does not fit the exchange.
    #[error("unexpected bootstrap message: {0:?}")]
    Unexpected(Box<Message>),
}

/// A registered rank that has not reached its first fence yet.
#[derive(Debug)]
pub struct Registered {
    stream: TcpStream,
    reader: FrameReader,
}

impl Registered {
    /// Connects to the bootstrap server at `addr` and registers `rank` with
    /// the job `secret`.
    pub fn connect(addr: &str, rank: u32, secret: &[u8]) -> Result<Self, BootstrapError> {
        let resolved: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|source| BootstrapError::Resolve {
                addr: addr.to_owned(),
                source,
            })?
            .collect();
        let mut last_error = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        let mut connected = None;
        for candidate in resolved {
            match TcpStream::connect_timeout(&candidate, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(error) => last_error = error,
            }
        }
        let mut stream = connected.ok_or_else(|| BootstrapError::Connect {
            addr: addr.to_owned(),
            source: last_error,
        })?;
        stream.set_nodelay(true)?;
        let hello = Message::Hello {
            rank,
            secret: secret.to_vec(),
        };
        stream.write_all(&hello.encode())?;
        Ok(Registered {
            stream,
            reader: FrameReader::new(MAX_SERVER_FRAME),
        })
    }

    /// Publishes `card`, waits until every rank has done the same, and
    /// returns all cards (indexed by world rank) with the link that now
    /// watches for the launcher's notices.
    pub fn fence(mut self, card: Vec<u8>) -> Result<(Connected, Vec<Vec<u8>>), BootstrapError> {
        self.stream
            .write_all(&Message::Fence { epoch: 0, card }.encode())?;
        let cards = match read_message(&mut self.stream, &mut self.reader)? {
            Message::FenceDone { epoch: 0, cards } => cards,
            Message::PeerFailed { rank } => {
                return Err(BootstrapError::PeerFailedDuringInit { rank });
            }
            other => return Err(BootstrapError::Unexpected(Box::new(other))),
        };
        let connected = Connected::start(self.stream, self.reader)?;
        Ok((connected, cards))
    }
}

/// Reads one whole message from a blocking stream.
fn read_message(
    stream: &mut TcpStream,
    reader: &mut FrameReader,
) -> Result<Message, BootstrapError> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(message) = reader.next_message()? {
            return Ok(message);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(BootstrapError::Closed);
        }
        reader.push(&chunk[..n]);
    }
}

/// What the watcher thread has learned, shared with the rank.
#[derive(Debug, Default)]
struct Shared {
    finalizing: bool,
    finalized: bool,
    link_lost: bool,
    failed_peers: Vec<u32>,
}

/// A rank past its first fence: it can finalize or abort, and learns of
/// failed peers from the launcher.
#[derive(Debug)]
pub struct Connected {
    writer: Mutex<TcpStream>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    /// How many failed peers the launcher reported: read without a lock by
    /// every spinning wait, so that it costs nothing while nothing fails.
    failures: Arc<AtomicUsize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connected {
    fn start(stream: TcpStream, reader: FrameReader) -> Result<Self, BootstrapError> {
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let watcher_stream = stream.try_clone()?;
        let watcher_shared = Arc::clone(&shared);
        let failures = Arc::new(AtomicUsize::new(0));
        let watcher_failures = Arc::clone(&failures);
        std::thread::Builder::new()
            .name("mpr-bootstrap".into())
            .spawn(move || watch(watcher_stream, reader, watcher_shared, &watcher_failures))?;
        Ok(Connected {
            writer: Mutex::new(stream),
            shared,
            failures,
        })
    }

    /// Tells the launcher this rank finalizes, and waits for its
    /// acknowledgement so that the rank's exit cannot overtake it.
    pub fn finalize(&self) -> Result<(), BootstrapError> {
        lock(&self.shared.0).finalizing = true;
        lock(&self.writer).write_all(&Message::Finalize.encode())?;
        let (state, changed) = &*self.shared;
        let mut state = lock(state);
        while !state.finalized && !state.link_lost {
            state = changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        if state.finalized {
            Ok(())
        } else {
            Err(BootstrapError::Closed)
        }
    }

    /// Asks the launcher to abort the job with `code`, printing `message`.
    pub fn abort(&self, code: i32, message: &str) -> Result<(), BootstrapError> {
        let abort = Message::Abort {
            code,
            message: message.to_owned(),
        };
        let mut writer = lock(&self.writer);
        writer.write_all(&abort.encode())?;
        writer.flush()?;
        Ok(())
    }

    /// World ranks the launcher has reported as failed so far.
    pub fn failed_peers(&self) -> Vec<u32> {
        lock(&self.shared.0).failed_peers.clone()
    }

    /// How many ranks the launcher has reported as failed so far (the
    /// length of [`failed_peers`](Self::failed_peers), without its lock).
    pub fn failed_count(&self) -> usize {
        self.failures.load(Ordering::Acquire)
    }
}

/// The watcher thread: records the launcher's notices; exits the process
/// if the launcher goes away while the rank still runs.
fn watch(
    mut stream: TcpStream,
    mut reader: FrameReader,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    failures: &AtomicUsize,
) {
    let (state, changed) = &*shared;
    loop {
        match read_message(&mut stream, &mut reader) {
            Ok(Message::PeerFailed { rank }) => {
                let mut state = lock(state);
                state.failed_peers.push(rank);
                failures.store(state.failed_peers.len(), Ordering::Release);
            }
            Ok(Message::FinalizeAck) => {
                lock(state).finalized = true;
                changed.notify_all();
                let _ = stream.shutdown(Shutdown::Read);
                return;
            }
            Ok(_) | Err(_) => {
                let finalizing = {
                    let mut state = lock(state);
                    state.link_lost = true;
                    state.finalizing
                };
                changed.notify_all();
                if !finalizing {
                    // The launcher is gone: a rank must never outlive its job.
                    eprintln!("mpr: lost the link to the launcher (mprun); exiting");
                    std::process::exit(1);
                }
                return;
            }
        }
    }
}
