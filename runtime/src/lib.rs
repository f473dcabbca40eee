//! mpr: a pure-Rust, MPI-style SPMD runtime.
//!
//! (The user manual lands here as the API grows.)

pub mod bootstrap;
pub mod engine;
mod types;

pub use types::{ContextId, Rank, Tag};
