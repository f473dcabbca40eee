//! The control protocol between `mprun` and its per-host daemons.
//!
//! Frames as in the ranks' bootstrap wire (`mpr::bootstrap::wire`): a
//! 4-byte little-endian length `L`, then `L` bytes: a version byte and a
//! postcard-encoded message ([`Up`] from a daemon, [`Down`] from `mprun`).
//! Decoding is total: a frame longer than the reader's limit is refused
//! before it is buffered, and any other malformed frame is an error after
//! which the link is dropped (a lost host, never a panic).
//!
//! The exchange: the daemon dials `mprun`'s control port and says
//! [`Up::Hello`] with the job secret; `mprun` checks it and answers
//! [`Down::Launch`], which carries the secret back so the daemon knows it
//! reached the right launcher. Then the daemon reports its ranks (pids,
//! output, exits, bootstrap events, one card batch per fence) and `mprun`
//! answers fences, relays failures and signals, and forwards its stdin to
//! rank 0 (see `stdin`). Both sides send [`Up::Heartbeat`]/[`Down::Heartbeat`]
//! four times per link timeout ([`LINK_TIMEOUT`] unless `--link-timeout`
//! says otherwise); a link silent for that long is dead ([`LinkWatch`]).

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version byte of every control frame.
pub(crate) const CONTROL_VERSION: u8 = 1;
/// Largest frame a daemon may send (output chunks and card batches).
pub(crate) const MAX_UP_FRAME: usize = 64 << 20;
/// Largest frame `mprun` may send (a fence answer carries every card).
pub(crate) const MAX_DOWN_FRAME: usize = 256 << 20;
/// How long a link may stay silent before the peer counts as gone, unless
/// `--link-timeout` says otherwise; each side says it is alive four times
/// per timeout.
pub(crate) const LINK_TIMEOUT: Duration = Duration::from_millis(4000);

/// Which output stream of a rank.
pub(crate) const STDOUT: u8 = 0;
/// Which output stream of a rank.
pub(crate) const STDERR: u8 = 1;

/// Daemon to `mprun`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Up {
    /// First message: which host this daemon serves, and the job secret.
    Hello {
        /// Index of the host in the job, when the launch agent told it.
        host: Option<u32>,
        /// The node's own name (used when `host` is unknown: under Slurm).
        node_name: String,
        /// The job secret.
        secret: Vec<u8>,
    },
    /// A rank was started.
    Started {
        /// World rank.
        rank: u32,
        /// Its pid on the daemon's host.
        pid: u32,
    },
    /// Bytes a rank wrote.
    Output {
        /// World rank.
        rank: u32,
        /// [`STDOUT`] or [`STDERR`].
        stream: u8,
        /// The bytes, as read from the pipe.
        bytes: Vec<u8>,
    },
    /// A rank exited (its output up to now was sent before).
    Exited {
        /// World rank.
        rank: u32,
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal, if a signal killed it.
        signal: Option<i32>,
        /// It exited while ranks of this host waited at a fence it never reached.
        left_fence: bool,
    },
    /// A rank called `init`.
    Initialized {
        /// World rank.
        rank: u32,
    },
    /// A rank finalized.
    Finalized {
        /// World rank.
        rank: u32,
    },
    /// A rank asked to abort the job.
    Aborted {
        /// World rank.
        rank: u32,
        /// Requested exit code.
        code: i32,
        /// Its message.
        message: String,
    },
    /// Every rank of this host reached fence `epoch`: their cards.
    Fence {
        /// Fence number.
        epoch: u32,
        /// `(world rank, card)` for each rank of this host.
        cards: Vec<(u32, Vec<u8>)>,
    },
    /// The daemon cannot run its ranks.
    Failed {
        /// Exit code `mprun` should end with.
        code: i32,
        /// What went wrong, naming the host.
        message: String,
    },
    /// The host's rank 0 took this many chunks of stdin.
    StdinAck {
        /// Chunks written to the rank since the last acknowledgement.
        chunks: u32,
    },
    /// Still alive.
    Heartbeat,
    /// Every rank of this host exited and its output was sent: goodbye.
    Done,
}

/// How to start one rank on the daemon's host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RankLaunch {
    /// World rank.
    pub(crate) rank: u32,
    /// Variables to set, on top of the daemon's environment.
    pub(crate) env: Vec<(String, String)>,
    /// Whether it reads `mprun`'s stdin (rank 0).
    pub(crate) stdin: bool,
}

