//! The shared-memory transport: ranks on one host move the engine's bytes
//! through per-pair rings in shared memory instead of TCP.
//!
//! # Wiring
//!
//! Before the bootstrap fence every rank makes its segment ([`segment`]:
//! one ring per local rank, `memfd`-backed, so nothing is ever left behind)
//! and a doorbell ([`doorbell`]), and puts both on its card. After the
//! fence it maps the segment of every peer in its *shared-memory domain*
//! (same kernel, network and pid namespaces, same launcher node): it writes
//! into slot `my local rank` of the peer's segment and reads slot `peer's
//! local rank` of its own. Each direction picks its transport once, at the
//! sender: a peer whose segment cannot be mapped gets TCP, so one stream
//! per direction keeps MPI's order. `MPR_TRANSPORT=tcp` turns this off.
//!
//! # Large messages
//!
//! Each rank probes at wire-up whether it may read each peer's memory
//! (`process_vm_readv` of a known word; ptrace rules may refuse). Where it
//! may, bytes the engine queues go by *single copy* in a size range (a
//! remote record in the ring: the address, which the receiver copies
//! from), and rendezvous messages go by *pull* (the engine's PULL frame:
//! the receiver copies the whole message once it matches, see
//! `engine/pull.rs`). A large pull is copied by both ranks at once when
//! the sender is polling ([`coop`]): the receiver reads chunks from the
//! front, the sender writes chunks from the back.
//!
//! # Progress and waking
//!
//! A spinning rank reads its inbound rings directly (no system call); a
//! rank about to sleep raises the *sleeping* flag in its segment, looks at
//! its rings once more, then sleeps in the poller, where its doorbell is
//! registered. A producer that published a record fences and takes that
//! flag: if it was raised, it rings the doorbell (see [`ring`] for the
//! same handshake on a full ring). The fences of these handshakes are
//! asymmetric (`fences.rs`): the sleeper pays a `membarrier`, the
//! streaming producer only a compiler fence.
//!
//! # Liveness
//!
//! Shared memory gives no end-of-file: each peer process is watched through
//! a pidfd in the poller. When it exits, its ring is drained (its GOODBYE
//! may be the last record) and, without a GOODBYE, the peer is failed. The
//! launcher's failed-rank notices arrive independently, as for TCP.

pub(crate) mod board;
mod coop;
pub(crate) mod doorbell;
mod fences;
pub(crate) mod ring;
pub(crate) mod segment;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::Rank;
use crate::bootstrap::card::{Card, SharedMemoryCard};
use crate::engine::{Engine, PeerMemory, Puller};
use doorbell::{Doorbell, Ringer};
use ring::{Consumer, InPlace, Producer, RingError, RingMemory};
use segment::{Mapping, SegmentError, Shape, SlotMemory};

/// Poller token of the doorbell.
pub(crate) const DOORBELL: Token = Token(1 << 48);
/// Poller tokens of peers' pidfds: `PIDFD_BASE + rank`.
const PIDFD_BASE: usize = (1 << 48) + 1;

/// Tunables of the shared-memory transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShmConfig {
    /// Data bytes of each ring.
    pub(crate) ring_bytes: usize,
    /// Largest record copied through the ring at once.
    pub(crate) record_bytes: usize,
    /// Pieces of at least this many bytes are copied once, by the receiver,
    /// straight from the sender's memory (`process_vm_readv`); 0: never.
    pub(crate) single_copy_min: usize,
    /// ...and of at most this many (larger ones stream through the ring,
    /// where sender and receiver copy in parallel).
    pub(crate) single_copy_max: usize,
    /// Smaller pieces of at least this many bytes also go by single copy
    /// when they are lone: the last bytes queued for the peer, with
    /// nothing in flight to it.
    pub(crate) single_copy_lone: usize,
    /// Rendezvous messages of at most this many bytes go by pull: the
    /// receiver copies them from the sender's memory once matched (0:
    /// never; needs single copy).
    pub(crate) pull_max: usize,
    /// The same for a lone message (nothing queued to its peer, no pull in
    /// flight to it).
    pub(crate) pull_max_lone: usize,
    /// Pulls of at least this many bytes are copied by both ranks at once
    /// (`usize::MAX`: never).
    pub(crate) coop_min: usize,
}

