//! AF_XDP workers: thin loops that move frames between the NICs and [`Core::process`].
//!
//! - One *worker* per (interface, RX queue): its AF_XDP socket, its [`Core`] and its counters.
//!   Worker threads run the workers ([`Threads`]): by default one thread per RX queue number
//!   serves that queue of every interface, so a frame forwarded from queue q of one interface to
//!   queue q of another never leaves its thread; or one thread per worker.
//! - One UMEM shared by every socket of every interface, so a frame received on one interface
//!   is transmitted on another without a copy: the worker that received it hands the frame
//!   descriptor to the worker owning the egress (interface, queue) through a lock-free
//!   [`ArrayQueue`] (its *inbox*), and wakes that worker's thread with an eventfd once per
//!   batch if it is another thread.
//! - Every frame has a *home* worker (the UMEM is cut into one equal range per worker). A worker
//!   recycles completed or dropped frames of its own into its fill ring and sends other
//!   workers' frames home through their *returns* queue; no frame is ever lost or shared.
//! - Batched RX/TX (64 frames), `need_wakeup`, TX kicked with `sendto` until the ring drains
//!   (copy-mode TX progresses only inside `sendto`, 32 frames per call), no allocation and no
//!   syscall per packet; the snapshot is loaded once per batch.
//! - Each worker's connection events go to its [`Outbox`] ([`WorkerHandle::events`]), produced
//!   only while [`WorkerHandle::set_listening`] is on (read once per round); connections and
//!   templates from outside reach a worker through its *inject* queue
//!   ([`WorkerHandle::inject`]), inserted by its own core.
//! - An idle thread sleeps in `poll` until a frame arrives, its eventfd is written (a frame
//!   handed over, an inject, a stop), its workers' next expiry deadline
//!   ([`Core::poll_timeout`]) or the next `XDP_STATISTICS` read (1 s); 1 ms while TX
//!   completions are outstanding.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use crossbeam::queue::ArrayQueue;
use xsk_rs::config::{BindFlags, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use crate::bond::PortId;
use crate::core::conn::Tables;
use crate::core::events::Outbox;
use crate::core::inject::{Inserted, Spec};
use crate::core::offload::OffloadRequest;
use crate::core::service::{IfaceId, Snapshot};
use crate::core::wheel::tick_ceil;
use crate::core::{Core, CoreStats, DropReason, Instant, Verdict, service, stats};
use crate::offload_map::{self, OffloadMap};

/// Frames per RX/TX batch.
pub const BATCH: usize = 64;

/// Most entries from outside a worker inserts per round (the rest wait for the next).
pub const INJECT_BUDGET: usize = 256;

/// Sizes of the AF_XDP rings and the UMEM, and how threads run the workers.
#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// Frames owned by each worker (power of two).
    pub frames_per_worker: u32,
    /// UMEM frame size (power of two, ≥ 2048).
    pub frame_size: u32,
    /// RX, TX, fill and completion ring sizes (power of two).
    pub ring_size: u32,
    pub threads: Threads,
    /// Connection events each worker's [`Outbox`] holds before dropping them.
    pub events: usize,
    /// Entries from outside each worker's inject queue holds before refusing them.
    pub inject: usize,
    /// IPVS `sync_threshold`: a connection's events at its `.0`-th client packet, then
    /// every `.1`-th ([`Outbox::with_sync`]).
    pub sync_threshold: (u32, u32),
    /// Sockets (RX queues) that ports added at run time may take ([`Hotplug::add_port`]):
    /// each has its `frames_per_worker` frames in the UMEM from the start.
    pub spare_sockets: u32,
    /// Half-open (SYN_RECV) connections each worker keeps per address family before the
    /// oldest makes room ([`Core::set_syn_recv_cap`]; 0: no bound but the table's).
    pub syn_recv_per_worker: usize,
    /// The XDP program's `OFFLOAD` map (a descriptor the caller keeps open): established
    /// connections are offloaded to it ([`crate::core::offload`]). None: off.
    pub offload_map: Option<RawFd>,
    /// Adaptive polling: after a round that did work, a thread keeps looking at its rings
    /// for this long before it sleeps in `poll` (zero: it sleeps at once). A frame that
    /// arrives meanwhile costs no wakeup (`xlvsd --poll-spin-us`).
    pub poll_spin: std::time::Duration,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            frames_per_worker: 4096,
            frame_size: 4096,
            ring_size: 2048,
            threads: Threads::default(),
            events: 8192,
            inject: 4096,
            sync_threshold: (Outbox::SYNC_THRESHOLD, Outbox::SYNC_PERIOD),
            spare_sockets: 2,
            syn_recv_per_worker: 0,
            offload_map: None,
            poll_spin: std::time::Duration::ZERO,
        }
    }
}

/// Which workers (sockets) share a thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Threads {
    /// One thread per RX queue number, running that queue's worker on every interface: a frame
    /// that changes interface but keeps its queue number stays in its thread (no hand-off
    /// wakeup, no context switch). For directors with as many cores as queues.
    #[default]
    PerQueue,
    /// One thread per (interface, RX queue): twice the threads of `PerQueue` with two
    /// interfaces; every frame that changes interface wakes another thread.
    PerSocket,
}

impl Threads {
    /// The thread number of each worker, from the workers' queues in bind order. Every
    /// interface is bound on queues 0..n, so with `PerQueue` the queue number is the thread's.
    fn groups(self, queues: &[u32]) -> Vec<usize> {
        match self {
            Threads::PerSocket => (0..queues.len()).collect(),
            Threads::PerQueue => queues.iter().map(|&q| q as usize).collect(),
        }
    }
}

/// A device the data plane has sockets on (a *port*: a plain interface, or one member of
/// a bond).
#[derive(Clone, Debug)]
pub struct IfaceSpec {
    /// Its port number (the XDP program's slot, [`PortId`]).
    pub id: PortId,
    pub name: String,
    /// RX queues to bind (one worker each).
    pub queues: u32,
    /// The logical interface its frames arrive on, for the core (itself, or its bond):
    /// where replies go back and which [`Egress`](crate::bond::Egress) transmits.
    pub logical: IfaceId,
    /// Its index.
    pub ifindex: u32,
}

