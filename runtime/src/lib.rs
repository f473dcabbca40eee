//! mpr: a pure-Rust, MPI-style SPMD runtime.
//!
//! A job is N copies of one program, the *ranks*, started by the `mprun`
//! launcher (`mprun -n 4 ./my-program`). Every rank calls [`init`], gets
//! the [`Universe`], and talks to the others through communicators
//! ([`Comm`]): point-to-point messages matched MPI's way, and collectives.
//! Dropping the universe finalizes. A program started without `mprun` is a
//! *singleton*, a world of one rank; [`local::run`] runs N ranks as threads
//! of one process, for unit tests.
//!
//! ```
//! let universe = mpr::init()?;
//! let world = universe.world();
//! let (rank, size) = (world.rank(), world.size());
//! // Pass a token around the ring (a world of one sends to itself).
//! let mut token = [0u64];
//! if rank == 0 {
//!     world.send(&[42u64], (rank + 1) % size, 0)?;
//!     world.recv(&mut token, (rank + size - 1) % size, 0)?;
//! } else {
//!     world.recv(&mut token, rank - 1, 0)?;
//!     world.send(&token, (rank + 1) % size, 0)?;
//! }
//! assert_eq!(token, [42]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Point-to-point
//!
//! Messages match on (communicator, source, tag); receives may use the
//! wildcards [`ANY_SOURCE`] and [`ANY_TAG`]; messages from one sender on one
//! communicator are received in the order they were sent (non-overtaking),
//! whatever their size. A receive reports a [`Status`] (sender, tag,
//! length); a message longer than the receive buffer is an
//! [`Error::Truncated`] naming both lengths. [`PROC_NULL`] is the rank that
//! is no rank: operations with it complete at once.
//!
//! Two data tiers, as in mpi4py:
//! - slices of plain-old-data (`T: bytemuck::Pod`, re-exported as
//!   [`bytemuck`]): [`Comm::send`], [`Comm::recv`], [`Comm::ssend`]
//!   (synchronous), [`Comm::sendrecv`], and the non-blocking
//!   [`Comm::isend`] / [`Comm::irecv`] / [`Comm::issend`] on owned vectors,
//!   or [`Scope::isend`] / [`Scope::irecv`] on borrowed slices inside
//!   [`Comm::scope`]. They move the bytes themselves: no serialization, and
//!   large messages go straight from the sender's slice into the posted
//!   receive buffer;
//! - any `serde` value as an object: [`Comm::send_obj`] / [`Comm::recv_obj`]
//!   (postcard encoding).
//!
//! Requests complete with [`Request::wait`] / [`Request::test`], or over a
//! set with [`wait_all`], [`wait_any`], [`wait_some`], [`test_all`],
//! [`test_any`]. They are sound under `mem::forget`: an owned buffer leaks
//! with its request, and a scope waits for its requests when it ends.
//! [`Comm::probe`], [`Comm::iprobe`] and the matched probes
//! [`Comm::mprobe`] / [`Comm::improbe`] (the thread-safe way to receive a
//! message of unknown size) complete the set.
//!
//! # How messages move
//!
//! Messages up to the eager limit are sent at once and buffered by the
//! receiver if no receive is posted yet; larger ones use a rendezvous
//! (ready-to-send, clear-to-send, then the data straight into the user's
//! buffer). Per-peer credits bound what a receiver can be made to buffer:
//! past them senders fall back to rendezvous, so a flood of unexpected
//! messages cannot exhaust memory.
//!
//! Two transports carry the bytes, one per direction of each pair, chosen
//! at wire-up:
//! - **shared memory** between ranks on the same host (same launcher node,
//!   same kernel and network namespace): each rank makes an anonymous
//!   `memfd` segment holding one single-producer/single-consumer ring per
//!   local peer, and its peers map it through `/proc/<pid>/fd`. Small
//!   messages cross in one cache line; from 32 KiB to 1 MiB the receiver
//!   copies the payload once, straight from the sender's memory
//!   (`process_vm_readv`); larger ones stream through the ring, sender and
//!   receiver copying in parallel. Nothing is ever
//!   left in `/dev/shm`: the memory goes away with the last process that
//!   maps it, `kill -9` included. A dead peer gives no end-of-file here, so
//!   each rank watches its local peers' processes (pidfds) and fails the
//!   operations of one that exits without saying goodbye, within
//!   milliseconds. `MPR_TRANSPORT=tcp` turns shared memory off;
//! - **TCP** to every other rank, connected lazily, one connection per
//!   pair, each proving the job secret first.
//!
//! The calling thread drives progress: a waiting call polls for a while
//! (reading the shared-memory rings without a system call, yielding the
//! core when the host has more ranks than cores), then sleeps in the
//! poller, where peers ring its doorbell (an abstract unix socket) if it
//! said it sleeps. `Comm` is `Send + Sync`.
//!
//! # Collectives on one host
//!
//! When every rank of the job shares one host's memory, collectives skip
//! messages: each rank's segment also holds *collective boards*, a page of
//! counters and two 64 KiB buffers that only the owner writes and every
//! local peer reads. Barrier, bcast, scatter, gather, reduce, allreduce,
//! allgather and alltoall publish
//! their operands there (up to `MPR_SHM_BOARD_MAX`), or above that publish
//! the addresses of their buffers and copy straight between the processes
//! (`MPR_SHM_DIRECT_MIN`). Board 0 serves the world (when the whole job
//! is on one host); seven more serve the communicators made with `dup`
//! and `split` whose ranks share one host, in any job: a new communicator
//! takes the lowest board free on all its members (they agree while it is
//! made), and gives it back when dropped, once its peers are done with its
//! last call. [`Comm::split_shared`] makes the communicator of one host's
//! ranks, the first level of a two-level algorithm. Beyond seven alive at
//! once, and across hosts, collectives go by the message schedules of
//! [`mpr-collectives`](mpr_collectives). Both ways give the same results,
//! in rank order for non-commutative operations.
//!
//! # Errors
//!
//! Every operation returns `Result<_, `[`Error`]`>`. In a job launched by
//! `mprun` the default policy is MPI's *errors are fatal*: an error aborts
//! the whole job, printing its cause ([`ErrorMode::Abort`]). With
//! `MPR_ERRORS=return`, or [`Universe::set_error_mode`], errors are handed
//! back instead ([`ErrorMode::Return`], the default of singletons and
//! [`local::run`]). A peer that dies fails every pending operation that
//! involves it with [`Error::PeerFailed`] naming its rank, within
//! milliseconds (its links close, or the launcher says so): nothing hangs.
//! A panic in any rank of a launched job aborts the job with the panic
//! message; [`Comm::abort`] and [`Universe::abort`] abort it on purpose.
//!
//! # Environment
//!
//! The launcher gives every rank the job contract:
//!
//! | variable | meaning |
//! |---|---|
//! | `MPR_RANK`, `MPR_SIZE` | world rank and size |
//! | `MPR_LOCAL_RANK`, `MPR_LOCAL_SIZE`, `MPR_NODE` | placement on its host ([`Universe::placement`]) |
//! | `MPR_JOB` | job id, unique per launch |
//! | `MPR_BOOTSTRAP` | `host:port` of the bootstrap server (`mprun`, or the per-host daemon of a multi-host job) |
//! | `MPR_SECRET` | per-job secret every connection proves |
//! | `MPR_MULTI_HOST` | `1` when the job's ranks run on several hosts: the data plane then publishes this host's non-loopback addresses (those of `MPR_INTERFACE`, which a per-host daemon sets to the address its host reaches `mprun` from unless the user chose one) instead of loopback |
//! | `MPR_INTERFACE` | set by `mprun --interface NAME\|CIDR` (or by hand): the interface, by name (`eth1`) or network (`10.1.0.0/16`), whose addresses the data plane listens on and publishes |
//!
//! Tunables (all ranks of a job must agree; `mprun` passes its environment
//! on, and `-x VAR=VALUE` sets one for every rank):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `MPR_EAGER_LIMIT` | `64k` | largest message sent eagerly (bytes; `k`, `m`, `g` suffixes) |
//! | `MPR_EAGER_LIMIT_LONE` | `256k`; for sending, `64k` when the host has more ranks than cores | the same for a *lone* message, one that finds nothing queued or in flight to its peer (a ping-pong, one step of a collective): it skips the rendezvous round trip, while a stream keeps `MPR_EAGER_LIMIT`. At least `MPR_EAGER_LIMIT`. When set it must be the same on every host |
//! | `MPR_EAGER_LIMIT_EXPECTED` | `1m` | the same for a message of a rooted collective (bcast, scatter, gather, reduce; alltoall up to 4 ranks) whose receiver posts its receive as it enters the call and so most likely waits for it already: it lands in place without the rendezvous round trip, which costs a context switch per hop on shared cores. Over shared memory the lone limit applies instead (a pull moves it in one copy). At least `MPR_EAGER_LIMIT_LONE`. Receivers accept eager messages up to this size, so when set it must be the same on every host |
//! | `MPR_CREDIT_WINDOW` | `4m` | bytes a peer may make this rank buffer (raised to at least 4 × (`MPR_EAGER_LIMIT_EXPECTED` + 64)) |
//! | `MPR_SPIN_US` | `1000`, or `50` when the host has more ranks than cores | microseconds a waiting call polls (yielding the core between polls when oversubscribed) before it sleeps in the poller |
//! | `MPR_SOCKET_BUFFER` | `4m` | `SO_SNDBUF`/`SO_RCVBUF` of data sockets; `0` keeps the kernel's autotuning |
//! | `MPR_TCP_CONGESTION` | `cubic,reno` | congestion control of data sockets: the first of these names (separated by commas) the kernel lets the rank set, else the kernel's default; `kernel` keeps the default. Not the default because a kernel defaulting to BBR keeps a link's window near the bandwidth of its smallest round trip, microseconds on loopback, and bursts of a megabyte then wait for acknowledgements from descheduled receivers (measured: 4-rank alltoall of 1 MiB blocks 1.5× faster with cubic) |
//! | `MPR_ERRORS` | `abort` when launched, else `return` | error policy, see above |
//! | `MPR_ASYNC_PROGRESS` | off | `1`: a progress thread moves data while user threads compute |
//! | `MPR_TRANSPORT` | `auto` | `tcp`: no shared memory, every pair over TCP (for comparison); a rank with `tcp` is reached over TCP by everyone |
//! | `MPR_BIND_TO` | `auto` | `core`: bind local rank *i* to the *i*-th CPU it may run on (with more ranks than CPUs, to CPU *i* mod CPUs: every CPU runs as many ranks, which keeps oversubscribed timings steady); `none`; `auto` binds only when the host has no more ranks than CPUs (Open MPI's default). Set by `mprun --bind-to` |
//! | `MPR_REPORT_BINDINGS` | off | `1`: each rank prints its binding to stderr at `init` (`mprun --report-bindings`) |
//! | `MPR_SHM_EAGER_LIMIT` | `16k` | largest message sent eagerly to a rank on the same host (at most `MPR_EAGER_LIMIT`): larger ones take a rendezvous and a single copy |
//! | `MPR_SHM_EAGER_LIMIT_LONE` | `64k` | the same for a *lone* message, one that finds nothing queued or in flight to its peer (a ping-pong, one step of a collective): it skips the rendezvous round trip, which on shared cores costs a context switch per hop, and its payload still goes by single copy. At least `MPR_SHM_EAGER_LIMIT`, at most `MPR_EAGER_LIMIT_LONE` |
//! | `MPR_SHM_SINGLE_COPY`, `MPR_SHM_SINGLE_COPY_MAX` | `32k`, `512k` | payloads in this range are copied once, by the receiver, from the sender's memory (`process_vm_readv`); others stream through the ring (two copies, in parallel). `0` turns single copy off; it is also off where the kernel refuses it (ptrace restrictions). A collective's sends from memory its schedule writes again (recursive-doubling allreduce, for one) always stream through the ring: read in place, their cache lines would have to be taken back from the reader before each write |
//! | `MPR_SHM_SINGLE_COPY_LONE` | `16k` | a smaller payload from this size on is also copied once when it is *lone*: the last bytes queued for its peer with nothing in flight to it (a ping-pong, one step of a collective). A stream of such messages keeps the ring, where both sides copy in parallel. At or above `MPR_SHM_SINGLE_COPY` it changes nothing |
//! | `MPR_SHM_PULL_MAX`, `MPR_SHM_PULL_MAX_LONE` | no limit; `512k`, `512k` when the host has more ranks than cores | a rendezvous message to a rank on the same host of at most this size (the second for a *lone* one, with nothing queued or being pulled towards its peer) is *pulled*: its announcement carries the address of the sender's buffer, and the receiver copies it from there as soon as it matches (`process_vm_readv`), with no clear-to-send round trip. Larger ones take the ring, except a collective's messages, whose receivers copy in parallel: those are pulled at any size, unless they converge on one rank (a linear gather's root). `0` turns pulls off; they also need single copy (`MPR_SHM_SINGLE_COPY` not `0`) |
//! | `MPR_SHM_COOP_MIN` | `256k`; off when the host has more ranks than cores | a pull of at least this size is copied by both ranks at once: the receiver reads 64 KiB chunks from the front while the sender, if it is waiting in a call of its own, writes chunks from the back (`process_vm_writev`), so two cores share the one copy. `0` turns it off |
//! | `MPR_SHM_BOARD_MAX` | `64k`; `1k` when the host runs two ranks or fewer (gather and reduce: `4k`, alltoall: `8k`) | barrier, and gather, reduce, allreduce, allgather and alltoall of the world communicator when every rank of the job shares this host's memory, and of the communicators made with `dup`, `split` or `split_shared` whose ranks share one host (up to 7 alive at once: each takes one of the segment's spare boards, see *Collectives on one host* above), whose operand (gather, allgather: block; alltoall: whole send buffer; reduce: operand, above the limit by messages once the root has said so) is at most this size (at most 64 KiB), run on the *collective boards*: each rank publishes its operand in its own shared segment with one store and reads the others' there, with no messages. Larger operands, communicators beyond the spare boards and forced algorithms (`MPR_COLL_<NAME>`) use messages. Ranks whose arguments are wrong or disagree fail the call (those that can tell) instead of waiting, also across the limit. The limit must be the same on every rank. `0` turns the boards off (for barrier and bcast too) |
//! | `MPR_SHM_BOARD_BCAST_MAX` | `32k`; `4k` when the host runs two ranks or fewer | the same limit for bcast, whose root copies its buffer onto its board once and every other rank copies it out at once, and for scatter (the root's whole send buffer; each rank copies its block out) (at most 64 KiB, the board's size) |
//! | `MPR_SHM_DIRECT_MIN` | `1` (every operand above the board limits; scatter up to a 256 KiB send buffer; reduce from 512 KiB on ranks bound to cores, never on unbound ones); when the host runs two ranks or fewer: bcast and scatter of 8 KiB–128 KiB, gather, allgather and alltoall from 8 KiB, allreduce and reduce never (messages win there) | when the boards are on and every rank can read and write every other's memory (`process_vm_readv`, `process_vm_writev`; the kernel's ptrace rules decide), bcast, scatter, gather, reduce, allreduce, allgather and alltoall of a communicator on the boards whose operand is above the board limit and at least this size copy straight between the processes: each rank publishes the addresses of its buffers on its board, and its peers copy from (gather: into) them, each byte once, without messages; allreduce reduces one slice per rank in rank order, then every rank copies the others' slices; reduce (from three ranks on) cuts the operand into 64 KiB pieces that the ranks claim in turn, each reducing its piece of every operand in rank order into the root's result. A rank whose buffers are exposed leaves only when its peers are done with them. Set, it applies to all seven collectives (with no upper bound); `0` sends these operands by messages. Ranks whose limits differ fall back to messages for symmetric collectives, and follow the root's choice for rooted ones |
//! | `MPR_SHM_RECORD` | `32k` | largest piece copied through a ring at once (smaller pieces let sender and receiver copy in parallel) |
//! | `MPR_SHM_RING` | `256k` | data bytes of each shared-memory ring (rounded up to pages; one ring per pair of local ranks, allocated as touched) |
//!
//! # Bootstrap
//!
//! [`init`] connects to `MPR_BOOTSTRAP`, registers with the job secret,
//! publishes a business card (its host and data-plane addresses) at a fence,
//! and receives everyone's card; dropping the [`Universe`] says goodbye to
//! every peer and reports *finalize* to the launcher. The wire format is in
//! [`bootstrap`].

mod binding;
pub mod bootstrap;
mod buffer;
mod collective;
mod comm;
#[doc(hidden)]
pub mod engine;
pub mod env;
mod error;
pub mod local;
mod p2p;
mod request;
mod runtime;
mod split;
mod transport;
mod tuning;
mod types;
mod universe;
mod vector_op;

pub use bytemuck;
pub use comm::{ANY_SOURCE, ANY_TAG, Comm, PROC_NULL, Source, Status, TagMatch};
pub use error::{Argument, Error};
pub use mpr_collectives::{Algorithm, Collective, op};
pub use p2p::{Message, Scope};
pub use request::{
    RecvRequest, Request, ScopedRequest, SendRequest, test_all, test_any, wait_all, wait_any,
    wait_some,
};
pub use tuning::ErrorMode;
pub use types::{ContextId, Rank, Tag};
pub use universe::{InitError, Placement, Universe, init};

/// Seconds since an arbitrary fixed point in the past, as a float
/// (`MPI_Wtime`): subtract two readings to time a section.
pub fn wtime() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}