/// The word peers read to learn whether they may read this process.
static PROBE: u64 = u64::from_le_bytes(*b"mpr-cma!");

/// A rank's segment and doorbell, made before the fence.
#[derive(Debug)]
pub(crate) struct Prepared {
    mapping: Arc<Mapping>,
    fd: OwnedFd,
    doorbell: Doorbell,
    slot: u32,
    node: u32,
    config: ShmConfig,
}

impl Prepared {
    /// Makes the segment for `slots` local ranks, this rank being `slot`.
    pub(crate) fn new(
        rank: Rank,
        slot: u32,
        slots: u32,
        node: u32,
        config: ShmConfig,
    ) -> Result<Prepared, SegmentError> {
        fences::register();
        let (mapping, fd) = segment::create(Shape::new(slots, config.ring_bytes))?;
        let doorbell = Doorbell::bind(rank.0).map_err(|source| SegmentError::Os {
            what: "bind the doorbell",
            source,
        })?;
        Ok(Prepared {
            mapping,
            fd,
            doorbell,
            slot,
            node,
            config,
        })
    }

    /// The shared-memory part of this rank's card.
    pub(crate) fn card(&self) -> SharedMemoryCard {
        let shape = self.mapping.shape();
        SharedMemoryCard {
            domain: domain(),
            node: self.node,
            slot: self.slot,
            slots: shape.slots,
            capacity: shape.capacity as u64,
            fd: self.fd.as_raw_fd(),
            doorbell: self.doorbell.name().to_owned(),
            probe: &PROBE as *const u64 as u64,
        }
    }
}

