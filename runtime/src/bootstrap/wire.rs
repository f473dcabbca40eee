//! The bootstrap wire format, shared by ranks and by `mprun`.
//!
//! Every message is a frame: a 4-byte little-endian length `L` (of what
//! follows), then `L` bytes: a version byte, a kind byte and a body whose
//! layout depends on the kind. Integers are little-endian; byte strings are
//! a `u32` length followed by the bytes. Decoding is total: any byte
//! sequence either yields messages or a [`WireError`], never a panic, and a
//! frame longer than the reader's limit is refused before it is buffered.

use thiserror::Error;

/// Version byte carried by every bootstrap frame.
pub const WIRE_VERSION: u8 = 1;

/// Largest frame a rank may send to the launcher: business cards are small.
pub const MAX_CLIENT_FRAME: usize = 1 << 20;

/// Largest frame the launcher may send to a rank (the fence answer carries
/// every rank's card).
pub const MAX_SERVER_FRAME: usize = 256 << 20;

/// A message between a rank (or a per-host daemon) and the bootstrap server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// First message of a rank: who it is and the proof that it belongs to
    /// the job.
    Hello {
        /// World rank of the sender.
        rank: u32,
        /// The job's secret, as given in `MPR_SECRET`.
        secret: Vec<u8>,
    },
    /// The rank has reached fence number `epoch` and publishes `card`.
    Fence {
        /// Fences are numbered from 0 in the order a rank calls them.
        epoch: u32,
        /// Opaque business card (data-plane addresses, host identity).
        card: Vec<u8>,
    },
    /// Server to rank: every rank reached fence `epoch`; here are all cards,
    /// indexed by world rank.
    FenceDone {
        /// The fence that completed.
        epoch: u32,
        /// One card per world rank.
        cards: Vec<Vec<u8>>,
    },
    /// The rank finalizes: from now on its exit is not a failure.
    Finalize,
    /// Server to rank: the finalize was recorded.
    FinalizeAck,
    /// The rank aborts the job with an exit code and a message.
    Abort {
        /// Exit code the launcher should exit with.
        code: i32,
        /// Human-readable cause, printed by the launcher.
        message: String,
    },
    /// Server to rank: a rank of the job failed (died, aborted or lost its link).
    PeerFailed {
        /// World rank of the failed process.
        rank: u32,
    },
}

/// Kind bytes, one per [`Message`] variant.
mod kind {
    pub(super) const HELLO: u8 = 1;
    pub(super) const FENCE: u8 = 2;
    pub(super) const FENCE_DONE: u8 = 3;
    pub(super) const FINALIZE: u8 = 4;
    pub(super) const FINALIZE_ACK: u8 = 5;
    pub(super) const ABORT: u8 = 6;
    pub(super) const PEER_FAILED: u8 = 7;
}

/// Why a byte stream is not a valid sequence of bootstrap messages.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The frame announces more bytes than this side accepts.
    #[error("bootstrap frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLong {
        /// Announced length.
        len: usize,
        /// Largest accepted length.
        limit: usize,
    },
    /// The frame is shorter than its version and kind bytes.
    #[error("bootstrap frame of {0} bytes is too short to hold a header")]
    TooShort(usize),
    /// The peer speaks another version of the protocol.
    #[error("bootstrap protocol version {0} is not supported (expected {WIRE_VERSION})")]
    Version(u8),
    /// The kind byte names no message.
    #[error("unknown bootstrap message kind {0}")]
    UnknownKind(u8),
    /// The body ends before a field it announces.
    #[error("bootstrap message body is truncated")]
    Truncated,
    /// The body has bytes after its last field.
    #[error("bootstrap message body has {0} trailing bytes")]
    TrailingBytes(usize),
    /// A text field is not UTF-8.
    #[error("bootstrap message text is not valid UTF-8")]
    NotUtf8,
}

