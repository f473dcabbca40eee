//! Schedules cached per communicator: a schedule is a pure function of the
//! call's shape, and building one allocates; a program that calls the same
//! collective in a loop builds it once (measured: a 2-rank 8-byte
//! allreduce spent a fifth of its time in the allocator).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex, PoisonError};

use mpr_collectives::{Algorithm, Collective, Schedule};

use crate::engine::FxHasher;

/// Most schedules kept per communicator; past it the cache starts over.
const MAX_CACHED: usize = 256;

/// Everything a cached schedule depends on besides the communicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ScheduleKey {
    /// The collective.
    pub(crate) collective: Collective,
    /// The algorithm, for collectives that have a choice.
    pub(crate) algorithm: Option<Algorithm>,
    /// The root, for rooted collectives (0 otherwise).
    pub(crate) root: u32,
    /// Elements per block (the collective's count argument).
    pub(crate) count: usize,
    /// Whether the reduction commutes (true without a reduction).
    pub(crate) commutative: bool,
    /// Elements per pipeline piece (0: the schedule is not pipelined).
    pub(crate) segment: usize,
    /// Whether the operand is read from the input buffer rather than
    /// already in the output (allreduce).
    pub(crate) from_input: bool,
}

impl ScheduleKey {
    /// The key of a call of `collective` with these arguments.
    pub(crate) fn new(
        collective: Collective,
        algorithm: Option<Algorithm>,
        root: u32,
        count: usize,
        commutative: bool,
    ) -> ScheduleKey {
        ScheduleKey {
            collective,
            algorithm,
            root,
            count,
            commutative,
            segment: 0,
            from_input: false,
        }
    }

    /// The same key for a schedule that reads its operand from the input.
    pub(crate) fn reading_input(self) -> ScheduleKey {
        ScheduleKey {
            from_input: true,
            ..self
        }
    }

    /// The same key for a schedule pipelined in `segment`-element pieces.
    pub(crate) fn segmented(self, segment: usize) -> ScheduleKey {
        ScheduleKey { segment, ..self }
    }
}

/// A communicator's schedules by call shape.
#[derive(Debug, Default)]
pub(crate) struct ScheduleCache(
    Mutex<HashMap<ScheduleKey, Arc<Schedule>, BuildHasherDefault<FxHasher>>>,
);

impl ScheduleCache {
    /// The schedule for `key`, built by `build` the first time.
    pub(crate) fn get_or_build(
        &self,
        key: ScheduleKey,
        build: impl FnOnce() -> Schedule,
    ) -> Arc<Schedule> {
        let lock = || self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(schedule) = lock().get(&key) {
            return Arc::clone(schedule);
        }
        let schedule = Arc::new(build());
        let mut map = lock();
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        map.insert(key, Arc::clone(&schedule));
        schedule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_is_built_once_and_different_shapes_apart() {
        let cache = ScheduleCache::default();
        let key = ScheduleKey::new(
            Collective::Allreduce,
            Some(Algorithm::RecursiveDoubling),
            0,
            4,
            true,
        );
        let mut builds = 0;
        let first = cache.get_or_build(key, || {
            builds += 1;
            mpr_collectives::allreduce(Algorithm::RecursiveDoubling, 0, 4, 4, true)
        });
        let again = cache.get_or_build(key, || unreachable!("cached"));
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(builds, 1);
        let other = ScheduleKey { count: 5, ..key };
        let third = cache.get_or_build(other, || {
            mpr_collectives::allreduce(Algorithm::RecursiveDoubling, 0, 4, 5, true)
        });
        assert!(!Arc::ptr_eq(&first, &third));
        let pieces = key.segmented(2);
        let fourth = cache.get_or_build(pieces, || mpr_collectives::reduce(0, 4, 0, 4, true, 2));
        assert!(!Arc::ptr_eq(&first, &fourth));
    }
}
