//! Shared-memory segments: one per rank, holding the rings its local peers
//! write into, and nothing that outlives the processes that map it.
//!
//! A rank makes its segment with `memfd_create` (anonymous: no name in
//! `/dev/shm` or anywhere else) and publishes its pid and descriptor number
//! on its business card; a peer on the same host opens
//! `/proc/<pid>/fd/<fd>`, which the kernel permits to processes of the same
//! user, maps it and closes the descriptor. The memory is freed when the
//! last process that maps it exits, however it exits (`kill -9` included),
//! so there is nothing to clean up.
//!
//! Layout: a 4 KiB header page (magic, slot count, ring capacity, the
//! owner's *sleeping* flag), then the owner's [`BOARDS`] *collective
//! boards* (each a page of counters and two [`BOARD_BYTES`] buffers, see
//! `board.rs`: only the owner writes them, every local peer reads them;
//! board 0 serves the world communicator, the others the communicators
//! made from it, see `collective/board_number.rs`), then one page-aligned slot per
//! local rank: a ring [`Control`] block followed by the ring's data area.
//! The owner consumes every slot; the local rank with that slot number
//! produces.

use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use rustix::fs::{MemfdFlags, Mode, OFlags};
use rustix::mm::{MapFlags, ProtFlags};

use super::ring::{self, CELL, Control, RingMemory};

/// Identifies a segment of this version.
const MAGIC: u64 = u64::from_le_bytes(*b"MPRSHM04");
/// Bytes of the header page.
const HEADER_BYTES: usize = 4096;
/// Offset of the owner's sleeping flag in the header.
const SLEEPING_OFFSET: usize = 128;
/// Offset of the owner's board state: 0 while it wires up, then
/// [`BOARDS_COMPLETE`], [`BOARDS_DIRECT`] or [`BOARDS_INCOMPLETE`].
const BOARD_STATE_OFFSET: usize = 192;
/// The owner mapped the segment of every rank of the job.
pub(crate) const BOARDS_COMPLETE: u64 = 1;
/// The owner could not map some rank's segment (or that rank has none).
pub(crate) const BOARDS_INCOMPLETE: u64 = 2;
/// As [`BOARDS_COMPLETE`], and the owner can read and write the memory of
/// every rank of the job (`process_vm_readv`, `process_vm_writev`).
pub(crate) const BOARDS_DIRECT: u64 = 3;
/// Bytes of each of the collective board's two buffers.
pub(crate) const BOARD_BYTES: usize = 64 << 10;
/// Collective boards in each segment: the world's and
/// `BOARDS - 1` for other communicators at once. Pages a board never
/// used take no memory (the segment is sparse).
pub(crate) const BOARDS: usize = 8;
/// Offset of board 0's counter page.
const BOARD_COUNTERS: usize = HEADER_BYTES;
/// Offset of a board's first buffer from its counter page.
const BOARD_DATA: usize = 4096;
/// Bytes of one board: its counter page and its two buffers.
const BOARD_STRIDE: usize = BOARD_DATA + 2 * BOARD_BYTES;
/// Largest payload a board buffer may keep in the first cache line of the
/// board's counter page instead ([`Mapping::board_write_inline`]).
pub(crate) const BOARD_INLINE_BYTES: usize = 16;
/// Offset in the counter page of buffer 0's inline payload (buffer 1's
/// follows), after the line's first three words (`board.rs` keeps its
/// arrival counter and the two lengths there).
const BOARD_INLINE: usize = 24;
const _: () = assert!(BOARD_INLINE + 2 * BOARD_INLINE_BYTES <= 64);
/// Offset of the per-peer counters in the counter page (before it: one
/// counter per cache line).
const BOARD_PEER_COUNTERS: usize = 1024;
/// Ranks with a per-peer counter on each board.
pub(crate) const BOARD_PEERS: usize = (4096 - BOARD_PEER_COUNTERS) / 8;
/// Bytes before the first slot.
const FRONT_BYTES: usize = BOARD_COUNTERS + BOARDS * BOARD_STRIDE;
/// Bytes reserved for a ring's control block at the start of its slot.
const CONTROL_BYTES: usize = 1024;
const PAGE: usize = 4096;

