//! Collective algorithms for mpr, as schedules over point-to-point messages.
//!
//! The algorithms land with the collectives issue; this crate is where
//! their schedules (which rank sends what to whom in which round) live,
//! testable without any transport.
