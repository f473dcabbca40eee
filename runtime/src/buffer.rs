//! Views of user memory handed to the engine, for zero-copy sends and
//! receives.
//!
//! The engine takes its buffers as `SendData` / `RecvData` (these views, or owned buffers)
//! and keeps them until it hands them back in a completion. A user's slice
//! (a borrowed buffer, or the heap block of a `Vec` owned by a request)
//! reaches the engine as a raw view, so that large messages move straight
//! between sockets and user memory. The API guarantees the memory outlives
//! the engine's use of it:
//! - blocking calls wait for the completion before returning (and a drop
//!   guard waits during unwinding);
//! - requests owning a `Vec` wait in `Drop`; a request leaked with
//!   `mem::forget` leaks its `Vec` too, so the memory stays valid forever;
//! - scoped requests are waited for when their scope ends, forgotten or not.

use std::fmt;

use crate::engine::{RecvBuf, SendBuf};

/// A read-only view of user memory for the engine.
pub struct RawSend {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the view only reads plain bytes; the memory it points to belongs
// to a slice that the creator of the view keeps alive and unmodified until
// the engine hands the view back (see `RawSend::new`).
unsafe impl Send for RawSend {}

impl RawSend {
    /// A view of `bytes` for the engine.
    ///
    /// # Safety
    ///
    /// The caller keeps the memory of `bytes` alive and does not write to it
    /// until the engine has handed this view back in a completion (or has
    /// been dropped), even if the borrow that produced `bytes` ends sooner.
    pub(crate) unsafe fn new(bytes: &[u8]) -> RawSend {
        RawSend {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

impl SendBuf for RawSend {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `new`'s contract keeps `ptr..ptr+len` alive, initialized
        // and unwritten for as long as the engine holds this view.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl fmt::Debug for RawSend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSend").field("len", &self.len).finish()
    }
}

/// A writable view of user memory for the engine.
pub struct RawRecv {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the view is the only access to the memory while the engine holds
// it (see `RawRecv::new`), so moving it to another thread moves that
// exclusive access with it.
unsafe impl Send for RawRecv {}

impl RawRecv {
    /// A view of `bytes` for the engine.
    ///
    /// # Safety
    ///
    /// The caller keeps the memory of `bytes` alive and neither reads nor
    /// writes it until the engine has handed this view back in a
    /// completion (or has been dropped), even if the borrow that produced
    /// `bytes` ends sooner.
    pub(crate) unsafe fn new(bytes: &mut [u8]) -> RawRecv {
        RawRecv {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
        }
    }
}

impl RecvBuf for RawRecv {
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `new`'s contract gives this view exclusive access to
        // `ptr..ptr+len` for as long as the engine holds it; `&mut self`
        // makes the returned slice the only live reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl fmt::Debug for RawRecv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRecv").field("len", &self.len).finish()
    }
}