/// Why a segment could not be made or mapped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SegmentError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// The step that failed.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The mapped memory is not a segment of this shape.
    #[error("the peer's segment has an unexpected layout")]
    Layout,
}

fn os(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> SegmentError {
    move |errno| SegmentError::Os {
        what,
        source: errno.into(),
    }
}

/// The shape of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Slots (local ranks) in the segment.
    pub(crate) slots: u32,
    /// Data bytes of each ring: a multiple of the page size.
    pub(crate) capacity: usize,
}

impl Shape {
    fn slot_stride(&self) -> usize {
        CONTROL_BYTES + self.capacity
    }

    fn len(&self) -> usize {
        FRONT_BYTES + self.slots as usize * self.slot_stride()
    }

    /// The ring capacity rounded to whole pages (at least one).
    pub(crate) fn new(slots: u32, capacity: usize) -> Shape {
        let capacity = capacity.div_ceil(PAGE).max(1) * PAGE;
        Shape { slots, capacity }
    }
}

/// A mapped segment.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: NonNull<u8>,
    shape: Shape,
}

// SAFETY: the mapping is plain shared memory; every access goes through
// atomics or through the ring protocol, which gives each byte range to one
// side at a time, so sharing the pointer between threads is as safe as
// sharing it between processes.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base` and the length come from a successful `mmap` of
        // exactly this length, unmapped only here; every `SlotMemory` keeps
        // the mapping alive through an `Arc`, so nothing points into it now.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.shape.len()) };
    }
}