/// What a daemon runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LaunchSpec {
    /// The job secret, proving this is the daemon's launcher.
    pub(crate) secret: Vec<u8>,
    /// Host name as `mprun` knows it, for messages.
    pub(crate) host: String,
    /// World size.
    pub(crate) size: u32,
    /// Program and arguments.
    pub(crate) command: Vec<String>,
    /// Working directory of the ranks.
    pub(crate) wdir: String,
    /// The ranks of this host.
    pub(crate) ranks: Vec<RankLaunch>,
    /// Silence after which the daemon counts `mprun` as gone, in milliseconds.
    pub(crate) link_timeout_ms: u64,
}

/// `mprun` to a daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Down {
    /// Start these ranks.
    Launch(Box<LaunchSpec>),
    /// Every rank of the job reached fence `epoch`.
    FenceDone {
        /// Fence number.
        epoch: u32,
        /// One card per world rank.
        cards: Vec<Vec<u8>>,
    },
    /// A rank of the job failed.
    PeerFailed {
        /// World rank.
        rank: u32,
    },
    /// A chunk of `mprun`'s stdin for the rank that reads it.
    Stdin(Vec<u8>),
    /// `mprun`'s stdin ended.
    StdinClosed,
    /// Send this signal to every rank still running.
    Signal {
        /// Signal number.
        signal: i32,
    },
    /// Still alive.
    Heartbeat,
}

/// Why bytes from a control link are not a valid message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum ControlError {
    /// The frame announces more bytes than this side accepts.
    #[error("control frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLong {
        /// Announced length.
        len: usize,
        /// Largest accepted length.
        limit: usize,
    },
    /// The peer speaks another protocol version (another `mprun` build).
    #[error(
        "control protocol version {0} is not supported (expected {CONTROL_VERSION}): \
         is the same mprun installed on every host?"
    )]
    Version(u8),
    /// The frame is empty.
    #[error("empty control frame")]
    Empty,
    /// The body does not decode.
    #[error("malformed control message: {0}")]
    Malformed(String),
}

/// Appends `message`, framed, to `out`.
pub(crate) fn encode_into<T: Serialize>(message: &T, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(CONTROL_VERSION);
    // Encoding plain data into a growable vector cannot fail.
    if let Ok(body) = postcard::to_allocvec(message) {
        out.extend_from_slice(&body);
    }
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// `message` as one frame.
pub(crate) fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(message, &mut out);
    out
}

/// Reassembles control frames of type `T` from a byte stream.
#[derive(Debug)]
pub(crate) struct ControlReader<T> {
    buffer: Vec<u8>,
    start: usize,
    limit: usize,
    _message: std::marker::PhantomData<T>,
}

impl<T: DeserializeOwned> ControlReader<T> {
    /// A reader refusing frames longer than `limit`.
    pub(crate) fn new(limit: usize) -> Self {
        ControlReader {
            buffer: Vec::new(),
            start: 0,
            limit,
            _message: std::marker::PhantomData,
        }
    }

    /// Appends received bytes.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` if more bytes are needed, or an
    /// error after which the link must be dropped.
    pub(crate) fn next_message(&mut self) -> Result<Option<T>, ControlError> {
        let pending = &self.buffer[self.start..];
        let Some(header) = pending.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*header) as usize;
        if len > self.limit {
            return Err(ControlError::TooLong {
                len,
                limit: self.limit,
            });
        }
        if pending.len() < 4 + len {
            return Ok(None);
        }
        let frame = &pending[4..4 + len];
        let message = match frame.split_first() {
            None => Err(ControlError::Empty),
            Some((&version, _)) if version != CONTROL_VERSION => {
                Err(ControlError::Version(version))
            }
            Some((_, body)) => postcard::from_bytes(body)
                .map_err(|error| ControlError::Malformed(error.to_string())),
        };
        self.start += 4 + len;
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        message.map(Some)
    }
}

/// Liveness of one control link, free of I/O: when to say we are alive,
/// and when the silent peer counts as gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkWatch {
    last_heard: Instant,
    next_beat: Instant,
    timeout: Duration,
}

impl LinkWatch {
    /// A link opened at `now` whose peer may stay silent for `timeout`.
    pub(crate) fn new(now: Instant, timeout: Duration) -> Self {
        LinkWatch {
            last_heard: now,
            next_beat: now + timeout / 4,
            timeout,
        }
    }

    /// Bytes arrived from the peer at `now`.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// Whether a heartbeat is due at `now` (if so, the next one is scheduled).
    pub(crate) fn beat_due(&mut self, now: Instant) -> bool {
        if now < self.next_beat {
            return false;
        }
        self.next_beat = now + self.timeout / 4;
        true
    }

