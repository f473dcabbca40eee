//! Point-to-point communication on a [`Comm`]: blocking, synchronous,
//! non-blocking (owned or scoped buffers), probes, matched probes, and the
//! serde object tier.
//!
//! Buffers are slices of plain-old-data (`bytemuck::Pod`): they travel as
//! their bytes, with no serialization and, for large messages, no copy on
//! either side. Any `serde` value travels as an object with
//! [`Comm::send_obj`] / [`Comm::recv_obj`] (encoded with postcard).

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytemuck::Pod;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::buffer::{RawRecv, RawSend};
use crate::comm::{Comm, CommInner, PROC_NULL, Source, Status, TagMatch};
use crate::engine::{self, MessageHandle, RecvData, RequestId, SendData, SendMode};
use crate::error::Error;
use crate::request::{Pending, RecvRequest, Request, ScopedRequest, SendRequest, check_elements};
use crate::{ContextId, Rank, Tag};

/// What a send that completed inline reports, as the engine would.
fn sent_status(inner: &CommInner, tag: Tag, len: usize) -> engine::Status {
    engine::Status {
        source: inner.rt.rank(),
        tag,
        len,
    }
}

/// Waits for a blocking operation's completion even if the caller unwinds,
/// so the engine never outlives the borrowed buffer it was given.
struct WaitGuard<'a> {
    comm: &'a CommInner,
    id: Option<RequestId>,
}

impl WaitGuard<'_> {
    fn wait(mut self) -> engine::Completion {
        let id = self.id.take().expect("a guard waits once");
        self.comm.rt.wait(id)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = self.comm.rt.wait(id);
        }
    }
}

impl CommInner {
    /// World rank of a destination; `None` for `PROC_NULL`.
    pub(crate) fn dest(&self, dest: Rank) -> Result<Option<Rank>, Error> {
        if dest == PROC_NULL {
            return Ok(None);
        }
        self.to_world(dest)
            .map(Some)
            .map_err(|error| self.error(error))
    }

    /// Engine source selector; `None` for `PROC_NULL`.
    pub(crate) fn source(&self, source: Source) -> Result<Option<engine::Source>, Error> {
        match source {
            Source::Any => Ok(Some(engine::Source::Any)),
            Source::Rank(rank) => Ok(self.dest(rank)?.map(engine::Source::Rank)),
        }
    }

    fn user_tag(&self, tag: Tag) -> Result<Tag, Error> {
        if tag.is_user() {
            Ok(tag)
        } else {
            Err(self.error(Error::InvalidTag { tag }))
        }
    }

    fn user_tag_match(&self, tag: TagMatch) -> Result<engine::TagMatch, Error> {
        match tag {
            TagMatch::Any => Ok(engine::TagMatch::Any),
            TagMatch::Tag(tag) => Ok(engine::TagMatch::Tag(self.user_tag(tag)?)),
        }
    }

    /// Blocking send of bytes on `context`.
    pub(crate) fn send_bytes(
        &self,
        bytes: &[u8],
        dest: Rank,
        context: ContextId,
        tag: Tag,
        mode: SendMode,
    ) -> Result<(), Error> {
        let Some(dest) = self.dest(dest)? else {
            return Ok(());
        };
        // SAFETY: the guard below waits for the completion before this
        // function returns or unwinds, so `bytes` outlives the engine's use.
        let view = unsafe { RawSend::new(bytes) };
        let data = SendData::View(view);
        let Some(id) = self.rt.post_send(dest, context, tag, data, mode, 0) else {
            return Ok(());
        };
        let completion = WaitGuard {
            comm: self,
            id: Some(id),
        }
        .wait();
        completion
            .result
            .map(drop)
            .map_err(|error| self.op_error(error))
    }

    /// Blocking receive of bytes on `context`.
    pub(crate) fn recv_bytes(
        &self,
        bytes: &mut [u8],
        source: Source,
        context: ContextId,
        tag: engine::TagMatch,
    ) -> Result<Status, Error> {
        let Some(source) = self.source(source)? else {
            return Ok(Status::proc_null());
        };
        // SAFETY: the guard below waits for the completion before this
        // function returns or unwinds, so `bytes` outlives the engine's use.
        let view = unsafe { RawRecv::new(bytes) };
        let id = self
            .rt
            .post(|e| e.post_recv(source, context, tag, RecvData::View(view)));
        let completion = WaitGuard {
            comm: self,
            id: Some(id),
        }
        .wait();
        completion
            .result
            .map(|status| self.status(status))
            .map_err(|error| self.op_error(error))
    }
}