/// This process's kernel and namespaces: ranks that agree on it can map
/// each other's segments and ring each other's doorbells.
pub(crate) fn domain() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let namespace = |name: &str| {
        std::fs::read_link(format!("/proc/self/ns/{name}"))
            .map(|link| link.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    format!("{}/{}/{}", boot.trim(), namespace("net"), namespace("pid"))
}

/// What happened to a lane, for the runtime to report.
#[derive(Debug)]
pub(crate) enum ShmEvent {
    /// The peer wrote something that is not a valid record stream.
    Corrupt {
        /// The peer.
        peer: Rank,
        /// What was wrong.
        error: RingError,
    },
    /// The engine rejected the peer's bytes.
    Protocol {
        /// The peer.
        peer: Rank,
        /// The violation.
        error: crate::engine::ProtocolError,
    },
    /// The peer's process exited; its ring is drained.
    Exited {
        /// The peer.
        peer: Rank,
    },
}

/// Both directions between this rank and one local peer.
#[derive(Debug)]
struct Lane {
    /// Our slot in the peer's segment, if we could map it.
    tx: Option<Producer<SlotMemory>>,
    /// The peer's segment (for its sleeping flag).
    peer_segment: Option<Arc<Mapping>>,
    /// The peer's slot in our segment.
    rx: Consumer<SlotMemory>,
    doorbell: Option<SocketAddr>,
    pidfd: Option<OwnedFd>,
    open: bool,
    /// Our ring into the peer was full at the last flush.
    tx_blocked: bool,
    /// The peer's process, whose memory remote records point into.
    memory: PeerMemory,
    /// The peer showed it can read ours, and the engine was told to offer
    /// it pulls.
    pulls_offered: bool,
    /// How the engine pulls from the peer, if this rank showed it can read
    /// the peer's memory (the peer may then send remote records and PULL
    /// frames).
    puller: Option<Arc<dyn Puller>>,
    /// Pieces taken from the engine but not yet reported transmitted, in
    /// stream order: the `remote_done` count that ends each and its bytes.
    /// A remote record ends when the peer has copied it; ring bytes pushed
    /// behind one (count 0) wait for it, since sends complete in order.
    inflight: VecDeque<(u64, usize)>,
}

/// Every shared-memory lane of one rank.
#[derive(Debug)]
pub(crate) struct Shm {
    own: Arc<Mapping>,
    /// Kept open for peers that map the segment late.
    _fd: OwnedFd,
    doorbell: Doorbell,
    ringer: Ringer,
    lanes: Vec<Option<Lane>>,
    /// Ranks with a lane, in rank order.
    peers: Vec<Rank>,
    /// Largest record written at once, so the two sides copy in parallel.
    max_record: usize,
    /// Smallest piece sent as a remote record (0: never).
    single_copy_min: usize,
    /// Largest piece sent as a remote record.
    single_copy_max: usize,
    /// Smallest lone piece sent as a remote record.
    single_copy_lone: usize,
    /// Largest rendezvous message offered for pulling (0: none).
    pull_max: usize,
    /// The same for a lone message.
    pull_max_lone: usize,
    events: Vec<ShmEvent>,
    /// A ring was full at the last flush: bytes wait for room.
    blocked: bool,
}

/// Bytes of ring memory a rank maps in at wire-up, split over its local
/// peers' rings (each side maps its own view of each ring).
const WARM_BUDGET: usize = 512 << 10;

/// Bytes at the start of each ring mapped in at wire-up on a node of
/// `slots` local ranks: the first laps of small messages then take no page
/// faults (on this VM a first touch of a page costs tens of µs: a 2-rank
/// barrier averaged 0.9-1.7 µs over OSU's 1 200 calls, 0.48 warm).
fn warm_bytes(slots: u32) -> usize {
    WARM_BUDGET / slots.saturating_sub(1).max(1) as usize
}

impl Shm {
    /// Wires the lanes to every peer that shares this rank's domain and
    /// node, given everyone's cards. Peers whose segment cannot be mapped
    /// are reported in the second value (they keep TCP for our direction).
    pub(crate) fn wire(
        rank: Rank,
        prepared: Prepared,
        cards: &[Card],
    ) -> io::Result<(Shm, Vec<(Rank, SegmentError)>)> {
        let mine = cards
            .get(rank.index())
            .and_then(|card| card.shm.clone())
            .unwrap_or_else(|| prepared.card());
        let mut lanes: Vec<Option<Lane>> = (0..cards.len()).map(|_| None).collect();
        let mut peers = Vec::new();
        let mut refused = Vec::new();
        let claimed = |slot: u32| {
            cards
                .iter()
                .filter_map(|card| card.shm.as_ref())
                .filter(|shm| {
                    shm.domain == mine.domain && shm.node == mine.node && shm.slot == slot
                })
                .count()
        };
        for (index, card) in cards.iter().enumerate() {
            let peer = Rank(index as u32);
            let Some(theirs) = &card.shm else { continue };
            let eligible = peer != rank
                && theirs.domain == mine.domain
                && theirs.node == mine.node
                && theirs.slot != mine.slot
                && theirs.slot < mine.slots
                && mine.slot < theirs.slots
                && claimed(theirs.slot) == 1;
            if !eligible {
                continue;
            }
            let Some(rx_memory) = SlotMemory::new(&prepared.mapping, theirs.slot) else {
                continue;
            };
            let warm = warm_bytes(mine.slots);
            rx_memory.warm(warm);
            let shape = Shape::new(theirs.slots, theirs.capacity as usize);
            let (tx, peer_segment) = match segment::open(card.pid, theirs.fd, shape) {
                Ok(mapping) => match SlotMemory::new(&mapping, mine.slot) {
                    Some(memory) => {
                        memory.warm(warm);
                        (Some(Producer::new(memory)), Some(mapping))
                    }
                    None => (None, None),
                },
                Err(error) => {
                    refused.push((peer, error));
                    (None, None)
                }
            };
            let pidfd = (card.pid != std::process::id())
                .then(|| {
                    rustix::process::Pid::from_raw(card.pid as i32).and_then(|pid| {
                        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
                    })
                })
                .flatten();
            lanes[index] = Some(Lane {
                tx,
                peer_segment,
                rx: Consumer::new(rx_memory),
                doorbell: doorbell::address(&theirs.doorbell).ok(),
                pidfd,
                open: true,
                tx_blocked: false,
                memory: PeerMemory::of_process(card.pid),
                pulls_offered: false,
                puller: None,
                inflight: VecDeque::new(),
            });
            if prepared.config.single_copy_min > 0 && peer_segment_mapped(&lanes[index]) {
                if let Some(lane) = &mut lanes[index] {
                    if can_read(lane.memory, theirs.probe) {
                        lane.rx.allow_remote();
                        let ring = SlotMemory::new(&prepared.mapping, theirs.slot);
                        lane.puller = Some(match ring {
                            Some(ring) => Arc::new(coop::CoopPuller::new(
                                lane.memory,
                                ring,
                                |ring| ring.control().transfer(),
                                prepared.config.coop_min,
                            )),
                            None => Arc::new(lane.memory),
                        });
                    }
                }
            }
            peers.push(peer);
        }
        let max_record = prepared
            .config
            .record_bytes
            .clamp(4096, (prepared.mapping.shape().capacity / 2).max(4096));
        Ok((
            Shm {
                own: prepared.mapping,
                _fd: prepared.fd,
                doorbell: prepared.doorbell,
                ringer: Ringer::new()?,
                lanes,
                peers,
                max_record,
                single_copy_min: prepared.config.single_copy_min,
                single_copy_max: prepared.config.single_copy_max,
                single_copy_lone: prepared.config.single_copy_lone,
                pull_max: prepared.config.pull_max,
                pull_max_lone: prepared.config.pull_max_lone,
                events: Vec::new(),
                blocked: false,
            },
            refused,
        ))
    }

    /// Registers the doorbell and the peers' pidfds with the poller.
    pub(crate) fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(self.doorbell.source(), DOORBELL, Interest::READABLE)?;
        for &peer in &self.peers {
            if let Some(Lane {
                pidfd: Some(pidfd), ..
            }) = &self.lanes[peer.index()]
            {
                registry.register(
                    &mut SourceFd(&pidfd.as_raw_fd()),
                    Token(PIDFD_BASE + peer.index()),
                    Interest::READABLE,
                )?;
            }
        }
        Ok(())
    }

    /// Tells `engine` what the lanes allow: lower eager limits (`limit`
    /// for a stream, `lone_limit` for a lone message) towards every peer
    /// this rank sends to through shared memory, and pulls from every peer
    /// whose memory this rank can read.
    pub(crate) fn configure(&self, engine: &mut Engine, limit: usize, lone_limit: usize) {
        for &peer in &self.peers {
            let Some(lane) = &self.lanes[peer.index()] else {
                continue;
            };
            if lane.tx.is_some() {
                // Expected messages too: a pull moves them in one copy.
                engine.limit_eager(peer, limit, lone_limit, lone_limit);
            }
            if let Some(puller) = &lane.puller {
                engine.pull_from(peer, Arc::clone(puller));
            }
        }
    }

    /// Whether this rank sends to `peer` through shared memory.
    pub(crate) fn routes(&self, peer: Rank) -> bool {
        matches!(
            self.lanes.get(peer.index()),
            Some(Some(Lane { tx: Some(_), .. }))
        )
    }

    /// The collective boards of this rank and of every local peer whose
    /// segment it mapped (none unless `enabled`). Says on this rank's own
    /// segment whether it mapped every rank of the `size` ([`Boards::agreed`]
    /// then tells the world's ranks whether all could), and whether it can
    /// also read the memory of every rank (if `direct`: large operands are
    /// then copied straight between the processes, `collective/direct.rs`).
    ///
    /// [`Boards::agreed`]: board::Boards::agreed
    pub(crate) fn boards(
        &self,
        rank: Rank,
        size: u32,
        enabled: bool,
        direct: bool,
    ) -> Option<board::HostBoards> {
        let ringer = Ringer::new().ok().filter(|_| enabled);
        let lane = |peer: u32| self.lanes.get(peer as usize).and_then(Option::as_ref);
        let segments: Vec<_> = (0..size)
            .map(|peer| {
                if peer == rank.0 {
                    return Some(Arc::clone(&self.own));
                }
                lane(peer)
                    .filter(|lane| lane.open)
                    .and_then(|lane| lane.peer_segment.clone())
            })
            .collect();
        // A lane with a puller passed the probe: this rank read the peer.
        let memory: Vec<_> = (0..size)
            .map(|peer| {
                if peer == rank.0 {
                    return Some(PeerMemory::of_process(std::process::id()));
                }
                lane(peer)
                    .filter(|lane| lane.puller.is_some())
                    .map(|lane| lane.memory)
            })
            .map(|memory| memory.filter(|_| direct))
            .collect();
        let complete = ringer.is_some() && segments.iter().all(Option::is_some);
        let state = match (complete, memory.iter().all(Option::is_some)) {
            (true, true) => segment::BOARDS_DIRECT,
            (true, false) => segment::BOARDS_COMPLETE,
            (false, _) => segment::BOARDS_INCOMPLETE,
        };
        self.own.board_state().store(state, Ordering::Release);
        let doorbells = (0..size)
            .map(|peer| lane(peer).and_then(|lane| lane.doorbell.clone()))
            .collect();
        Some(board::HostBoards::new(
            rank.index(),
            segments,
            doorbells,
            ringer?,
            memory,
        ))
    }

    /// Peers with a lane.
    pub(crate) fn peers(&self) -> &[Rank] {
        &self.peers
    }

    /// Events since the last call.
    pub(crate) fn take_events(&mut self) -> Vec<ShmEvent> {
        std::mem::take(&mut self.events)
    }

    /// Writes what the engine queued for peers routed here, as far as the
    /// rings have room, and rings the doorbells of peers that sleep.
    pub(crate) fn flush(&mut self, engine: &mut Engine) {
        self.blocked = false;
        for index in 0..self.peers.len() {
            let peer = self.peers[index];
            let Some(lane) = self.lanes[peer.index()].as_mut() else {
                continue;
            };
            if !lane.open {
                continue;
            }
            if let (false, Some(tx)) = (lane.inflight.is_empty(), lane.tx.as_ref()) {
                // Confirm, in order, what the peer has finished copying.
                let copied = tx.remote_done();
                while let Some(&(done_at, len)) = lane.inflight.front() {
                    if copied < done_at {
                        // The peer still copies: poll again (a sleeping
                        // caller is woken when it finishes).
                        self.blocked = true;
                        break;
                    }
                    lane.inflight.pop_front();
                    engine.transmitted(peer, len);
                }
            }
            if !lane.pulls_offered && self.pull_max > 0 {
                if let Some(tx) = &lane.tx {
                    if tx.remote_allowed() {
                        lane.pulls_offered = true;
                        engine.offer_pulls(peer, self.pull_max, self.pull_max_lone);
                    }
                }
            }
            if !engine.wants_transmit(peer) {
                continue;
            }
            let (Some(tx), true) = (lane.tx.as_mut(), lane.open) else {
                continue;
            };
            let single_copy = self.single_copy_min > 0 && tx.remote_allowed();
            let (min, max) = (self.single_copy_min, self.single_copy_max);
            let lone_min = self.single_copy_lone;
            // `lone`: the piece is the last one queued and nothing is in
            // flight, so no stream would wait behind its single copy.
            let by_single_copy = |len: usize, lone: bool| {
                single_copy
                    && ((min..=max).contains(&len) || (lone && len >= lone_min && len < min))
            };
            let mut wrote = false;
            lane.tx_blocked = false;
            loop {
                let mut slices = crate::engine::Slices::new();
                engine.transmit_slices(peer, &mut slices, MAX_OFFER);
                let Some(first) = slices.first() else {
                    break;
                };
                let idle = lane.inflight.is_empty();
                let last = slices.len() - 1;
                if by_single_copy(first.len(), idle && last == 0) {
                    let remote = lane.inflight.iter().filter(|(done_at, _)| *done_at > 0);
                    if remote.count() >= MAX_REMOTE_INFLIGHT {
                        self.blocked = true;
                        break;
                    }
                    let (addr, len) = (first.as_ptr() as u64, first.len());
                    drop(slices);
                    match tx.push_remote(addr, len as u64) {
                        Some(done_at) => {
                            engine.offered(peer, len);
                            lane.inflight.push_back((done_at, len));
                            wrote = true;
                            self.blocked = true;
                            continue;
                        }
                        None => {
                            lane.tx_blocked = true;
                            self.blocked = true;
                        }
                    }
                    break;
                }
                // Copy up to the next piece that goes by single copy.
                let cut = (0..slices.len())
                    .position(|i| by_single_copy(slices[i].len(), idle && i == last));
                if let Some(cut) = cut {
                    slices.truncate(cut);
                }
                let n = tx.push(&slices, self.max_record);
                drop(slices);
                if n == 0 {
                    // Full: a spinning caller flushes again on its next
                    // poll; one about to sleep asks for a wake-up then.
                    lane.tx_blocked = true;
                    self.blocked = true;
                    break;
                }
                if lane.inflight.is_empty() {
                    engine.transmitted(peer, n);
                } else {
                    engine.offered(peer, n);
                    lane.inflight.push_back((0, n));
                }
                wrote = true;
            }
            if wrote {
                fences::light();
                if let (Some(segment), Some(address)) = (&lane.peer_segment, &lane.doorbell) {
                    wake_if_sleeping(segment, &self.ringer, address);
                }
            }
        }
    }

    /// Whether a record of `len` bytes can go to `peer` at once: its lane
    /// is open, nothing is in flight on it, and its ring has the room.
    pub(crate) fn fits(&mut self, peer: Rank, len: usize) -> bool {
        match self.lanes.get_mut(peer.index()) {
            Some(Some(lane)) if lane.open && lane.inflight.is_empty() => {
                lane.tx.as_mut().is_some_and(|tx| tx.fits(len))
            }
            _ => false,
        }
    }

    /// Writes one frame to `peer` as one record, which [`Shm::fits`] said
    /// it may, and rings the peer's doorbell if it sleeps.
    pub(crate) fn write_inline(&mut self, peer: Rank, header: &[u8], payload: &[u8]) {
        let Some(Some(lane)) = self.lanes.get_mut(peer.index()) else {
            return;
        };
        let Some(tx) = lane.tx.as_mut() else {
            return;
        };
        let frame = [io::IoSlice::new(header), io::IoSlice::new(payload)];
        let written = tx.push(&frame, usize::MAX);
        debug_assert_eq!(written, header.len() + payload.len(), "fits() was asked");
        fences::light();
        if let (Some(segment), Some(address)) = (&lane.peer_segment, &lane.doorbell) {
            wake_if_sleeping(segment, &self.ringer, address);
        }
    }

    /// Whether bytes wait for room in a full ring (flush again).
    pub(crate) fn blocked(&self) -> bool {
        self.blocked
    }

    /// Reads every inbound ring into the engine; true if any byte came.
    /// First helps every peer that copies a large pulled message of this
    /// rank (see `coop.rs`).
    pub(crate) fn poll(&mut self, engine: &mut Engine) -> bool {
        let mut any = false;
        for index in 0..self.peers.len() {
            let peer = self.peers[index];
            if let Some(Lane {
                tx: Some(tx),
                open: true,
                memory,
                ..
            }) = &self.lanes[peer.index()]
            {
                if engine.awaits_pull(peer) {
                    any |= coop::help(tx.transfer(), *memory, |id| engine.pulled_send(peer, id));
                }
            }
        }
        for index in 0..self.peers.len() {
            let peer = self.peers[index];
            any |= self.read_lane(engine, peer);
        }
        any
    }

    /// Reads one peer's ring dry; true if any byte came.
    fn read_lane(&mut self, engine: &mut Engine, peer: Rank) -> bool {
        let Some(lane) = self.lanes[peer.index()].as_mut() else {
            return false;
        };
        if !lane.open || !lane.rx.has_data() {
            return false;
        }
        let mut any = false;
        let memory = lane.memory;
        loop {
            // Bytes records of IN_PLACE_MIN bytes or more are parsed where
            // they lie in the ring (an eager payload is copied once, into
            // the posted buffer); short and remote records are copied into
            // the engine's receive target.
            let in_place = lane
                .rx
                .read_in_place(IN_PLACE_MIN, |bytes| engine.received_from(peer, bytes));
            let outcome = match in_place {
                Ok(Ok(InPlace::Empty)) => break,
                Ok(Ok(InPlace::Read(_))) => Ok(()),
                Ok(Ok(InPlace::Copy)) => {
                    let target = engine.recv_target(peer);
                    match lane.rx.read(target, |addr, dst| memory.read(addr, dst)) {
                        Ok(n) => engine.received(peer, n).map_err(Some),
                        Err(error) => {
                            self.events.push(ShmEvent::Corrupt { peer, error });
                            Err(None)
                        }
                    }
                }
                Ok(Err(error)) => Err(Some(error)),
                Err(error) => {
                    self.events.push(ShmEvent::Corrupt { peer, error });
                    Err(None)
                }
            };
            any = true;
            if let Err(protocol) = outcome {
                if let Some(error) = protocol {
                    self.events.push(ShmEvent::Protocol { peer, error });
                }
                lane.open = false;
                engine.peer_failed(peer);
                return true;
            }
        }
        if lane.rx.take_space_wanted() {
            if let Some(address) = &lane.doorbell {
                self.ringer.ring(address);
            }
        }
        if lane.rx.take_remote_finished() {
            // The producer may sleep until its bytes are copied.
            if let (Some(segment), Some(address)) = (&lane.peer_segment, &lane.doorbell) {
                wake_if_sleeping(segment, &self.ringer, address);
            }
        }
        any
    }

    /// Raises the sleeping flag (and, on full rings, the producer's
    /// space-wanted flag) unless data or room already waits: true if the
    /// caller may sleep in the poller (then call [`Shm::woke`] after).
    pub(crate) fn prepare_sleep(&mut self) -> bool {
        let sleeping = self.own.sleeping();
        sleeping.store(1, Ordering::SeqCst);
        for lane in self.lanes.iter().flatten() {
            if let (true, Some(tx)) = (lane.tx_blocked, &lane.tx) {
                tx.raise_space_wanted();
            }
        }
        fences::heavy();
        let data = self.lanes.iter_mut().flatten().any(|lane| {
            let room = lane.tx_blocked && lane.tx.as_mut().is_some_and(Producer::has_room);
            let copied = match (lane.inflight.front(), &lane.tx) {
                (Some(&(done_at, _)), Some(tx)) => tx.remote_done() >= done_at,
                _ => false,
            };
            lane.open && (room || copied || lane.rx.has_data())
        });
        if data {
            sleeping.store(0, Ordering::Relaxed);
        }
        !data
    }

    /// Lowers the sleeping flag and swallows the doorbell's rings.
    pub(crate) fn woke(&mut self) {
        self.own.sleeping().store(0, Ordering::Relaxed);
        self.doorbell.drain();
    }

    /// Handles a poller event of this transport: a peer's process exited
    /// (its ring is drained first, and [`ShmEvent::Exited`] reported).
    pub(crate) fn on_token(&mut self, engine: &mut Engine, registry: &Registry, token: Token) {
        if token == DOORBELL {
            self.doorbell.drain();
            return;
        }
        let Some(index) = token.0.checked_sub(PIDFD_BASE) else {
            return;
        };
        let peer = Rank(index as u32);
        let Some(lane) = self.lanes.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if let Some(pidfd) = lane.pidfd.take() {
            let _ = registry.deregister(&mut SourceFd(&pidfd.as_raw_fd()));
        }
        self.read_lane(engine, peer);
        self.events.push(ShmEvent::Exited { peer });
    }

    /// Stops using the lane to `peer` (it failed or left).
    pub(crate) fn close(&mut self, peer: Rank) {
        if let Some(Some(lane)) = self.lanes.get_mut(peer.index()) {
            lane.open = false;
            lane.inflight.clear();
        }
    }
}

