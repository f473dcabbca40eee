//! Transports: what moves the engine's bytes between ranks.
//!
//! The TCP transport ([`tcp`]) connects every pair of ranks lazily, over
//! mio; it reads straight into the engine's receive targets and writes the
//! engine's transmit slices with vectored I/O, draining every socket until
//! `WouldBlock` (mio is edge-triggered).

//!
//! The shared-memory transport ([`shm`]) carries the bytes between ranks on
//! the same host through per-pair rings; each direction of a pair uses one
//! transport for the whole job, chosen by the sender at wire-up.

pub(crate) mod shm;
pub(crate) mod tcp;
pub(crate) mod tcp_socket;
