//! mpr: a pure-Rust, MPI-style SPMD runtime.
//!
//! (The user manual lands here as the API grows.)

pub mod bootstrap;
mod comm;
pub mod engine;
pub mod env;
mod types;
mod universe;

pub use comm::Comm;
pub use types::{ContextId, Rank, Tag};
pub use universe::{InitError, Placement, Universe, init};