/// Records at least this long are parsed where they lie in the ring;
/// shorter ones are copied to the engine first (measured: 8-byte latency
/// 0.37 us copied vs 0.40-0.42 in place; 4 KiB 1.16 vs 1.10, 16 KiB 3.16
/// vs 2.98 in place).
const IN_PLACE_MIN: usize = 1024;

/// Remote records a lane keeps in flight: the receiver copies one while
/// the next ones are announced (one at a time, a stream of single-copy
/// messages waited a round trip per message).
const MAX_REMOTE_INFLIGHT: usize = 8;

/// Most bytes asked of the engine at once (single-copy pieces can be large).
const MAX_OFFER: usize = 1 << 30;

/// Rings the doorbell of the rank owning `segment` if it said it sleeps
/// (taking the flag, so one ring per sleep).
fn wake_if_sleeping(segment: &Mapping, ringer: &Ringer, address: &SocketAddr) {
    let sleeping = segment.sleeping();
    if sleeping.load(Ordering::Relaxed) == 1 && sleeping.swap(0, Ordering::AcqRel) == 1 {
        ringer.ring(address);
    }
}

fn peer_segment_mapped(lane: &Option<Lane>) -> bool {
    lane.as_ref()
        .is_some_and(|lane| lane.peer_segment.is_some())
}

