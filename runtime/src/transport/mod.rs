//! Transports: what moves the engine's bytes between ranks.
//!
//! The TCP transport ([`tcp`]) connects every pair of ranks lazily, over
//! mio; it reads straight into the engine's receive targets and writes the
//! engine's transmit slices with vectored I/O, draining every socket until
//! `WouldBlock` (mio is edge-triggered).

pub(crate) mod tcp;