impl Mapping {
    fn map(fd: &OwnedFd, shape: Shape) -> Result<Mapping, SegmentError> {
        // SAFETY: a fresh shared mapping of a file we hold: no existing Rust
        // object aliases it. The memory is only reached through `Mapping`.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                shape.len(),
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd.as_fd(),
                0,
            )
        }
        .map_err(os("mmap"))?;
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(SegmentError::Layout)?;
        Ok(Mapping { base, shape })
    }

    fn header_word(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        debug_assert!(offset % 8 == 0 && offset + 8 <= HEADER_BYTES);
        // SAFETY: in bounds of the header page, 8-aligned (the mapping is
        // page-aligned), and only ever accessed atomically.
        unsafe { &*self.base.as_ptr().add(offset).cast() }
    }

    /// The owner's flag: 1 while it sleeps in its poller (a producer then
    /// rings its doorbell).
    #[inline]
    pub(crate) fn sleeping(&self) -> &AtomicU32 {
        // SAFETY: in bounds of the header page, 4-aligned, only ever
        // accessed atomically.
        unsafe { &*self.base.as_ptr().add(SLEEPING_OFFSET).cast() }
    }

    /// The owner's board state (see [`BOARDS_COMPLETE`]).
    #[inline]
    pub(crate) fn board_state(&self) -> &std::sync::atomic::AtomicU64 {
        self.header_word(BOARD_STATE_OFFSET)
    }

    /// Offset of board `board`'s counter page.
    #[inline]
    fn board_offset(board: usize) -> usize {
        assert!(board < BOARDS);
        BOARD_COUNTERS + board * BOARD_STRIDE
    }

    /// Counter `index` of collective board `board` (each on its own cache
    /// line; see `board.rs`).
    #[inline]
    pub(crate) fn board_counter(
        &self,
        board: usize,
        index: usize,
    ) -> &std::sync::atomic::AtomicU64 {
        self.board_counter_word(board, index, 0)
    }

    /// Word `word` (of 8) of the cache line of counter `index` of board
    /// `board`: values read together with that counter share its line, so
    /// that a peer takes them in one transfer.
    #[inline]
    pub(crate) fn board_counter_word(
        &self,
        board: usize,
        index: usize,
        word: usize,
    ) -> &std::sync::atomic::AtomicU64 {
        assert!(index < BOARD_PEER_COUNTERS / 64 && word < 8);
        let offset = Self::board_offset(board) + index * 64 + word * 8;
        // SAFETY: in bounds of the board's counter page, 64-aligned, and
        // only ever accessed atomically.
        unsafe { &*self.base.as_ptr().add(offset).cast() }
    }

    /// Per-peer counter `index` of collective board `board` (packed, eight
    /// to a cache line, after the counters of
    /// [`board_counter`](Self::board_counter)).
    #[inline]
    pub(crate) fn board_peer_counter(
        &self,
        board: usize,
        index: usize,
    ) -> &std::sync::atomic::AtomicU64 {
        assert!(index < BOARD_PEERS);
        let offset = Self::board_offset(board) + BOARD_PEER_COUNTERS + index * 8;
        // SAFETY: in bounds of the board's counter page (BOARD_PEER_COUNTERS
        // + 8 * BOARD_PEERS = 4096), 8-aligned, and only ever accessed
        // atomically.
        unsafe { &*self.base.as_ptr().add(offset).cast() }
    }

    /// Copies `src` into buffer `buffer` (0 or 1) of board `board`.
    ///
    /// # Safety
    ///
    /// Only the segment's owner writes its boards, and only into a buffer
    /// that no peer reads now (the board's protocol: every reader has
    /// published that it finished with it).
    pub(crate) unsafe fn board_write(&self, board: usize, buffer: usize, src: &[u8]) {
        assert!(buffer < 2 && src.len() <= BOARD_BYTES);
        let offset = Self::board_offset(board) + BOARD_DATA + buffer * BOARD_BYTES;
        // SAFETY: in bounds (asserted); the caller guarantees that nobody
        // reads or writes these bytes meanwhile.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.as_ptr().add(offset), src.len());
        }
    }

    /// Copies `src` (at most [`BOARD_INLINE_BYTES`]) into the inline
    /// place of buffer `buffer` (0 or 1) of board `board`, in the counter
    /// page's first line.
    ///
    /// # Safety
    ///
    /// As for [`board_write`](Self::board_write).
    pub(crate) unsafe fn board_write_inline(&self, board: usize, buffer: usize, src: &[u8]) {
        assert!(buffer < 2 && src.len() <= BOARD_INLINE_BYTES);
        let offset = Self::board_offset(board) + BOARD_INLINE + buffer * BOARD_INLINE_BYTES;
        // SAFETY: in bounds (asserted, and the inline places end inside the
        // counter page's first line); the caller guarantees that nobody
        // reads or writes these bytes meanwhile (the line's other bytes
        // are counters, only accessed atomically).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.as_ptr().add(offset), src.len());
        }
    }

    /// Copies `dst.len()` bytes from `offset` of the inline place of
    /// buffer `buffer` of board `board` out.
    ///
    /// # Safety
    ///
    /// As for [`board_read`](Self::board_read).
    pub(crate) unsafe fn board_read_inline(
        &self,
        board: usize,
        buffer: usize,
        offset: usize,
        dst: &mut [u8],
    ) {
        assert!(buffer < 2 && offset <= BOARD_INLINE_BYTES);
        assert!(dst.len() <= BOARD_INLINE_BYTES - offset);
        let start = Self::board_offset(board) + BOARD_INLINE + buffer * BOARD_INLINE_BYTES + offset;
        // SAFETY: in bounds (asserted); the caller guarantees that nobody
        // writes these bytes meanwhile.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(start),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
    }

    /// Copies `dst.len()` bytes from `offset` of buffer `buffer` of board
    /// `board` out.
    ///
    /// # Safety
    ///
    /// The owner published these bytes (a release store this thread has
    /// acquired) and writes the buffer again only after this reader has
    /// published that it finished with it.
    pub(crate) unsafe fn board_read(
        &self,
        board: usize,
        buffer: usize,
        offset: usize,
        dst: &mut [u8],
    ) {
        assert!(buffer < 2 && offset <= BOARD_BYTES && dst.len() <= BOARD_BYTES - offset);
        let start = Self::board_offset(board) + BOARD_DATA + buffer * BOARD_BYTES + offset;
        // SAFETY: in bounds (asserted); the caller guarantees that nobody
        // writes these bytes meanwhile.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(start),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
    }

    /// The shape of the segment.
    pub(crate) fn shape(&self) -> Shape {
        self.shape
    }
}