/// Counters a worker publishes once per batch (relaxed atomics: read by the control thread).
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    /// Connection directions handed to the XDP fast path, and those its map refused (full).
    pub offloaded: AtomicU64,
    pub offload_refused: AtomicU64,
    pub new_conns: AtomicU64,
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Half-open connections removed to make room for newer ones (a SYN flood's).
    pub syn_evicted: AtomicU64,
    /// Frames dropped because the egress worker's inbox was full.
    pub inbox_full: AtomicU64,
    /// Batches where the TX ring had no room for every frame.
    pub tx_ring_full: AtomicU64,
    /// Times the fill ring could not be topped up from the free frames.
    pub fill_starved: AtomicU64,
    /// `sendto()` calls that pushed the TX ring (copy mode transmits only inside them).
    pub tx_kicks: AtomicU64,
    /// Frames this worker put in its TX ring (its port's share of every worker's
    /// forwarding: per-member transmit counts of a bond).
    pub sent: AtomicU64,
    /// Frames dropped because their logical interface had no port to leave on (every
    /// member of the bond down).
    pub no_egress: AtomicU64,
    /// Entries from outside inserted ([`WorkerHandle::inject`]).
    pub injected: AtomicU64,
    /// Entries from outside refused: the inject queue was full.
    pub inject_full: AtomicU64,
    /// Entries from outside the core could not insert (table full, mixed families).
    pub inject_failed: AtomicU64,
    /// Entries from outside for a connection held here at another realserver (split brain),
    /// which the conflict rule kept as it was.
    pub conflicts_kept: AtomicU64,
    /// ... or moved to the message's realserver.
    pub conflicts_taken: AtomicU64,
    /// The kernel's counts for the socket (`XDP_STATISTICS`), read about once a second.
    pub xsk: XskCounters,
}

/// The kernel's AF_XDP socket counters (`struct xdp_statistics`).
#[derive(Debug, Default)]
pub struct XskCounters {
    /// Frames the kernel dropped: the RX ring was full.
    pub rx_ring_full: AtomicU64,
    /// Frames the kernel could not receive: the fill ring was empty.
    pub rx_fill_ring_empty: AtomicU64,
    /// Frames dropped for other reasons.
    pub rx_dropped: AtomicU64,
    pub rx_invalid_descs: AtomicU64,
    pub tx_invalid_descs: AtomicU64,
    /// Times the kernel found the TX ring empty when asked to send.
    pub tx_ring_empty: AtomicU64,
}

impl WorkerStats {
    fn publish(&self, c: &CoreStats) {
        self.rx.store(c.rx, Ordering::Relaxed);
        self.tx.store(c.tx, Ordering::Relaxed);
        self.new_conns.store(c.new_conns, Ordering::Relaxed);
        self.syn_evicted.store(c.syn_evicted, Ordering::Relaxed);
        for (a, v) in self.drops.iter().zip(c.drops.iter()) {
            a.store(*v, Ordering::Relaxed);
        }
    }
}

/// What other workers may put into a worker: frames to transmit and its own frames coming home.
struct Mailbox {
    inbox: ArrayQueue<FrameDesc>,
    returns: ArrayQueue<FrameDesc>,
}

/// A worker thread's wakeup: a non-blocking eventfd it polls with its sockets.
struct Waker(RawFd);

impl Waker {
    fn new() -> io::Result<Self> {
        // Safety: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker(fd))
    }

    /// Wakes the thread (from any thread).
    fn wake(&self) {
        let one: u64 = 1;
        // Safety: writing 8 bytes from a valid u64 to an eventfd we own; errors (EAGAIN on
        // counter overflow) are harmless since the thread is awake then anyway.
        unsafe { libc::write(self.0, (&one as *const u64).cast(), 8) };
    }

    fn drain(&self) {
        let mut v: u64 = 0;
        // Safety: reading 8 bytes into a valid u64 from a non-blocking eventfd we own.
        unsafe { libc::read(self.0, (&mut v as *mut u64).cast(), 8) };
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        // Safety: the eventfd was created by us and is closed exactly once, here.
        unsafe { libc::close(self.0) };
    }
}

/// A running worker.
pub struct WorkerHandle {
    /// "IFACE/qN".
    pub name: String,
    /// Its port.
    pub iface: PortId,
    /// The logical interface of that port.
    pub logical: IfaceId,
    pub queue: u32,
    /// Number of the thread that runs it (0..threads).
    pub thread: usize,
    /// Name of that thread ("xlvs-IFACE/qN" or "xlvs-qN").
    pub thread_name: String,
    pub stats: Arc<WorkerStats>,
    /// Its connection events, for the reader (the control thread).
    pub events: Arc<Outbox>,
    /// Entries from outside, for the worker to insert.
    inject: Arc<ArrayQueue<Spec>>,
    /// Its thread's wakeup.
    waker: Arc<Waker>,
    /// The thread, on the first worker it runs.
    join: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Waits for the worker's thread to exit (after the stop flag was set): wakes it first,
    /// so it sees the flag now rather than at its next deadline.
    pub fn join(&mut self) {
        if let Some(t) = self.join.take() {
            self.waker.wake();
            let _ = t.join();
        }
    }

    /// Whether its thread still runs (false once it has ended, e.g. by a panic). Workers that
    /// share a thread report it through the first of them.
    pub fn alive(&self) -> bool {
        self.join.as_ref().is_none_or(|j| !j.is_finished())
    }

    /// Wakes the worker's thread (it sees a stop flag, a listening change, or new entries).
    pub fn wake(&self) {
        self.waker.wake();
    }

    /// Starts or stops the worker's connection events ([`Outbox::set_listening`]); it sees
    /// the change in its next round.
    pub fn set_listening(&self, on: bool) {
        self.events.set_listening(on);
        self.wake();
    }

