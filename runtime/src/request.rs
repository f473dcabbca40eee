//! Non-blocking operations: requests, and waiting on sets of them.
//!
//! Every request completes exactly once. Requests that own their buffer
//! ([`SendRequest`], [`RecvRequest`]) give it back from `wait`; dropping one
//! that has not completed waits for it (an unmatched receive is cancelled
//! instead), and leaking one with `mem::forget` leaks its buffer with it, so
//! the runtime never writes to freed memory. Requests over borrowed buffers
//! live in a [`Scope`](crate::Scope), which waits for all of them when it
//! ends.

use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;

use crate::comm::{CommInner, Status};
use crate::engine::{Completion, RequestId};
use crate::error::Error;

pub(crate) use sealed::Pending;

mod sealed {
    use super::*;

    /// The runtime's side of a request: which operation, on which
    /// communicator, and its completion once taken.
    #[derive(Debug)]
    pub struct Pending {
        pub(crate) comm: Arc<CommInner>,
        /// `None` once the completion was taken (or for `PROC_NULL`).
        pub(crate) id: Option<RequestId>,
        pub(crate) done: Option<Completion>,
        /// A receive: cancel it on drop if still unmatched.
        pub(crate) is_recv: bool,
    }

    impl Pending {
        pub(crate) fn new(comm: Arc<CommInner>, id: Option<RequestId>, is_recv: bool) -> Pending {
            Pending {
                comm,
                id,
                done: None,
                is_recv,
            }
        }

        /// A send that completed as it started (inline): it reports
        /// `status`.
        pub(crate) fn sent(comm: Arc<CommInner>, status: crate::engine::Status) -> Pending {
            let completion = Completion {
                request: RequestId(u64::MAX),
                result: Ok(status),
                send_buf: None,
                recv_buf: None,
            };
            Pending {
                comm,
                id: None,
                done: Some(completion),
                is_recv: false,
            }
        }

        /// Polls once; true if complete (the completion is kept).
        pub(crate) fn test(&mut self) -> bool {
            if self.done.is_some() {
                return true;
            }
            let Some(id) = self.id else { return true };
            if let Some(completion) = self.comm.rt.test(id) {
                self.done = Some(completion);
                self.id = None;
            }
            self.done.is_some()
        }

        /// Blocks until complete; `None` for a `PROC_NULL` operation.
        pub(crate) fn wait(&mut self) -> Option<Completion> {
            if let Some(id) = self.id.take() {
                self.done = Some(self.comm.rt.wait(id));
            }
            self.done.take()
        }

        /// The outcome as a status of the communicator.
        pub(crate) fn outcome(&self, completion: Option<Completion>) -> Result<Status, Error> {
            match completion {
                None => Ok(Status::proc_null()),
                Some(completion) => completion
                    .result
                    .map(|status| self.comm.status(status))
                    .map_err(|error| self.comm.op_error(error)),
            }
        }
    }

    impl Drop for Pending {
        fn drop(&mut self) {
            let Some(id) = self.id.take() else { return };
            if self.is_recv && self.comm.rt.post(|engine| engine.cancel_recv(id)).is_some() {
                return;
            }
            // The engine may still use the buffer: wait until it is done.
            let _ = self.comm.rt.wait(id);
        }
    }

    /// Access to a request's pending operation, for the set operations.
    pub trait AsPending {
        /// The pending operation.
        fn pending(&mut self) -> &mut Pending;
    }
}

/// A non-blocking operation in flight.
pub trait Request: sealed::AsPending + Sized {
    /// What `wait` returns.
    type Output;

    /// Blocks until the operation completes (`MPI_Wait`).
    fn wait(self) -> Result<Self::Output, Error>;

    /// Whether the operation has completed, driving progress once
    /// (`MPI_Test`). Once true, `wait` returns at once.
    fn test(&mut self) -> bool {
        self.pending().test()
    }
}

