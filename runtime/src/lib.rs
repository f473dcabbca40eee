//! mpr: a pure-Rust, MPI-style SPMD runtime.
//!
//! (The user manual lands here as the API grows.)

pub mod bootstrap;
mod buffer;
mod comm;
pub mod engine;
pub mod env;
mod error;
pub mod local;
mod p2p;
mod request;
mod runtime;
mod transport;
mod tuning;
mod types;
mod universe;

pub use bytemuck;
pub use comm::{ANY_SOURCE, ANY_TAG, Comm, PROC_NULL, Source, Status, TagMatch};
pub use error::Error;
pub use p2p::{Message, Scope};
pub use request::{RecvRequest, Request, ScopedRequest, SendRequest, test_all, test_any, wait_all, wait_any, wait_some};
pub use tuning::ErrorMode;
pub use types::{ContextId, Rank, Tag};
pub use universe::{InitError, Placement, Universe, init};

/// Seconds since an arbitrary fixed point in the past, as a float
/// (`MPI_Wtime`): subtract two readings to time a section.
pub fn wtime() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}