    /// Hands the worker a connection or template from outside to insert with its own core (it
    /// will own its expiry). False if its inject queue is full (counted in `inject_full`).
    /// Call [`WorkerHandle::wake`] once after a burst (a sync datagram's entries), not per
    /// entry: one eventfd write then covers them all.
    pub fn inject(&self, spec: Spec) -> bool {
        if self.inject.push(spec).is_err() {
            self.stats.inject_full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// Sets the stop flag and wakes every worker thread, so each ends within a round.
pub fn stop_all(stop: &AtomicBool, workers: &[WorkerHandle]) {
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.wake();
    }
}

/// A worker's socket, before it runs.
struct Bound {
    iface: PortId,
    logical: IfaceId,
    iface_name: String,
    queue: u32,
    tx: TxQueue,
    rx: RxQueue,
    fill: FillQueue,
    comp: CompQueue,
    frames: Vec<FrameDesc>,
}

/// One AF_XDP socket on queue `q` of `spec` from `umem` (with its own fill and completion
/// rings), owning `frames`.
fn bind_socket(
    cfg: SocketConfig,
    umem: &Umem,
    spec: &IfaceSpec,
    q: u32,
    frames: Vec<FrameDesc>,
) -> Result<Bound, Error> {
    let ifname = spec
        .name
        .parse()
        .map_err(|_| Error(format!("bad interface name {:?}", spec.name)))?;
    // Safety: each (interface, queue) pair is bound once from this UMEM, so the
    // INHIBIT_PROG_LOAD requirement for re-binding a pair does not arise (it is set anyway:
    // our own XDP program does the steering).
    let (tx, rx, fq) = unsafe { Socket::new(cfg, umem, &ifname, q) }.map_err(|e| {
        let cause = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        Error(format!(
            "AF_XDP socket on {} queue {q}: {e}{cause}",
            spec.name
        ))
    })?;
    let (fill, comp) = fq.ok_or_else(|| {
        Error(format!(
            "no fill/completion ring for {} queue {q}",
            spec.name
        ))
    })?;
    Ok(Bound {
        iface: spec.id,
        logical: spec.logical,
        iface_name: spec.name.clone(),
        queue: q,
        tx,
        rx,
        fill,
        comp,
        frames,
    })
}

/// The AF_XDP sockets of the data plane, bound but not yet running.
pub struct Dataplane {
    umem: Umem,
    bound: Vec<Bound>,
    config: XskConfig,
    sock_cfg: SocketConfig,
    /// The spare sockets' frames, one range each, in worker order after the bound ones.
    spare: Vec<Vec<FrameDesc>>,
}

/// An error while creating the data plane.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl Dataplane {
    /// Creates the shared UMEM and one AF_XDP socket per (interface, RX queue). The XDP
    /// program is not loaded here: the caller puts [`Dataplane::sockets`] into its XSKMAP.
    pub fn bind(ifaces: &[IfaceSpec], config: XskConfig) -> Result<Self, Error> {
        let workers: u32 = ifaces.iter().map(|i| i.queues).sum();
        if workers == 0 {
            return Err(Error("no interface queues to bind".into()));
        }
        let qs = |n: u32| QueueSize::new(n).map_err(|e| Error(format!("ring size: {e}")));
        let umem_cfg = UmemConfig::builder()
            .frame_size(
                config
                    .frame_size
                    .try_into()
                    .map_err(|e| Error(format!("frame size: {e}")))?,
            )
            .fill_queue_size(qs(config.ring_size)?)
            .comp_queue_size(qs(config.ring_size)?)
            .build()
            .map_err(|e| Error(format!("UMEM config: {e}")))?;
        let total = (workers + config.spare_sockets)
            .checked_mul(config.frames_per_worker)
            .and_then(std::num::NonZeroU32::new)
            .ok_or_else(|| Error("UMEM frame count overflows".into()))?;
        let (umem, mut descs) = Umem::new(umem_cfg, total, false)
            .map_err(|e| Error(format!("creating UMEM of {total} frames: {e} ({e:?})")))?;
        let sock_cfg = SocketConfig::builder()
            .rx_queue_size(qs(config.ring_size)?)
            .tx_queue_size(qs(config.ring_size)?)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        let mut bound = Vec::new();
        for spec in ifaces {
            for q in 0..spec.queues {
                let rest = descs.split_off(config.frames_per_worker as usize);
                let frames = std::mem::replace(&mut descs, rest);
                bound.push(bind_socket(sock_cfg, &umem, spec, q, frames)?);
            }
        }
        let mut spare = Vec::new();
        for _ in 0..config.spare_sockets {
            let rest = descs.split_off((config.frames_per_worker as usize).min(descs.len()));
            spare.push(std::mem::replace(&mut descs, rest));
        }
        Ok(Dataplane {
            umem,
            bound,
            config,
            sock_cfg,
            spare,
        })
    }

    /// (interface, queue, socket fd) of every socket, for the XSKMAP.
    pub fn sockets(&self) -> Vec<(IfaceId, u32, RawFd)> {
        use std::os::fd::AsRawFd;
        self.bound
            .iter()
            .map(|b| (b.iface, b.queue, b.rx.fd().as_raw_fd()))
            .collect()
    }

    /// Starts the worker threads ([`Threads`]). Workers stop when `stop` is set. The
    /// [`Hotplug`] adds ports later, on the spare sockets.
    pub fn run(
        self,
        tables: Arc<Tables>,
        snapshot: Arc<ArcSwap<Snapshot>>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<(Vec<WorkerHandle>, Hotplug)> {
        let n = self.bound.len();
        let queues: Vec<u32> = self.bound.iter().map(|b| b.queue).collect();
        let thread_no = self.config.threads.groups(&queues);
        let nthreads = thread_no.iter().max().map_or(0, |m| m + 1);
        let total = n + self.spare.len();
        let thread_of: Arc<[AtomicUsize]> = (0..total)
            .map(|i| AtomicUsize::new(thread_no.get(i).copied().unwrap_or(0)))
            .collect();
        let wakers = (0..nthreads)
            .map(|_| Waker::new().map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let adopt: Vec<Arc<ArrayQueue<Worker>>> = (0..nthreads)
            .map(|_| Arc::new(ArrayQueue::new(self.spare.len().max(1))))
            .collect();
        let mailboxes: Arc<[Arc<Mailbox>]> = (0..total)
            .map(|_| {
                Arc::new(Mailbox {
                    inbox: ArrayQueue::new(self.config.ring_size as usize * 2),
                    returns: ArrayQueue::new(self.config.frames_per_worker as usize),
                })
            })
            .collect();
        // Egress routing: for port e, the workers bound to it, by queue.
        let mut by_iface: Vec<Vec<usize>> = Vec::new();
        for (i, b) in self.bound.iter().enumerate() {
            let e = b.iface as usize;
            if by_iface.len() <= e {
                by_iface.resize(e + 1, Vec::new());
            }
            by_iface[e].push(i);
        }
        let topology = Arc::new(Topology {
            by_port: ArcSwap::from_pointee(by_iface),
            generation: AtomicU64::new(0),
        });
        let frame_span = self.config.frame_size as usize * self.config.frames_per_worker as usize;
        let hotplug = Hotplug {
            umem: self.umem,
            sock_cfg: self.sock_cfg,
            config: self.config,
            spare: self.spare.into(),
            next: n,
            nthreads,
            tables,
            snapshot,
            mailboxes,
            topology,
            thread_of,
            wakers,
            adopt,
            frame_span,
        };
        let mut groups: Vec<Vec<Worker>> = (0..nthreads).map(|_| Vec::new()).collect();
        let mut handles = Vec::with_capacity(n);
        for (me, b) in self.bound.into_iter().enumerate() {
            let t = thread_no[me];
            let thread_name = if thread_no.iter().filter(|&&g| g == t).count() == 1 {
                format!("xlvs-{}/q{}", b.iface_name, b.queue)
            } else {
                format!("xlvs-q{}", b.queue)
            };
            let (w, h) = hotplug.worker(me, t, b, thread_name);
            groups[t].push(w);
            handles.push(h);
        }
        for (t, workers) in groups.into_iter().enumerate() {
            let first = workers[0].me;
            let th = WorkerThread {
                workers,
                me: t,
                wakers: hotplug.wakers.clone(),
                stop: stop.clone(),
                adopt: hotplug.adopt[t].clone(),
                spin: self.config.poll_spin,
                defer: nthreads > 1,
            };
            let thread = std::thread::Builder::new()
                .name(handles[first].thread_name.clone())
                .spawn(move || th.run())?;
            handles[first].join = Some(thread);
        }
        Ok((handles, hotplug))
    }
}

/// The workers [`Hotplug::add_port`] started.
pub struct Added {
    pub handles: Vec<WorkerHandle>,
    /// (RX queue, AF_XDP socket fd) of each, for the XSKMAP.
    pub sockets: Vec<(u32, RawFd)>,
}

/// Which workers transmit on each port, shared by every worker; a port added at run time
/// publishes a new map and bumps the generation, which workers check once per round.
struct Topology {
    by_port: ArcSwap<Vec<Vec<usize>>>,
    generation: AtomicU64,
}

/// Adds ports to the running data plane (a member joining a bond), on the sockets and
/// frames [`XskConfig::spare_sockets`] set aside at start: each new socket shares the UMEM,
/// gets its own fill and completion rings, and its worker joins the thread that serves its
/// queue number (an existing thread: no thread is started).
pub struct Hotplug {
    umem: Umem,
    sock_cfg: SocketConfig,
    config: XskConfig,
    spare: std::collections::VecDeque<Vec<FrameDesc>>,
    /// The next worker number (the spare ranges follow the bound workers', in order).
    next: usize,
    nthreads: usize,
    tables: Arc<Tables>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    mailboxes: Arc<[Arc<Mailbox>]>,
    topology: Arc<Topology>,
    thread_of: Arc<[AtomicUsize]>,
    wakers: Vec<Arc<Waker>>,
    adopt: Vec<Arc<ArrayQueue<Worker>>>,
    frame_span: usize,
}

impl Hotplug {
    /// Worker number `me` on socket `b`, run by thread `t`, and its handle.
    fn worker(&self, me: usize, t: usize, b: Bound, thread_name: String) -> (Worker, WorkerHandle) {
        let c = &self.config;
        let stats = Arc::new(WorkerStats::default());
        let events = Arc::new(Outbox::with_sync(
            c.events,
            c.sync_threshold.0,
            c.sync_threshold.1,
        ));
        let inject = Arc::new(ArrayQueue::new(c.inject.max(1)));
        let handle = WorkerHandle {
            name: format!("{}/q{}", b.iface_name, b.queue),
            iface: b.iface,
            logical: b.logical,
            queue: b.queue,
            thread: t,
            thread_name,
            stats: stats.clone(),
            events: events.clone(),
            inject: inject.clone(),
            waker: self.wakers[t].clone(),
            join: None,
        };
        let mut core = Core::for_worker(self.tables.clone(), me);
        core.set_syn_recv_cap(c.syn_recv_per_worker);
        core.set_outbox(Some(events));
        let offload = c.offload_map.map(OffloadMap::new);
        if let Some(m) = offload {
            core.set_offload(Some(Box::new(m)));
        }
        let worker = Worker {
            me,
            iface: b.iface,
            logical: b.logical,
            queue: b.queue,
            tx: b.tx,
            rx: b.rx,
            fill: b.fill,
            comp: b.comp,
            free: b.frames,
            umem: self.umem.clone(),
            core,
            inject,
            snapshot: self.snapshot.clone(),
            mailboxes: self.mailboxes.clone(),
            topology: self.topology.clone(),
            // Read the port map at the first round.
            by_iface: Arc::default(),
            generation: u64::MAX,
            thread_of: self.thread_of.clone(),
            thread: t,
            frame_span: self.frame_span,
            stats,
            outstanding: 0,
            pending_tx: Vec::with_capacity(c.ring_size as usize * 3),
            pending_cap: c.ring_size as usize * 2,
            tx_ring: c.ring_size,
            next_xsk_stats: Instant(0),
            offload,
        };
        (worker, handle)
    }

    /// Spare sockets left.
    pub fn spare(&self) -> usize {
        self.spare.len()
    }

    /// Binds one socket per RX queue of `spec` and hands each worker to its thread; returns
    /// their handles and (queue, socket fd) for the XSKMAP (attach XDP to the port next).
    /// Fails, binding nothing, if too few spare sockets are left.
    pub fn add_port(&mut self, spec: &IfaceSpec) -> Result<Added, Error> {
        if spec.queues as usize > self.spare.len() {
            return Err(Error(format!(
                "{} has {} RX queue(s) and {} spare socket(s) are left (xlvsd --spare-sockets)",
                spec.name,
                spec.queues,
                self.spare.len()
            )));
        }
        let mut bound = Vec::new();
        for q in 0..spec.queues {
            bound.push(bind_socket(self.sock_cfg, &self.umem, spec, q, Vec::new())?);
        }
        let mut handles = Vec::new();
        let mut sockets = Vec::new();
        let mut by_port: Vec<Vec<usize>> = (**self.topology.by_port.load()).clone();
        let port = spec.id as usize;
        if by_port.len() <= port {
            by_port.resize(port + 1, Vec::new());
        }
        by_port[port].clear();
        let mut woken = vec![false; self.nthreads];
        for mut b in bound {
            let q = b.queue;
            sockets.push((q, std::os::fd::AsRawFd::as_raw_fd(b.rx.fd())));
            let me = self.next;
            self.next += 1;
            b.frames = self.spare.pop_front().unwrap_or_default();
            let t = match self.config.threads {
                Threads::PerQueue => q as usize % self.nthreads.max(1),
                Threads::PerSocket => me % self.nthreads.max(1),
            };
            self.thread_of[me].store(t, Ordering::Relaxed);
            let (w, h) = self.worker(me, t, b, format!("xlvs-q{t}"));
            handles.push(h);
            by_port[port].push(me);
            if self.adopt[t].push(w).is_err() {
                log::error!("thread {t} cannot take another worker");
            }
            woken[t] = true;
        }
        self.topology.by_port.store(Arc::new(by_port));
        self.topology.generation.fetch_add(1, Ordering::Release);
        for (t, w) in woken.iter().enumerate() {
            if *w {
                self.wakers[t].wake();
            }
        }
        Ok(Added { handles, sockets })
    }
}

/// A thread running one or more workers in turn.
struct WorkerThread {
    workers: Vec<Worker>,
    /// Our thread number.
    me: usize,
    /// Every thread's wakeup, by thread number (ours: other threads hand our workers frames).
    wakers: Vec<Arc<Waker>>,
    stop: Arc<AtomicBool>,
    /// Workers of ports added at run time, for this thread to take ([`Hotplug`]).
    adopt: Arc<ArrayQueue<Worker>>,
    /// [`XskConfig::poll_spin`].
    spin: std::time::Duration,
    /// Whether its workers defer their changes to realservers' connection counts: when
    /// there are other worker threads to share those counts' cache lines with.
    defer: bool,
}

/// One (interface, RX queue): its socket, its rings' state, its [`Core`].
struct Worker {
    me: usize,
    /// Our port (what we transmit on) and its logical interface (what the core sees).
    iface: PortId,
    logical: IfaceId,
    queue: u32,
    tx: TxQueue,
    rx: RxQueue,
    fill: FillQueue,
    comp: CompQueue,
    /// Frames of ours that are in no ring.
    free: Vec<FrameDesc>,
    umem: Umem,
    core: Core,
    /// Entries from outside to insert.
    inject: Arc<ArrayQueue<Spec>>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    mailboxes: Arc<[Arc<Mailbox>]>,
    topology: Arc<Topology>,
    /// The topology's map as of `generation` (refreshed once per round when it changed).
    by_iface: Arc<Vec<Vec<usize>>>,
    generation: u64,
    /// The thread number of every worker (spare ones: set when a port takes them).
    thread_of: Arc<[AtomicUsize]>,
    /// Ours.
    thread: usize,
    frame_span: usize,
    stats: Arc<WorkerStats>,
    /// Frames in our TX ring not yet completed.
    outstanding: usize,
    /// Frames to transmit that did not fit in the TX ring yet.
    pending_tx: Vec<FrameDesc>,
    /// Most frames `pending_tx` holds before the inbox is left for the next round (its
    /// preallocated capacity: the hot path never grows it beyond a full batch more).
    pending_cap: usize,
    /// When to read the kernel's socket counters next.
    next_xsk_stats: Instant,
    /// Size of the TX ring: when it has this many free slots the kernel has taken every
    /// frame, and only completions are outstanding.
    tx_ring: u32,
    /// The XDP program's `OFFLOAD` map, with `--offload`.
    offload: Option<OffloadMap>,
}

fn monotonic_now() -> Instant {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: clock_gettime writes into the valid timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Instant(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Asks the kernel to back memory regions (the connection tables' [`regions`]) with
/// transparent huge pages (`MADV_HUGEPAGE`; THP set to `madvise` or `always`): at millions of
/// connections a lookup otherwise misses the TLB on every access. Failing is harmless;
/// returns how many regions took the advice.
///
/// [`regions`]: crate::core::conn::Tables::regions
pub fn advise_huge_pages(regions: &[(*const u8, usize)]) -> usize {
    const HUGE: usize = 2 << 20;
    let mut ok = 0;
    for &(p, len) in regions {
        // Only whole 2 MB pages inside the region.
        let start = (p as usize).next_multiple_of(HUGE);
        let end = (p as usize + len) / HUGE * HUGE;
        if end <= start {
            continue;
        }
        // Safety: the range lies inside an allocation the caller owns (the tables, for their
        // lifetime);
        // MADV_HUGEPAGE changes how pages are backed, never their contents.
        let r =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        ok += (r == 0) as usize;
    }
    ok
}

/// The monotonic clock the workers use (CLOCK_MONOTONIC): for the control thread's fragment
/// expiry, and the benchmark rig's stamps.
pub fn now() -> Instant {
    monotonic_now()
}

impl WorkerThread {
    fn run(mut self) {
        let mut rx_descs = vec![FrameDesc::default(); BATCH];
        let mut comp_descs = vec![FrameDesc::default(); BATCH * 4];
        let mut fds = self.pollfds();
        let mut wake = vec![false; self.wakers.len()];
        for w in &self.workers {
            w.log_running("");
        }
        // When the last round that did work began (adaptive polling).
        let mut last_busy = monotonic_now();
        // When the next flush of deferred connection-count changes is due
        // (`stats::defer_counts`: a millisecond apart while there are any).
        let mut flush_at = last_busy;
        while !self.stop.load(Ordering::Relaxed) {
            if !self.adopt.is_empty() {
                while let Some(w) = self.adopt.pop() {
                    w.log_running(" (added)");
                    self.workers.push(w);
                }
                fds = self.pollfds();
            }
            // One clock read per round: the batch's time and the expiry's.
            let now = monotonic_now();
            let mut busy = false;
            for w in self.workers.iter_mut() {
                // With other worker threads, realservers' connection counts change in this
                // worker's shards.
                stats::defer_counts(self.defer.then_some(w.me));
                busy |= w.round(now, &mut rx_descs, &mut comp_descs, &mut wake);
            }
            stats::defer_counts(None);
            if self.defer && now >= flush_at && service::deferred_counts_pending() {
                service::flush_deferred_counts();
                flush_at = now + std::time::Duration::from_millis(1);
            }
            for (t, f) in wake.iter_mut().enumerate() {
                if std::mem::take(f) {
                    self.wakers[t].wake();
                }
            }
            if busy {
                last_busy = now;
            } else if !self.spin.is_zero()
                && now.0.saturating_sub(last_busy.0) < self.spin.as_nanos() as u64
            {
                // Adaptive polling: look again instead of sleeping, for a while after work.
                std::hint::spin_loop();
                continue;
            }
            if !busy && self.workers.iter().all(|w| w.pending_tx.is_empty()) {
                // Idle: sleep until a frame arrives, another thread hands us work (or stops
                // us), or our next deadline. Completions of frames the kernel has taken wake
                // nothing (in copy mode they come when the receiver frees its copy), so with
                // some outstanding, sleep at most 1 ms instead of spinning on sendto().
                // Deferred counts: back within a millisecond to flush them.
                let outstanding = (self.defer && service::deferred_counts_pending())
                    || self.workers.iter().any(|w| w.outstanding > 0);
                let timeout = if outstanding {
                    1
                } else {
                    self.sleep_ms(monotonic_now())
                };
                // Safety: `fds` is a valid array of `fds.len()` pollfds.
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
                if fds.last().is_some_and(|f| f.revents != 0) {
                    self.wakers[self.me].drain();
                }
                for f in fds.iter_mut() {
                    f.revents = 0;
                }
            }
        }
        for w in &self.workers {
            log::info!("worker {} stopping", w.me);
        }
    }

    /// What the idle thread polls: its workers' sockets, then its eventfd.
    fn pollfds(&self) -> Vec<libc::pollfd> {
        self.workers
            .iter()
            .map(|w| std::os::fd::AsRawFd::as_raw_fd(w.rx.fd()))
            .chain([self.wakers[self.me].0])
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect()
    }

    /// Milliseconds an idle thread may sleep from `now`: until the first of its workers'
    /// expiry deadlines and socket-counter reads (at most a second away), rounded up.
    fn sleep_ms(&self, now: Instant) -> i32 {
        let next = self
            .workers
            .iter()
            .flat_map(|w| [w.core.poll_timeout(), Some(w.next_xsk_stats)])
            .flatten()
            .min()
            .unwrap_or(now + std::time::Duration::from_secs(1));
        sleep_ms(now, next)
    }
}

/// Milliseconds from `now` to `next`, rounded up (a poll timeout that does not wake early),
/// at most a second.
fn sleep_ms(now: Instant, next: Instant) -> i32 {
    next.since(now).as_nanos().div_ceil(1_000_000).min(1000) as i32
}

impl Worker {
    fn log_running(&self, how: &str) {
        log::info!(
            "worker {} (iface {} queue {}) running{how}",
            self.me,
            self.iface,
            self.queue
        );
    }

    fn home(&self, d: &FrameDesc) -> usize {
        d.addr() / self.frame_span
    }

    /// Gives a frame we are done with back to its home worker's free list.
    fn recycle(&mut self, d: FrameDesc, wake: &mut [bool]) {
        let h = self.home(&d);
        if h == self.me {
            self.free.push(d);
        } else if self.mailboxes[h].returns.push(d).is_ok() {
            self.wake_worker(h, wake);
        } else {
            // Cannot happen: `returns` holds every frame the home worker owns.
            log::error!("returns queue of worker {h} full; frame leaked");
        }
    }

    /// The worker that transmits on port `iface`: the one on our queue number, modulo its
    /// queues.
    fn egress_worker(&self, iface: PortId) -> Option<usize> {
        let ws = self.by_iface.get(iface as usize)?;
        if ws.is_empty() {
            return None;
        }
        Some(ws[self.queue as usize % ws.len()])
    }

    /// Marks the thread of worker `w` for a wakeup, unless it is ours (we will see its
    /// mailbox in this round or the next anyway).
    fn wake_worker(&self, w: usize, wake: &mut [bool]) {
        let t = self.thread_of[w].load(Ordering::Relaxed);
        if t != self.thread {
            wake[t] = true;
        }
    }

    /// One round: frames coming home, completions, fill ring, a batch of RX, the inbox, TX,
    /// expiry. Marks in `wake` the other threads it handed frames to. Returns whether it did
    /// anything (the thread sleeps only after an idle round of every worker).
    fn round(
        &mut self,
        now: Instant,
        rx_descs: &mut [FrameDesc],
        comp_descs: &mut [FrameDesc],
        wake: &mut [bool],
    ) -> bool {
        let mut busy = false;
        // Whether anyone listens for our connection events: once per round.
        self.core.refresh_listening();
        // A port added since the last round.
        let g = self.topology.generation.load(Ordering::Acquire);
        if g != self.generation {
            self.by_iface = self.topology.by_port.load_full();
            self.generation = g;
        }

        // Our frames coming home from other workers.
        while let Some(d) = self.mailboxes[self.me].returns.pop() {
            self.free.push(d);
        }
        // Completed transmissions.
        // Safety: the completion ring only returns descriptors of frames we put in our TX
        // ring, all from the shared UMEM; we own them again now.
        let n = unsafe { self.comp.consume(comp_descs) };
        if n > 0 {
            busy = true;
            self.outstanding -= n.min(self.outstanding);
            for d in comp_descs[..n].iter().copied() {
                self.recycle(d, wake);
            }
        }
        self.refill();

        // Receive and forward a batch. Backpressure: while the TX side is backed up, leave
        // frames in the RX ring.
        let n = if self.pending_tx.len() < self.pending_cap {
            // Safety: the RX ring hands us frames of the shared UMEM that the kernel has
            // finished writing; nothing else touches them until we pass them on.
            unsafe { self.rx.consume(rx_descs) }
        } else {
            0
        };
        if n > 0 {
            busy = true;
            let snap = self.snapshot.load();
            // Start the batch's connection-table loads before the first lookup needs one.
            let umem = &self.umem;
            // Safety: as below; read only.
            self.core.prefetch(
                rx_descs[..n]
                    .iter()
                    .map(|d| unsafe { umem.data(d) }.contents()),
            );
            for d in rx_descs[..n].iter_mut() {
                let port = {
                    // Safety: `d` is a frame we own (just received), in this UMEM.
                    let mut data = unsafe { self.umem.data_mut(d) };
                    match self
                        .core
                        .process(now, &snap, data.contents_mut(), self.logical)
                    {
                        // The logical interface's port: itself, or a bond's member by its
                        // transmit hash over the rewritten frame.
                        Verdict::Tx(e) => {
                            // Taken with every transmitted frame, so that a request never
                            // outlives the frame it was made for.
                            let req = self.core.take_offload_request();
                            match snap.egress_port(e, data.contents()) {
                                Some(p) => {
                                    if let Some(req) = req {
                                        let hash = snap.egress_hash(e, data.contents());
                                        self.offload_flow(&req, data.contents(), (e, hash), now);
                                    }
                                    Some(p)
                                }
                                None => {
                                    self.stats.no_egress.fetch_add(1, Ordering::Relaxed);
                                    None
                                }
                            }
                        }
                        Verdict::Drop(_) => None,
                    }
                };
                let d = *d;
                match port {
                    Some(p) if p == self.iface => self.pending_tx.push(d),
                    Some(p) => match self.egress_worker(p) {
                        Some(w) if w == self.me => self.pending_tx.push(d),
                        Some(w) => {
                            if self.mailboxes[w].inbox.push(d).is_ok() {
                                self.wake_worker(w, wake);
                            } else {
                                self.stats.inbox_full.fetch_add(1, Ordering::Relaxed);
                                self.recycle(d, wake);
                            }
                        }
                        None => self.recycle(d, wake),
                    },
                    None => self.recycle(d, wake),
                }
            }
            // Only `process` moves these counters.
            self.stats.publish(&self.core.stats);
            // A connection established in this batch goes to the sync master now.
            if let Some(ob) = self.core.outbox() {
                ob.wake_if_urgent();
            }
        }

        // Frames other workers want sent on our interface.
        while self.pending_tx.len() < self.pending_cap {
            match self.mailboxes[self.me].inbox.pop() {
                Some(d) => {
                    busy = true;
                    self.pending_tx.push(d)
                }
                None => break,
            }
        }
        if self.transmit() {
            busy = true;
        }

        if self.insert_injected(now) {
            busy = true;
        }

        if self.take_back_offloads() {
            busy = true;
        }

        // Connections and templates this worker filed that are due; bounded work (a
        // backlog keeps the thread from sleeping until it is done).
        if self.core.expire_some(now) > 0 {
            busy = true;
        }

        if now >= self.next_xsk_stats {
            // One getsockopt a second, not per batch.
            self.next_xsk_stats = now + std::time::Duration::from_secs(1);
            self.read_xsk_stats();
            // Timeouts changed since this worker's last offer reach its offloaded
            // connections' expiry.
            if self.offload.is_some() {
                self.core.note_timeouts(&self.snapshot.load());
            }
        }
        busy
    }

    /// Files the XDP entry for the direction `req` names, from `frame` as the core rewrote it,
    /// the logical interface it leaves by and the bond's transmit hash that chose the port
    /// (the program picks the port again from the interface's usable ones, `EGRESS`).
    fn offload_flow(&self, req: &OffloadRequest, frame: &[u8], out: (IfaceId, u32), now: Instant) {
        let Some(map) = &self.offload else { return };
        match offload_map::entry(req, frame, out, now.0) {
            Some(e) if map.update(&req.key, &e) => {
                self.stats.offloaded.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                // The workers keep the connection (its frames reach them, unmarked).
                self.stats.offload_refused.fetch_add(1, Ordering::Relaxed);
                self.core.tables().keep_flow(&req.key);
            }
        }
    }

    /// Removes the XDP entries of connections that changed state or left the table (any
    /// worker's: the queue is the table's), up to [`INJECT_BUDGET`] per round; all of them if
    /// the queue overflowed. Returns whether there was any.
    fn take_back_offloads(&mut self) -> bool {
        let Some(map) = &self.offload else {
            return false;
        };
        let tables = self.core.tables();
        if tables.v4.take_unoffload_overflow() | tables.v6.take_unoffload_overflow() {
            let n = map.clear();
            log::warn!(
                "the queue of offloaded connections to take back overflowed: emptied the XDP fast path's map ({n} entries); their connections go through the workers from now on"
            );
        }
        // Loaded once for the round, and only if there is something to take back.
        let mut snap = None;
        let load = || self.snapshot.load_full();
        let n = take_back(&tables.v4, map, &mut snap, &load, INJECT_BUDGET);
        let n = n + take_back(&tables.v6, map, &mut snap, &load, INJECT_BUDGET - n);
        n > 0
    }

    /// Inserts up to [`INJECT_BUDGET`] entries from outside with our core (their expiry is
    /// ours). Returns whether there were any.
    fn insert_injected(&mut self, now: Instant) -> bool {
        if self.inject.is_empty() {
            return false;
        }
        let snap = self.snapshot.load();
        let (mut ok, mut failed, mut kept, mut taken) = (0, 0, 0, 0);
        for _ in 0..INJECT_BUDGET {
            let Some(spec) = self.inject.pop() else { break };
            match self.core.insert(now, &snap, &spec) {
                Ok(Inserted::ConflictKept) => kept += 1,
                Ok(Inserted::ConflictTaken) => {
                    ok += 1;
                    taken += 1;
                }
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
        }
        if kept + taken > 0 {
            self.stats.conflicts_kept.fetch_add(kept, Ordering::Relaxed);
            self.stats
                .conflicts_taken
                .fetch_add(taken, Ordering::Relaxed);
        }
        self.stats.injected.fetch_add(ok, Ordering::Relaxed);
        self.stats
            .inject_failed
            .fetch_add(failed, Ordering::Relaxed);
        true
    }

    /// Copies the kernel's counters of our socket into the shared stats.
    fn read_xsk_stats(&self) {
        let Ok(x) = self.rx.fd().xdp_statistics() else {
            return;
        };
        let k = &self.stats.xsk;
        for (a, v) in [
            (&k.rx_ring_full, x.rx_ring_full()),
            (&k.rx_fill_ring_empty, x.rx_fill_ring_empty_descs()),
            (&k.rx_dropped, x.rx_dropped()),
            (&k.rx_invalid_descs, x.rx_invalid_descs()),
            (&k.tx_invalid_descs, x.tx_invalid_descs()),
            (&k.tx_ring_empty, x.tx_ring_empty_descs()),
        ] {
            a.store(v, Ordering::Relaxed);
        }
    }

    /// Tops the fill ring up from our free frames.
    fn refill(&mut self) {
        if self.free.is_empty() {
            return;
        }
        let room = self.fill.nb_free(self.free.len() as u32) as usize;
        if room == 0 {
            return;
        }
        let k = room.min(self.free.len());
        let start = self.free.len() - k;
        // Safety: the frames are ours and in no ring; after this the kernel owns them until
        // they come back on the RX ring.
        let put = unsafe { self.fill.produce(&self.free[start..]) };
        if put == 0 {
            self.stats.fill_starved.fetch_add(1, Ordering::Relaxed);
        }
        self.free.truncate(self.free.len() - put);
        if self.fill.needs_wakeup() {
            let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
        }
    }

    /// Puts pending frames in the TX ring and kicks the kernel while the ring holds frames it
    /// has not taken. Returns true if it kicked (the loop comes back for the rest).
    fn transmit(&mut self) -> bool {
        if !self.pending_tx.is_empty() {
            // `produce` is all or nothing: offer only what fits, or a backlog larger than
            // the free slots would never go out.
            let room =
                (self.tx.nb_free(self.pending_tx.len() as u32) as usize).min(self.pending_tx.len());
            // Safety: the pending frames are ours to send (received by us or handed over by
            // another worker, which no longer touches them).
            let put = unsafe { self.tx.produce(&self.pending_tx[..room]) };
            if put < self.pending_tx.len() {
                self.stats.tx_ring_full.fetch_add(1, Ordering::Relaxed);
            }
            self.outstanding += put;
            self.stats.sent.fetch_add(put as u64, Ordering::Relaxed);
            self.pending_tx.drain(..put);
        }
        // Copy mode transmits only inside sendto(), 32 frames per call; the loop calls this
        // again until the ring is empty. Frames the kernel has taken need no more kicks: a
        // sendto() while waiting for their completions would only burn a syscall.
        // (Copy mode never sets the ring's need_wakeup flag: the count decides.)
        let free = self.tx.nb_free_exact();
        if self.outstanding > 0 && free < self.tx_ring {
            self.stats.tx_kicks.fetch_add(1, Ordering::Relaxed);
            let _ = self.tx.wakeup();
            // A kick the kernel took nothing from (the port is down: sendto fails with
            // ENETDOWN, which xsk-rs hides; or its queue is busy) does not count as work, so
            // the thread sleeps (1 ms while completions are outstanding) instead of spinning
            // on a bond member that lost its link until it returns.
            return self.tx.nb_free_exact() != free;
        }
        false
    }
}

/// Removes the XDP entries of up to `budget` connections of one family that changed state
/// or left the table (any worker's: the queue is the table's); returns how many.
fn take_back<A: crate::core::addr::Addr>(
    t: &crate::core::conn::ConnTable<A>,
    map: &OffloadMap,
    snap: &mut Option<Arc<Snapshot>>,
    load: &impl Fn() -> Arc<Snapshot>,
    budget: usize,
) -> usize {
    let mut n = 0;
    while n < budget {
        let Some(u) = t.take_unoffloaded() else { break };
        n += 1;
        let snap = snap.get_or_insert_with(load);
        // What the program forwarded goes to the control thread, which counts it for the
        // realserver less what it counted while the entry lived.
        let v = map.lookup(&u.key);
        map.delete(&u.key);
        let Some(v) = v else { continue };
        // A connection the workers keep from now on lives its timeout from the program's
        // last frame of it, not from the last the workers saw.
        if v.last_ns != 0 {
            t.extend_from(&u.key, |c| {
                let timeout = crate::core::events::state_timeout(c, snap);
                (tick_ceil(Instant(v.last_ns)), timeout)
            });
        }
        let f = crate::core::offload::Final {
            key: u.key,
            filed_ns: v.filed_ns,
            dest: u.dest,
            out: u.out,
            packets: v.packets,
            ip_bytes: v.bytes,
        };
        // A full queue (over 65 536 offloaded directions ending within a second) loses what
        // the control thread had not counted yet of this one, rather than count what it had
        // twice.
        let _ = t.push_offload_final(f);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::{Instant, Threads, sleep_ms};
    use std::time::Duration;

    #[test]
    fn an_idle_thread_sleeps_until_its_deadline_rounded_up_at_most_a_second() {
        let now = Instant::from_secs(10);
        assert_eq!(sleep_ms(now, now), 0);
        assert_eq!(sleep_ms(now, Instant(0)), 0);
        assert_eq!(sleep_ms(now, now + Duration::from_micros(1)), 1);
        assert_eq!(sleep_ms(now, now + Duration::from_millis(62)), 62);
        assert_eq!(sleep_ms(now, now + Duration::from_secs(300)), 1000);
    }

    #[test]
    fn per_queue_threads_run_one_queue_number_of_every_interface() {
        // Bind order: ext0 q0 q1, int0 q0 q1.
        assert_eq!(Threads::PerQueue.groups(&[0, 1, 0, 1]), [0, 1, 0, 1]);
        // ext0 with 4 queues, int0 with 2: queues 2 and 3 get threads of their own.
        assert_eq!(
            Threads::PerQueue.groups(&[0, 1, 2, 3, 0, 1]),
            [0, 1, 2, 3, 0, 1]
        );
        assert_eq!(Threads::PerQueue.groups(&[0, 0]), [0, 0]);
        assert_eq!(Threads::PerSocket.groups(&[0, 1, 0, 1]), [0, 1, 2, 3]);
        assert!(Threads::PerQueue.groups(&[]).is_empty());
    }
}