/// Waits for every request; returns their outputs in order, or the first
/// error (after every request has completed) (`MPI_Waitall`).
pub fn wait_all<R: Request>(
    requests: impl IntoIterator<Item = R>,
) -> Result<Vec<R::Output>, Error> {
    let mut outputs = Vec::new();
    let mut first_error = None;
    for request in requests {
        match request.wait() {
            Ok(output) => outputs.push(output),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(outputs),
    }
}

/// Waits until one request completes, removes it from `requests` and
/// returns its former index and output (`MPI_Waitany`). `None` if
/// `requests` is empty.
pub fn wait_any<R: Request>(requests: &mut Vec<R>) -> Option<(usize, Result<R::Output, Error>)> {
    if requests.is_empty() {
        return None;
    }
    if let Some(index) = requests
        .iter_mut()
        .position(|r| r.pending().done.is_some() || r.pending().id.is_none())
    {
        return Some((index, requests.remove(index).wait()));
    }
    let ids: Vec<RequestId> = requests.iter_mut().filter_map(|r| r.pending().id).collect();
    let rt = Arc::clone(&requests[0].pending().comm.rt);
    let (index, completion) = rt.wait_any(&ids);
    let pending = requests[index].pending();
    pending.id = None;
    pending.done = Some(completion);
    Some((index, requests.remove(index).wait()))
}

/// Waits until at least one request completes, then removes and returns
/// every completed one with its former index (`MPI_Waitsome`).
pub fn wait_some<R: Request>(requests: &mut Vec<R>) -> Vec<(usize, Result<R::Output, Error>)> {
    let mut positions: Vec<usize> = (0..requests.len()).collect();
    let Some((first, output)) = wait_any(requests) else {
        return Vec::new();
    };
    let mut done = vec![(positions.remove(first), output)];
    let mut index = 0;
    while index < requests.len() {
        if requests[index].test() {
            done.push((positions.remove(index), requests.remove(index).wait()));
        } else {
            index += 1;
        }
    }
    done
}

/// Whether every request has completed, driving progress once
/// (`MPI_Testall`). Completed requests keep their outcome for `wait`.
pub fn test_all<R: Request>(requests: &mut [R]) -> bool {
    // Every request is tested (and progressed), not just up to the first
    // incomplete one.
    let mut all = true;
    for request in requests {
        all &= request.test();
    }
    all
}

/// If some request has completed, removes it and returns its former index
/// and output (`MPI_Testany`).
pub fn test_any<R: Request>(requests: &mut Vec<R>) -> Option<(usize, Result<R::Output, Error>)> {
    let index = requests.iter_mut().position(|request| request.test())?;
    Some((index, requests.remove(index).wait()))
}

/// A send of an owned buffer; `wait` gives the buffer back.
#[derive(Debug)]
#[must_use = "a request must be waited for (dropping it waits too)"]
pub struct SendRequest<T: Pod> {
    // Declared before `buffer`: dropping waits for the engine before the
    // buffer is freed.
    pending: Pending,
    buffer: Vec<T>,
}

impl<T: Pod> SendRequest<T> {
    pub(crate) fn new(pending: Pending, buffer: Vec<T>) -> Self {
        SendRequest { pending, buffer }
    }
}

impl<T: Pod> sealed::AsPending for SendRequest<T> {
    fn pending(&mut self) -> &mut Pending {
        &mut self.pending
    }
}

impl<T: Pod> Request for SendRequest<T> {
    type Output = Vec<T>;

    fn wait(mut self) -> Result<Vec<T>, Error> {
        let completion = self.pending.wait();
        self.pending.outcome(completion)?;
        Ok(std::mem::take(&mut self.buffer))
    }
}

/// A receive into an owned buffer; `wait` gives the buffer (with the
/// message in its first `status.count::<T>()` elements) and the status.
#[derive(Debug)]
#[must_use = "a request must be waited for (dropping it cancels or waits)"]
pub struct RecvRequest<T: Pod> {
    pending: Pending,
    buffer: Vec<T>,
}

impl<T: Pod> RecvRequest<T> {
    pub(crate) fn new(pending: Pending, buffer: Vec<T>) -> Self {
        RecvRequest { pending, buffer }
    }
}

impl<T: Pod> sealed::AsPending for RecvRequest<T> {
    fn pending(&mut self) -> &mut Pending {
        &mut self.pending
    }
}

impl<T: Pod> Request for RecvRequest<T> {
    type Output = (Vec<T>, Status);

    fn wait(mut self) -> Result<(Vec<T>, Status), Error> {
        let completion = self.pending.wait();
        let status = self.pending.outcome(completion)?;
        check_elements::<T>(&self.pending.comm, &status)?;
        Ok((std::mem::take(&mut self.buffer), status))
    }
}

/// A non-blocking operation on a borrowed buffer inside a
/// [`Scope`](crate::Scope).
#[derive(Debug)]
#[must_use = "a request must be waited for (its scope waits for it otherwise)"]
pub struct ScopedRequest<'scope> {
    pending: Pending,
    elem_size: usize,
    _borrow: PhantomData<&'scope mut ()>,
}

impl<'scope> ScopedRequest<'scope> {
    pub(crate) fn new(pending: Pending, elem_size: usize) -> Self {
        ScopedRequest {
            pending,
            elem_size,
            _borrow: PhantomData,
        }
    }
}

impl sealed::AsPending for ScopedRequest<'_> {
    fn pending(&mut self) -> &mut Pending {
        &mut self.pending
    }
}

impl Request for ScopedRequest<'_> {
    type Output = Status;

    fn wait(mut self) -> Result<Status, Error> {
        let completion = self.pending.wait();
        let status = self.pending.outcome(completion)?;
        if self.elem_size > 0 && status.len % self.elem_size != 0 {
            return Err(self.pending.comm.error(Error::ElementSize {
                bytes: status.len,
                elem_size: self.elem_size,
            }));
        }
        Ok(status)
    }
}

/// Checks that a received message is a whole number of `T`.
pub(crate) fn check_elements<T>(comm: &CommInner, status: &Status) -> Result<(), Error> {
    let size = std::mem::size_of::<T>();
    if size > 0 && status.len % size != 0 {
        return Err(comm.error(Error::ElementSize {
            bytes: status.len,
            elem_size: size,
        }));
    }
    Ok(())
}