/// Makes this rank's segment; returns it with the descriptor peers open.
pub(crate) fn create(shape: Shape) -> Result<(Arc<Mapping>, OwnedFd), SegmentError> {
    let fd =
        rustix::fs::memfd_create("mpr-shm", MemfdFlags::CLOEXEC).map_err(os("memfd_create"))?;
    rustix::fs::ftruncate(&fd, shape.len() as u64).map_err(os("ftruncate"))?;
    let mapping = Mapping::map(&fd, shape)?;
    use std::sync::atomic::Ordering;
    mapping.header_word(0).store(MAGIC, Ordering::Relaxed);
    mapping
        .header_word(8)
        .store(u64::from(shape.slots), Ordering::Relaxed);
    mapping
        .header_word(16)
        .store(shape.capacity as u64, Ordering::Release);
    Ok((Arc::new(mapping), fd))
}

/// Maps a peer's segment through `/proc/<pid>/fd/<fd>` and checks its
/// header against the shape its card announced.
pub(crate) fn open(pid: u32, fd: i32, shape: Shape) -> Result<Arc<Mapping>, SegmentError> {
    let path = format!("/proc/{pid}/fd/{fd}");
    let file = rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(os("open the peer's segment"))?;
    let stat = rustix::fs::fstat(&file).map_err(os("fstat"))?;
    if usize::try_from(stat.st_size).ok() != Some(shape.len()) {
        return Err(SegmentError::Layout);
    }
    let mapping = Mapping::map(&file, shape)?;
    use std::sync::atomic::Ordering;
    let valid = mapping.header_word(0).load(Ordering::Relaxed) == MAGIC
        && mapping.header_word(8).load(Ordering::Relaxed) == u64::from(shape.slots)
        && mapping.header_word(16).load(Ordering::Acquire) == shape.capacity as u64;
    if !valid {
        return Err(SegmentError::Layout);
    }
    Ok(Arc::new(mapping))
}

/// One slot's ring in a mapped segment.
#[derive(Debug, Clone)]
pub(crate) struct SlotMemory {
    mapping: Arc<Mapping>,
    control: usize,
}

impl SlotMemory {
    /// The ring of `slot` (which must be below the segment's slot count).
    pub(crate) fn new(mapping: &Arc<Mapping>, slot: u32) -> Option<SlotMemory> {
        let shape = mapping.shape;
        (slot < shape.slots).then(|| SlotMemory {
            mapping: Arc::clone(mapping),
            control: FRONT_BYTES + slot as usize * shape.slot_stride(),
        })
    }

    /// Maps the first `bytes` of the ring (and its control block) into
    /// this process now, as a write would, without changing a byte
    /// (`MADV_POPULATE_WRITE`), so that the first messages do not each pay
    /// a page fault. Best effort: a kernel without it (before 5.14) just
    /// faults later.
    pub(crate) fn warm(&self, bytes: usize) {
        let start = self.control / PAGE * PAGE;
        let end = (self.control + CONTROL_BYTES + bytes.min(self.mapping.shape.capacity))
            .div_ceil(PAGE)
            * PAGE;
        // SAFETY: `start..end` lies inside the mapping (the slot ends at a
        // page boundary within it) and is page-aligned; populating only
        // installs pages and never changes their contents, so the peer that
        // shares them sees nothing.
        let _ = unsafe {
            rustix::mm::madvise(
                self.mapping.base.as_ptr().add(start).cast(),
                end - start,
                rustix::mm::Advice::LinuxPopulateWrite,
            )
        };
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the slot's data area starts inside the mapping (checked
        // when the slot was made) and spans `capacity` bytes of it.
        unsafe { self.mapping.base.as_ptr().add(self.control + CONTROL_BYTES) }
    }
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Control>() <= CONTROL_BYTES);

impl RingMemory for SlotMemory {
    fn control(&self) -> &Control {
        // SAFETY: the control block lies inside the mapping, 1024-aligned
        // (aligned enough for `Control`), starts zero-filled (a valid
        // `Control`: nothing but zero atomics) and is only accessed atomically.
        unsafe { &*self.mapping.base.as_ptr().add(self.control).cast() }
    }

    fn capacity(&self) -> usize {
        self.mapping.shape.capacity
    }