impl Message {
    /// Appends this message, framed, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.push(WIRE_VERSION);
        match self {
            Message::Hello { rank, secret } => {
                out.push(kind::HELLO);
                out.extend_from_slice(&rank.to_le_bytes());
                put_bytes(out, secret);
            }
            Message::Fence { epoch, card } => {
                out.push(kind::FENCE);
                out.extend_from_slice(&epoch.to_le_bytes());
                put_bytes(out, card);
            }
            Message::FenceDone { epoch, cards } => {
                out.push(kind::FENCE_DONE);
                out.extend_from_slice(&epoch.to_le_bytes());
                put_len(out, cards.len());
                for card in cards {
                    put_bytes(out, card);
                }
            }
            Message::Finalize => out.push(kind::FINALIZE),
            Message::FinalizeAck => out.push(kind::FINALIZE_ACK),
            Message::Abort { code, message } => {
                out.push(kind::ABORT);
                out.extend_from_slice(&code.to_le_bytes());
                put_bytes(out, message.as_bytes());
            }
            Message::PeerFailed { rank } => {
                out.push(kind::PEER_FAILED);
                out.extend_from_slice(&rank.to_le_bytes());
            }
        }
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// This message as one framed byte vector.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes one frame's content (version, kind and body, without the
    /// length prefix).
    pub fn decode(frame: &[u8]) -> Result<Message, WireError> {
        let (&version, rest) = frame
            .split_first()
            .ok_or(WireError::TooShort(frame.len()))?;
        let (&kind, body) = rest.split_first().ok_or(WireError::TooShort(frame.len()))?;
        if version != WIRE_VERSION {
            return Err(WireError::Version(version));
        }
        let mut body = Body(body);
        let message = match kind {
            kind::HELLO => Message::Hello {
                rank: body.u32()?,
                secret: body.bytes()?.to_vec(),
            },
            kind::FENCE => Message::Fence {
                epoch: body.u32()?,
                card: body.bytes()?.to_vec(),
            },
            kind::FENCE_DONE => {
                let epoch = body.u32()?;
                let count = body.u32()? as usize;
                // Every card takes at least its 4-byte length: refuse counts
                // the body cannot hold before allocating for them.
                if count > body.0.len() / 4 {
                    return Err(WireError::Truncated);
                }
                let mut cards = Vec::with_capacity(count);
                for _ in 0..count {
                    cards.push(body.bytes()?.to_vec());
                }
                Message::FenceDone { epoch, cards }
            }
            kind::FINALIZE => Message::Finalize,
            kind::FINALIZE_ACK => Message::FinalizeAck,
            kind::ABORT => Message::Abort {
                code: body.u32()? as i32,
                message: String::from_utf8(body.bytes()?.to_vec())
                    .map_err(|_| WireError::NotUtf8)?,
            },
            kind::PEER_FAILED => Message::PeerFailed { rank: body.u32()? },
            other => return Err(WireError::UnknownKind(other)),
        };
        if !body.0.is_empty() {
            return Err(WireError::TrailingBytes(body.0.len()));
        }
        Ok(message)
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A cursor over a message body.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let mut word = [0; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(word))
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

/// Reassembles frames from a byte stream that arrives in arbitrary pieces.
#[derive(Debug)]
pub struct FrameReader {
    buffer: Vec<u8>,
    start: usize,
    limit: usize,
}

impl FrameReader {
    /// A reader refusing frames longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        FrameReader {
            buffer: Vec::new(),
            start: 0,
            limit,
        }
    }

    /// Appends bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as part of a message.
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// The next complete message, `Ok(None)` if more bytes are needed, or an
    /// error after which the stream must be dropped.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        let pending = &self.buffer[self.start..];
        if pending.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([pending[0], pending[1], pending[2], pending[3]]) as usize;
        if len > self.limit {
            return Err(WireError::TooLong {
                len,
                limit: self.limit,
            });
        }
        if pending.len() < 4 + len {
            return Ok(None);
        }
        let message = Message::decode(&pending[4..4 + len]);
        self.start += 4 + len;
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        message.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello {
                rank: 7,
                secret: b"0123456789abcdef".to_vec(),
            },
            Message::Fence {
                epoch: 0,
                card: vec![1, 2, 3],
            },
            Message::FenceDone {
                epoch: 3,
                cards: vec![vec![], vec![9; 100]],
            },
            Message::Finalize,
            Message::FinalizeAck,
            Message::Abort {
                code: -3,
                message: "panicked at src/main.rs:3: boom".into(),
            },
            Message::PeerFailed { rank: 12 },
        ]
    }

    #[test]
    fn every_message_round_trips_through_a_reader_byte_by_byte() {
        let mut stream = Vec::new();
        for message in samples() {
            message.encode_into(&mut stream);
        }
        let mut reader = FrameReader::new(MAX_SERVER_FRAME);
        let mut decoded = Vec::new();
        for byte in stream {
            reader.push(&[byte]);
            while let Some(message) = reader.next_message().unwrap() {
                decoded.push(message);
            }
        }
        assert_eq!(decoded, samples());
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn oversized_frame_is_refused_before_buffering_its_body() {
        let mut reader = FrameReader::new(16);
        reader.push(&1000u32.to_le_bytes());
        assert_eq!(
            reader.next_message(),
            Err(WireError::TooLong {
                len: 1000,
                limit: 16
            })
        );
    }

    #[test]
    fn bad_version_kind_and_trailing_bytes_are_errors() {
        assert_eq!(Message::decode(&[9, 4]), Err(WireError::Version(9)));
        assert_eq!(
            Message::decode(&[WIRE_VERSION, 200]),
            Err(WireError::UnknownKind(200))
        );
        assert_eq!(
            Message::decode(&[WIRE_VERSION, kind::FINALIZE, 0]),
            Err(WireError::TrailingBytes(1))
        );
        assert_eq!(Message::decode(&[]), Err(WireError::TooShort(0)));
        assert_eq!(
            Message::decode(&[WIRE_VERSION, kind::HELLO, 1, 0]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn fence_done_with_an_impossible_card_count_does_not_allocate() {
        let mut frame = vec![WIRE_VERSION, kind::FENCE_DONE];
        frame.extend_from_slice(&0u32.to_le_bytes());
        frame.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Message::decode(&frame), Err(WireError::Truncated));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_the_reader(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32)
        ) {
            let mut reader = FrameReader::new(MAX_CLIENT_FRAME);
            for chunk in chunks {
                reader.push(&chunk);
                while let Ok(Some(_)) = reader.next_message() {}
            }
        }

        #[test]
        fn fence_cards_round_trip(epoch in any::<u32>(), cards in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20)) {
            let message = Message::FenceDone { epoch, cards };
            let bytes = message.encode();
            prop_assert_eq!(Message::decode(&bytes[4..]), Ok(message));
        }
    }
}