impl Comm {
    /// Sends `buf` to rank `dest` with `tag` (`MPI_Send`). Small messages
    /// are buffered and return at once; large ones return when the data
    /// has left (the receive must be posted for that).
    ///
    /// ```
    /// mpr::local::run(2, |world| {
    ///     if world.rank() == 0 {
    ///         world.send(&[1.0f64, 2.0], 1, 7)?;
    ///     } else {
    ///         let mut buf = [0.0f64; 2];
    ///         let status = world.recv(&mut buf, 0, 7)?;
    ///         assert_eq!((buf, status.count::<f64>()), ([1.0, 2.0], 2));
    ///     }
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn send<T: Pod>(
        &self,
        buf: &[T],
        dest: impl Into<Rank>,
        tag: impl Into<Tag>,
    ) -> Result<(), Error> {
        self.send_mode(
            bytemuck::cast_slice(buf),
            dest.into(),
            tag.into(),
            SendMode::Standard,
        )
    }

    /// Synchronous send (`MPI_Ssend`): returns only once the receiver has
    /// matched the message.
    pub fn ssend<T: Pod>(
        &self,
        buf: &[T],
        dest: impl Into<Rank>,
        tag: impl Into<Tag>,
    ) -> Result<(), Error> {
        self.send_mode(
            bytemuck::cast_slice(buf),
            dest.into(),
            tag.into(),
            SendMode::Synchronous,
        )
    }

    /// A blocking user send of bytes in either mode.
    fn send_mode(&self, bytes: &[u8], dest: Rank, tag: Tag, mode: SendMode) -> Result<(), Error> {
        let inner = &*self.inner;
        let tag = inner.user_tag(tag)?;
        inner.send_bytes(bytes, dest, inner.p2p, tag, mode)
    }