    fn header(&self, offset: usize) -> &ring::AtomicU64 {
        assert!(offset % CELL == 0 && offset < self.capacity());
        // SAFETY: in bounds (asserted) and 64-aligned (slots and their data
        // areas start on 1024-byte boundaries of a page-aligned mapping); header words are only accessed atomically while
        // they may be polled, and plain payload copies reach them only in
        // cells the ring protocol has handed to one side.
        unsafe { &*self.data().add(offset).cast() }
    }

    fn write(&self, offset: usize, src: &[u8]) {
        assert!(offset + src.len() <= self.capacity());
        // SAFETY: in bounds (asserted). The ring protocol gives these bytes
        // to the producer alone until it publishes them, so nothing reads
        // them concurrently; `src` is our own memory, never the segment.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.data().add(offset), src.len()) }
    }

    fn view(&self, offset: usize, len: usize, f: &mut dyn FnMut(&[u8])) {
        assert!(offset + len <= self.capacity());
        // SAFETY: in bounds (asserted). As for `read`: the bytes were
        // published with a release store the consumer acquired, and the
        // producer does not touch them until `head` passes them, which
        // happens only after `f` returns; the slice does not outlive `f`.
        let bytes = unsafe { std::slice::from_raw_parts(self.data().add(offset), len) };
        f(bytes);
    }

    fn read(&self, offset: usize, dst: &mut [u8]) {
        assert!(offset + dst.len() <= self.capacity());
        // SAFETY: in bounds (asserted). These bytes were published with a
        // release store of `tail` that the consumer acquired, and the
        // producer does not touch them again until `head` passes them.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data().add(offset), dst.as_mut_ptr(), dst.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use super::super::ring::{Consumer, Producer};
    use super::*;

    fn no_remote(_: u64, _: &mut [u8]) -> Result<(), i32> {
        Err(-1)
    }

    #[test]
    fn a_segment_opened_through_proc_carries_a_ring() {
        let shape = Shape::new(3, 8192);
        let (own, fd) = create(shape).unwrap();
        let peer = open(std::process::id(), fd.as_raw_fd(), shape).unwrap();
        drop(fd);
        let mut producer = Producer::new(SlotMemory::new(&peer, 2).unwrap());
        let mut consumer = Consumer::new(SlotMemory::new(&own, 2).unwrap());
        assert_eq!(producer.push(&[IoSlice::new(b"hello")], usize::MAX), 5);
        let mut buf = [0u8; 16];
        assert_eq!(consumer.read(&mut buf, no_remote).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert!(SlotMemory::new(&own, 3).is_none());
    }

    /// Which pages of `len` bytes from `offset` in the mapping are resident.
    fn resident(mapping: &Mapping, offset: usize, len: usize) -> Vec<bool> {
        let mut pages = vec![0u8; len.div_ceil(PAGE)];
        // SAFETY: the range is page-aligned and inside the mapping, and
        // `pages` has one byte per page of it, as mincore(2) writes.
        let rc = unsafe {
            libc::mincore(
                mapping.base.as_ptr().add(offset).cast(),
                len,
                pages.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        pages.iter().map(|page| page & 1 == 1).collect()
    }

    #[test]
    fn warming_a_ring_maps_its_first_pages_and_no_others() {
        let shape = Shape::new(2, 16 * PAGE);
        let (own, _fd) = create(shape).unwrap();
        let slot = SlotMemory::new(&own, 1).unwrap();
        let data_page = (slot.control + CONTROL_BYTES) / PAGE * PAGE;
        assert!(resident(&own, data_page, 8 * PAGE).iter().all(|&r| !r));
        slot.warm(3 * PAGE);
        let pages = resident(&own, data_page, 8 * PAGE);
        // The control block shares the first page with the data's start.
        assert_eq!(pages, [true, true, true, true, false, false, false, false]);
        // Nothing a producer or consumer wrote changed.
        assert_eq!(slot.header(0).load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn a_wrong_shape_or_a_missing_descriptor_is_refused() {
        let shape = Shape::new(2, 4096);
        let (_own, fd) = create(shape).unwrap();
        assert!(matches!(
            open(std::process::id(), fd.as_raw_fd(), Shape::new(3, 4096)),
            Err(SegmentError::Layout)
        ));
        assert!(matches!(
            open(std::process::id(), 1_000_000, shape),
            Err(SegmentError::Os { .. })
        ));
    }
}