/// Whether this process may read `memory`: reads its probe word.
fn can_read(memory: PeerMemory, probe: u64) -> bool {
    let mut word = [0u8; 8];
    memory.read(probe, &mut word).is_ok() && u64::from_le_bytes(word) == PROBE
}

/// Wires the shared-memory lanes of `rank` and hooks them into the TCP
/// transport's poller; `None` when no peer shares this host (or the
/// transport cannot start: then TCP carries everything, after a notice).
pub(crate) fn attach(
    rank: Rank,
    prepared: Prepared,
    cards: &[Card],
    tcp: &mut crate::transport::tcp::Tcp,
) -> Option<Shm> {
    let (mut shm, refused) = match Shm::wire(rank, prepared, cards) {
        Ok(wired) => wired,
        Err(error) => {
            eprintln!("mpr: rank {rank}: shared memory unavailable, using TCP: {error}");
            return None;
        }
    };
    for (peer, error) in refused {
        eprintln!(
            "mpr: rank {rank}: cannot map rank {peer}'s shared memory, using TCP to it: {error}"
        );
    }
    if shm.peers().is_empty() {
        return None;
    }
    if let Err(error) = shm.register(tcp.registry()) {
        eprintln!("mpr: rank {rank}: shared memory unavailable, using TCP: {error}");
        return None;
    }
    for index in 0..shm.peers().len() {
        let peer = shm.peers()[index];
        if shm.routes(peer) {
            tcp.route_elsewhere(peer);
        }
    }
    Some(shm)
}
