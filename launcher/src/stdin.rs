//! `mprun`'s stdin for a rank 0 that runs under a daemon, with flow
//! control: `mprun` reads its stdin on a thread in chunks, sends at most
//! [`WINDOW`] chunks that the daemon has not yet written to the rank, and
//! the daemon acknowledges each chunk once the rank's pipe took it. A rank
//! that never reads its stdin thus holds up `mprun`'s reader, not memory.

use std::io::{Read, Write};
use std::process::ChildStdin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, channel, sync_channel};

use mio::Waker;

/// Bytes per chunk.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between `mprun` and the rank's pipe.
pub(crate) const WINDOW: usize = 8;

/// `mprun`'s side: the reader thread's chunks (`None` at end of input).
#[derive(Debug)]
pub(crate) struct StdinSource {
    chunks: Receiver<Option<Vec<u8>>>,
    in_flight: usize,
    ended: bool,
}

impl StdinSource {
    /// Starts reading `mprun`'s stdin on a thread that wakes `waker` per chunk.
    pub(crate) fn start(waker: Arc<Waker>) -> std::io::Result<StdinSource> {
        let (tx, chunks) = sync_channel(WINDOW);
        std::thread::Builder::new()
            .name("mprun-stdin".into())
            .spawn(move || read_stdin(tx, waker))?;
        Ok(StdinSource {
            chunks,
            in_flight: 0,
            ended: false,
        })
    }

    /// The next chunks the window allows: `Some(bytes)`, then `None` once
    /// at the end of input.
    pub(crate) fn ready(&mut self) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::new();
        while !self.ended && self.in_flight < WINDOW {
            match self.chunks.try_recv() {
                Ok(Some(chunk)) => {
                    self.in_flight += 1;
                    out.push(Some(chunk));
                }
                Ok(None) | Err(TryRecvError::Disconnected) => {
                    self.ended = true;
                    out.push(None);
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        out
    }

    /// The daemon wrote `chunks` chunks to the rank.
    pub(crate) fn acked(&mut self, chunks: u32) {
        self.in_flight = self.in_flight.saturating_sub(chunks as usize);
    }
}

fn read_stdin(tx: SyncSender<Option<Vec<u8>>>, waker: Arc<Waker>) {
    let mut stdin = std::io::stdin().lock();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let chunk = match stdin.read(&mut buffer) {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(buffer[..n].to_vec()),
        };
        let end = chunk.is_none();
        if tx.send(chunk).is_err() {
            return;
        }
        let _ = waker.wake();
        if end {
            return;
        }
    }
}

/// The daemon's side: a thread writing chunks into the rank's stdin pipe
/// and counting what it wrote, for the acknowledgements.
#[derive(Debug)]
pub(crate) struct StdinSink {
    chunks: Option<Sender<Vec<u8>>>,
    written: Arc<AtomicUsize>,
}

impl StdinSink {
    /// Starts the writer for `pipe`; it wakes `waker` after each chunk.
    pub(crate) fn start(mut pipe: ChildStdin, waker: Arc<Waker>) -> std::io::Result<StdinSink> {
        let (chunks, rx) = channel::<Vec<u8>>();
        let written = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&written);
        std::thread::Builder::new()
            .name("mprun-daemon-rank-stdin".into())
            .spawn(move || {
                for chunk in rx {
                    // A rank that closed its stdin still gets the credit back.
                    let _ = pipe.write_all(&chunk);
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = waker.wake();
                }
            })?;
        Ok(StdinSink {
            chunks: Some(chunks),
            written,
        })
    }

    /// Queues a chunk (at most [`WINDOW`] are ever outstanding).
    pub(crate) fn write(&self, chunk: Vec<u8>) {
        if let Some(chunks) = &self.chunks {
            let _ = chunks.send(chunk);
        }
    }

    /// End of input: the rank's stdin closes once the queue is written.
    pub(crate) fn close(&mut self) {
        self.chunks = None;
    }

    /// Chunks written since the last call.
    pub(crate) fn take_written(&self) -> u32 {
        self.written.swap(0, Ordering::SeqCst) as u32
    }
}