    /// Whether the peer has been silent for the whole timeout at `now`.
    pub(crate) fn dead(&self, now: Instant) -> bool {
        now.duration_since(self.last_heard) >= self.timeout
    }

    /// When something is next due: a heartbeat, or the peer's death.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.next_beat.min(self.last_heard + self.timeout)
    }

    /// The silence that counts as death.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Compares secrets without revealing, by timing, how long a prefix matched.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ups() -> Vec<Up> {
        vec![
            Up::Hello {
                host: Some(2),
                node_name: "n2".into(),
                secret: b"s".to_vec(),
            },
            Up::Started { rank: 4, pid: 99 },
            Up::Output {
                rank: 4,
                stream: STDERR,
                bytes: b"half a li".to_vec(),
            },
            Up::Fence {
                epoch: 0,
                cards: vec![(4, vec![1, 2]), (5, vec![])],
            },
            Up::Exited {
                rank: 4,
                code: None,
                signal: Some(9),
                left_fence: false,
            },
            Up::Aborted {
                rank: 5,
                code: 3,
                message: "boom".into(),
            },
            Up::Heartbeat,
            Up::Done,
        ]
    }

    #[test]
    fn messages_round_trip_byte_by_byte() {
        let mut stream = Vec::new();
        for message in ups() {
            encode_into(&message, &mut stream);
        }
        let launch = Down::Launch(Box::new(LaunchSpec {
            secret: b"s".to_vec(),
            host: "n2".into(),
            size: 6,
            command: vec!["hello".into()],
            wdir: "/tmp".into(),
            ranks: vec![RankLaunch {
                rank: 4,
                env: vec![("MPR_RANK".into(), "4".into())],
                stdin: true,
            }],
            link_timeout_ms: 4000,
        }));
        let mut reader = ControlReader::<Up>::new(MAX_UP_FRAME);
        let mut decoded = Vec::new();
        for byte in stream {
            reader.push(&[byte]);
            while let Some(message) = reader.next_message().unwrap() {
                decoded.push(message);
            }
        }
        assert_eq!(decoded, ups());
        let mut reader = ControlReader::<Down>::new(MAX_DOWN_FRAME);
        reader.push(&encode(&launch));
        assert_eq!(reader.next_message().unwrap(), Some(launch));
        assert_eq!(reader.next_message().unwrap(), None);
    }

    #[test]
    fn oversized_foreign_and_garbage_frames_are_errors() {
        let mut reader = ControlReader::<Up>::new(16);
        reader.push(&1000u32.to_le_bytes());
        assert!(matches!(
            reader.next_message(),
            Err(ControlError::TooLong { len: 1000, .. })
        ));
        let mut reader = ControlReader::<Up>::new(MAX_UP_FRAME);
        reader.push(&[2, 0, 0, 0, 9, 0]);
        assert_eq!(reader.next_message(), Err(ControlError::Version(9)));
        reader.push(&[0, 0, 0, 0]);
        assert_eq!(reader.next_message(), Err(ControlError::Empty));
        reader.push(&[3, 0, 0, 0, CONTROL_VERSION, 200, 1]);
        assert!(matches!(
            reader.next_message(),
            Err(ControlError::Malformed(_))
        ));
    }

    #[test]
    fn a_link_beats_four_times_per_timeout_and_dies_after_a_silent_timeout() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut watch = LinkWatch::new(start, 4 * second);
        assert!(!watch.beat_due(start));
        assert_eq!(watch.next_deadline(), start + second);
        assert!(watch.beat_due(start + second));
        assert!(!watch.beat_due(start + second));
        assert_eq!(watch.next_deadline(), start + 2 * second);
        assert!(!watch.dead(start + 3 * second));
        watch.heard(start + 3 * second);
        assert!(!watch.dead(start + 6 * second));
        assert!(watch.dead(start + 7 * second));
        let mut silent = LinkWatch::new(start, 4 * second);
        for beat in 1..=3 {
            assert!(silent.beat_due(start + beat * second));
        }
        assert_eq!(silent.next_deadline(), start + 4 * second);
        assert!(silent.dead(start + 4 * second));
        assert_eq!(silent.timeout(), 4 * second);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd") && !same_secret(b"abc", b"ab"));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_either_reader(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32)
        ) {
            let mut up = ControlReader::<Up>::new(MAX_UP_FRAME);
            let mut down = ControlReader::<Down>::new(1 << 10);
            for chunk in chunks {
                up.push(&chunk);
                down.push(&chunk);
                while let Ok(Some(_)) = up.next_message() {}
                while let Ok(Some(_)) = down.next_message() {}
            }
        }
    }
}
