//! Asymmetric fences: the frequent side of a wake-up handshake pays
//! nothing, the rare side pays for both.
//!
//! Each wake-up handshake (a producer publishes then checks the sleeper's
//! flag; a sleeper raises its flag then checks the rings) needs a full
//! fence between a store and a load on *both* sides, or each can miss the
//! other's store. On the producer's side that fence waits for the tail's
//! cache line to come back from the consumer: it measured 88% of the send
//! path of an 8-byte ping-pong. With `membarrier(GLOBAL_EXPEDITED)` the
//! rare side (a rank going to sleep, a producer waiting for room) makes
//! every running thread of every registered process execute a full fence,
//! so the frequent side only needs a compiler fence. Where the kernel
//! refuses membarrier, both sides use a full fence.

#[cfg(not(loom))]
use std::sync::OnceLock;

#[cfg(loom)]
use loom::sync::atomic::{Ordering, fence};
#[cfg(not(loom))]
use std::sync::atomic::{Ordering, compiler_fence, fence};

#[cfg(not(loom))]
static REGISTERED: OnceLock<bool> = OnceLock::new();

/// Registers this process as a target of global expedited membarriers
/// (once); true if the fast side may skip its fence.
pub(crate) fn register() -> bool {
    // Neither loom nor Miri models membarrier: both sides fence there.
    #[cfg(any(loom, miri))]
    {
        false
    }
    #[cfg(not(any(loom, miri)))]
    {
        *REGISTERED.get_or_init(|| {
            use rustix::thread::{MembarrierCommand, membarrier, membarrier_query};
            membarrier_query().contains_command(MembarrierCommand::GlobalExpedited)
                && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok()
        })
    }
}

/// The frequent side's fence: a compiler fence when every process of the
/// handshake registered, else a full fence.
#[inline]
pub(crate) fn light() {
    #[cfg(not(loom))]
    if REGISTERED.get().copied().unwrap_or(false) {
        compiler_fence(Ordering::SeqCst);
        return;
    }
    fence(Ordering::SeqCst);
}

/// The rare side's fence: a full fence here and, through the kernel, in
/// every running thread of every registered process (attempted even if
/// this process could not register: its peers may have).
pub(crate) fn heavy() {
    fence(Ordering::SeqCst);
    #[cfg(not(any(loom, miri)))]
    {
        use rustix::thread::{MembarrierCommand, membarrier};
        let _ = membarrier(MembarrierCommand::GlobalExpedited);
    }
}
