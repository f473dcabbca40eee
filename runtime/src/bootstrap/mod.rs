//! The job contract between `mprun` and its ranks (a tiny PMI).
//!
//! `mprun` serves the bootstrap; every rank connects to the address in
//! `MPR_BOOTSTRAP`, proves it belongs to the job with `MPR_SECRET`, publishes
//! a business card at a fence and receives every rank's card, then reports
//! `finalize` or `abort`. The wire format lives in [`wire`], the rank's side
//! in [`client`]; the server is part of the launcher.

pub mod addresses;
pub mod card;
pub mod client;
pub mod wire;