    /// Receives into `buf` a message from `source` with `tag` (either may
    /// be a wildcard: [`ANY_SOURCE`](crate::ANY_SOURCE),
    /// [`ANY_TAG`](crate::ANY_TAG)) (`MPI_Recv`). A message longer than
    /// `buf` is an [`Error::Truncated`].
    pub fn recv<T: Pod>(
        &self,
        buf: &mut [T],
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<Status, Error> {
        let inner = &*self.inner;
        let tag = inner.user_tag_match(tag.into())?;
        let status =
            inner.recv_bytes(bytemuck::cast_slice_mut(buf), source.into(), inner.p2p, tag)?;
        check_elements::<T>(inner, &status)?;
        Ok(status)
    }

    /// Sends `send` to `dest` and receives into `recv` from `source`, at
    /// the same time, so that exchanges between pairs cannot deadlock
    /// (`MPI_Sendrecv`).
    #[allow(clippy::too_many_arguments)]
    pub fn sendrecv<S: Pod, R: Pod>(
        &self,
        send: &[S],
        dest: impl Into<Rank>,
        send_tag: impl Into<Tag>,
        recv: &mut [R],
        source: impl Into<Source>,
        recv_tag: impl Into<TagMatch>,
    ) -> Result<Status, Error> {
        let (dest, send_tag, source, recv_tag) =
            (dest.into(), send_tag.into(), source.into(), recv_tag.into());
        self.scope(|scope| {
            let receive = scope.irecv(recv, source, recv_tag)?;
            let sent = scope.isend(send, dest, send_tag)?;
            let status = receive.wait();
            sent.wait()?;
            status
        })
    }

    /// Starts a send of an owned buffer (`MPI_Isend`); `wait` gives the
    /// buffer back.
    pub fn isend<T: Pod>(
        &self,
        buf: Vec<T>,
        dest: impl Into<Rank>,
        tag: impl Into<Tag>,
    ) -> Result<SendRequest<T>, Error> {
        self.isend_mode(buf, dest.into(), tag.into(), SendMode::Standard)
    }

    /// Starts a synchronous send of an owned buffer (`MPI_Issend`): it
    /// completes once the receiver has matched it.
    pub fn issend<T: Pod>(
        &self,
        buf: Vec<T>,
        dest: impl Into<Rank>,
        tag: impl Into<Tag>,
    ) -> Result<SendRequest<T>, Error> {
        self.isend_mode(buf, dest.into(), tag.into(), SendMode::Synchronous)
    }

    fn isend_mode<T: Pod>(
        &self,
        buf: Vec<T>,
        dest: Rank,
        tag: Tag,
        mode: SendMode,
    ) -> Result<SendRequest<T>, Error> {
        let inner = &self.inner;
        let tag = inner.user_tag(tag)?;
        let id = match inner.dest(dest)? {
            None => None,
            Some(dest) => {
                // SAFETY: the bytes live in the heap block of `buf`, which
                // the request owns and frees only after the engine handed the
                // view back (its `Pending` waits on drop); if the request is
                // leaked, the block is leaked too and stays valid.
                let view = unsafe { RawSend::new(bytemuck::cast_slice(&buf)) };
                let data = SendData::View(view);
                match inner.rt.post_send(dest, inner.p2p, tag, data, mode, 0) {
                    Some(id) => Some(id),
                    None => {
                        let status = sent_status(inner, tag, std::mem::size_of_val(&buf[..]));
                        let pending = Pending::sent(Arc::clone(inner), status);
                        return Ok(SendRequest::new(pending, buf));
                    }
                }
            }
        };
        Ok(SendRequest::new(
            Pending::new(Arc::clone(inner), id, false),
            buf,
        ))
    }

    /// Starts a receive into an owned buffer (`MPI_Irecv`); `wait` gives
    /// the buffer back with the status.
    pub fn irecv<T: Pod>(
        &self,
        mut buf: Vec<T>,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<RecvRequest<T>, Error> {
        let inner = &self.inner;
        let tag = inner.user_tag_match(tag.into())?;
        let id = match inner.source(source.into())? {
            None => None,
            Some(source) => {
                // SAFETY: as in `isend_mode`: the request owns the heap block
                // and frees it only after the engine is done with it.
                let view = unsafe { RawRecv::new(bytemuck::cast_slice_mut(&mut buf)) };
                Some(
                    inner
                        .rt
                        .post(|e| e.post_recv(source, inner.p2p, tag, RecvData::View(view))),
                )
            }
        };
        Ok(RecvRequest::new(
            Pending::new(Arc::clone(inner), id, true),
            buf,
        ))
    }

    /// Runs `body` with a [`Scope`] in which non-blocking operations may
    /// borrow buffers; every operation started in the scope has completed
    /// when `scope` returns, even if a request was leaked or `body` panicked.
    ///
    /// ```
    /// mpr::local::run(2, |world| {
    ///     let peer = 1 - world.rank();
    ///     let mine = [world.rank(); 4];
    ///     let mut theirs = [0u32; 4];
    ///     world.scope(|s| {
    ///         let r = s.irecv(&mut theirs, peer, 0)?;
    ///         let w = s.isend(&mine, peer, 0)?;
    ///         mpr::wait_all([r, w])
    ///     })?;
    ///     assert_eq!(theirs, [peer; 4]);
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn scope<'env, F, R>(&'env self, body: F) -> R
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
    {
        let scope = Scope {
            comm: self,
            shared: ScopeShared::default(),
            _scope: PhantomData,
            _env: PhantomData,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&scope)));
        // Everything started in the scope completes before its borrows end,
        // whether `body` returned or panicked.
        scope.wait_outstanding();
        match result {
            Ok(value) => value,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Blocks until a message matching `source` and `tag` can be received,
    /// and returns its status without receiving it (`MPI_Probe`).
    pub fn probe(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<Status, Error> {
        let inner = &*self.inner;
        let tag = inner.user_tag_match(tag.into())?;
        let Some(source) = inner.source(source.into())? else {
            return Ok(Status::proc_null());
        };
        let context = inner.p2p;
        let status = inner
            .rt
            .wait_until(|engine| engine.iprobe(source, context, tag));
        Ok(inner.status(status))
    }

    /// The status of a matching message if one can be received now
    /// (`MPI_Iprobe`).
    pub fn iprobe(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<Option<Status>, Error> {
        let inner = &*self.inner;
        let tag = inner.user_tag_match(tag.into())?;
        let Some(source) = inner.source(source.into())? else {
            return Ok(Some(Status::proc_null()));
        };
        let context = inner.p2p;
        let mut polled = false;
        let found = inner.rt.wait_until(|engine| {
            let found = engine.iprobe(source, context, tag);
            let done = found.is_some() || polled;
            polled = true;
            done.then_some(found)
        });
        Ok(found.map(|status| inner.status(status)))
    }

    /// Blocks until a matching message arrives and takes it out of matching
    /// for this caller alone (`MPI_Mprobe`): the thread-safe way to receive
    /// a message of unknown size.
    pub fn mprobe(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<(Message, Status), Error> {
        let inner = &*self.inner;
        let tag = inner.user_tag_match(tag.into())?;
        let Some(source) = inner.source(source.into())? else {
            return Ok((Message::null(&self.inner), Status::proc_null()));
        };
        let context = inner.p2p;
        let (handle, status) = inner
            .rt
            .wait_until(|engine| engine.improbe(source, context, tag));
        Ok((
            Message {
                comm: Arc::clone(&self.inner),
                handle: Some(handle),
                len: status.len,
            },
            inner.status(status),
        ))
    }

    /// Like [`Comm::mprobe`] but returns `None` at once if no message
    /// matches (`MPI_Improbe`).
    pub fn improbe(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<Option<(Message, Status)>, Error> {
        let inner = &*self.inner;
        let tag = inner.user_tag_match(tag.into())?;
        let Some(source) = inner.source(source.into())? else {
            return Ok(Some((Message::null(&self.inner), Status::proc_null())));
        };
        let context = inner.p2p;
        let mut polled = false;
        let found = inner.rt.wait_until(|engine| {
            let found = engine.improbe(source, context, tag);
            let done = found.is_some() || polled;
            polled = true;
            done.then_some(found)
        });
        Ok(found.map(|(handle, status)| {
            (
                Message {
                    comm: Arc::clone(&self.inner),
                    handle: Some(handle),
                    len: status.len,
                },
                inner.status(status),
            )
        }))
    }

    /// Sends any serializable value as an object.
    pub fn send_obj<T: Serialize + ?Sized>(
        &self,
        value: &T,
        dest: impl Into<Rank>,
        tag: impl Into<Tag>,
    ) -> Result<(), Error> {
        let bytes = postcard::to_allocvec(value)
            .map_err(|error| self.inner.error(Error::Serialize(error)))?;
        self.send(&bytes, dest, tag)
    }

    /// Receives an object sent with [`Comm::send_obj`], of any size.
    ///
    /// ```
    /// mpr::local::run(2, |world| {
    ///     if world.rank() == 0 {
    ///         world.send_obj(&("pi", vec![3u8, 1, 4]), 1, 0)?;
    ///     } else {
    ///         let (value, _) = world.recv_obj::<(String, Vec<u8>)>(0, 0)?;
    ///         assert_eq!(value, ("pi".to_string(), vec![3, 1, 4]));
    ///     }
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn recv_obj<T: DeserializeOwned>(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<(T, Status), Error> {
        let (message, status) = self.mprobe(source, tag)?;
        let (bytes, status) = if status.source == PROC_NULL {
            (Vec::new(), status)
        } else {
            message.recv_vec::<u8>()?
        };
        let value = postcard::from_bytes(&bytes)
            .map_err(|error| self.inner.error(Error::Deserialize(error)))?;
        Ok((value, status))
    }
}

/// A message taken out of matching by [`Comm::mprobe`]; receive it with
/// [`Message::recv`] or [`Message::recv_vec`]. Dropping it receives and
/// discards it.
#[derive(Debug)]
pub struct Message {
    comm: Arc<CommInner>,
    handle: Option<MessageHandle>,
    len: usize,
}

impl Message {
    fn null(comm: &Arc<CommInner>) -> Message {
        Message {
            comm: Arc::clone(comm),
            handle: None,
            len: 0,
        }
    }

    /// Receives the message into `buf` (`MPI_Mrecv`).
    pub fn recv<T: Pod>(mut self, buf: &mut [T]) -> Result<Status, Error> {
        let Some(handle) = self.handle.take() else {
            return Ok(Status::proc_null());
        };
        let comm = Arc::clone(&self.comm);
        // SAFETY: the guard waits for the completion before returning or
        // unwinding, so `buf` outlives the engine's use of it.
        let view = unsafe { RawRecv::new(bytemuck::cast_slice_mut(buf)) };
        let id = comm.rt.post(|e| e.post_mrecv(handle, RecvData::View(view)));
        let completion = WaitGuard {
            comm: &comm,
            id: Some(id),
        }
        .wait();
        let status = completion
            .result
            .map(|s| comm.status(s))
            .map_err(|e| comm.op_error(e))?;
        check_elements::<T>(&comm, &status)?;
        Ok(status)
    }

    /// Receives the message into a new vector of exactly its size.
    pub fn recv_vec<T: Pod>(self) -> Result<(Vec<T>, Status), Error> {
        let len = self.len;
        let size = std::mem::size_of::<T>().max(1);
        let mut buf = vec![T::zeroed(); len.div_ceil(size)];
        let status = self.recv(&mut buf)?;
        buf.truncate(status.count::<T>());
        Ok((buf, status))
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let id = self
                .comm
                .rt
                .post(|e| e.post_mrecv(handle, RecvData::Owned(Box::new(Vec::new()))));
            let _ = self.comm.rt.wait(id);
        }
    }
}

/// What a scope's requests share with it: the number the engine marks
/// them with, so that the scope finds those nobody waited for (with one
/// pass over the request table when it ends, and nothing per operation).
#[derive(Debug)]
pub(crate) struct ScopeShared {
    id: u64,
}

impl Default for ScopeShared {
    fn default() -> Self {
        /// Scope numbers: never reused (0 means "no scope").
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ScopeShared {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// Non-blocking operations on borrowed buffers; see [`Comm::scope`].
#[derive(Debug)]
pub struct Scope<'scope, 'env: 'scope> {
    comm: &'env Comm,
    shared: ScopeShared,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl<'scope> Scope<'scope, '_> {
    /// Starts a send of a borrowed buffer (`MPI_Isend`).
    pub fn isend<T: Pod>(
        &'scope self,
        buf: &'scope [T],
        dest: impl Into<Rank>,
        tag: impl Into<Tag>,
    ) -> Result<ScopedRequest<'scope>, Error> {
        self.isend_mode(buf, dest.into(), tag.into(), SendMode::Standard)
    }

    /// Starts a synchronous send of a borrowed buffer (`MPI_Issend`).
    pub fn issend<T: Pod>(
        &'scope self,
        buf: &'scope [T],
        dest: impl Into<Rank>,
        tag: impl Into<Tag>,
    ) -> Result<ScopedRequest<'scope>, Error> {
        self.isend_mode(buf, dest.into(), tag.into(), SendMode::Synchronous)
    }

    fn isend_mode<T: Pod>(
        &'scope self,
        buf: &'scope [T],
        dest: Rank,
        tag: Tag,
        mode: SendMode,
    ) -> Result<ScopedRequest<'scope>, Error> {
        let inner = &self.comm.inner;
        let tag = inner.user_tag(tag)?;
        let id = match inner.dest(dest)? {
            None => None,
            Some(dest) => {
                // SAFETY: `buf` is borrowed for 'scope, and the scope waits
                // for every operation it started before 'scope ends.
                let view = unsafe { RawSend::new(bytemuck::cast_slice(buf)) };
                let data = SendData::View(view);
                let scope = self.shared.id;
                match inner.rt.post_send(dest, inner.p2p, tag, data, mode, scope) {
                    Some(id) => Some(id),
                    None => {
                        let status = sent_status(inner, tag, std::mem::size_of_val(buf));
                        let pending = Pending::sent(Arc::clone(inner), status);
                        return Ok(ScopedRequest::new(pending, 0));
                    }
                }
            }
        };
        Ok(ScopedRequest::new(
            Pending::new(Arc::clone(inner), id, false),
            0,
        ))
    }

    /// Starts a receive into a borrowed buffer (`MPI_Irecv`).
    pub fn irecv<T: Pod>(
        &'scope self,
        buf: &'scope mut [T],
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<ScopedRequest<'scope>, Error> {
        let inner = &self.comm.inner;
        let tag = inner.user_tag_match(tag.into())?;
        let id = match inner.source(source.into())? {
            None => None,
            Some(source) => {
                // SAFETY: `buf` is borrowed mutably for 'scope, and the scope
                // waits for every operation it started before 'scope ends.
                let view = unsafe { RawRecv::new(bytemuck::cast_slice_mut(buf)) };
                let scope = self.shared.id;
                let id = inner.rt.post(|e| {
                    let id = e.post_recv(source, inner.p2p, tag, RecvData::View(view));
                    e.set_scope(id, scope);
                    id
                });
                Some(id)
            }
        };
        Ok(ScopedRequest::new(
            Pending::new(Arc::clone(inner), id, true),
            std::mem::size_of::<T>(),
        ))
    }
}

impl Scope<'_, '_> {
    fn wait_outstanding(&self) {
        let comm = &self.comm.inner;
        let scope = self.shared.id;
        let unwaited = comm.rt.lock().engine.scope_requests(scope);
        for id in unwaited {
            // Leaked or never waited: the borrowed buffer must be released
            // before the scope ends. The completion is dropped.
            let _ = comm.rt.wait(id);
        }
    }
}
