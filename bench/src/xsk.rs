//! One AF_XDP socket with its own UMEM: the generator's TX port and the sink's RX port.

use std::num::NonZeroU32;

use anyhow::{Context as _, anyhow};
use xsk_rs::config::{BindFlags, FrameSize, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

/// Frames per batch, as the workers use.
pub use xlvs_dataplane::afxdp::BATCH;
const FRAMES: u32 = 8192;
/// Size of every ring.
pub const RING: u32 = 4096;

pub struct Port {
    pub umem: Umem,
    pub tx: TxQueue,
    pub rx: RxQueue,
    pub fill: FillQueue,
    pub comp: CompQueue,
    /// Frames in no ring.
    pub free: Vec<FrameDesc>,
}

impl Port {
    /// Binds a socket to `iface` queue `queue` (copy or zero-copy, as the driver allows).
    /// No XDP program is loaded: a receiving caller puts [`Port::fd`] into its XSKMAP.
    pub fn open(iface: &str, queue: u32) -> anyhow::Result<Port> {
        let qs = |n| QueueSize::new(n).map_err(|e| anyhow!("ring size: {e}"));
        let umem_cfg = UmemConfig::builder()
            .frame_size(FrameSize::new(2048).map_err(|e| anyhow!("frame size: {e}"))?)
            .fill_queue_size(qs(RING)?)
            .comp_queue_size(qs(RING)?)
            .build()
            .map_err(|e| anyhow!("UMEM config: {e}"))?;
        let (umem, free) = Umem::new(umem_cfg, NonZeroU32::new(FRAMES).expect("nonzero"), false)
            .map_err(|e| anyhow!("creating the UMEM: {e}"))?;
        let sock_cfg = SocketConfig::builder()
            .rx_queue_size(qs(RING)?)
            .tx_queue_size(qs(RING)?)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        let name = iface
            .parse()
            .map_err(|_| anyhow!("bad interface name {iface:?}"))?;
        // A socket closed just before (the previous point's sink) leaves the queue busy until
        // the kernel has torn it down: EBUSY for a moment, so try again for up to 2 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let (tx, rx, fq) = loop {
            // Safety: this UMEM is bound once, to this one (interface, queue).
            match unsafe { Socket::new(sock_cfg, &umem, &name, queue) } {
                Ok(s) => break s,
                Err(e) => {
                    let cause = std::error::Error::source(&e);
                    let busy = cause
                        .and_then(|c| c.downcast_ref::<std::io::Error>())
                        .is_some_and(|c| c.raw_os_error() == Some(libc::EBUSY));
                    if busy && std::time::Instant::now() < deadline {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        continue;
                    }
                    let cause = cause.map(|s| format!(": {s}")).unwrap_or_default();
                    return Err(anyhow!("{e}{cause}"))
                        .with_context(|| format!("AF_XDP socket on {iface} queue {queue}"));
                }
            }
        };
        let (fill, comp) = fq.ok_or_else(|| anyhow!("no fill/completion ring"))?;
        Ok(Port {
            umem,
            tx,
            rx,
            fill,
            comp,
            free,
        })
    }

    pub fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.rx.fd().as_raw_fd()
    }

    /// Takes completed transmissions back into `free`; returns how many.
    pub fn reclaim(&mut self, scratch: &mut [FrameDesc]) -> usize {
        // Safety: the completion ring returns only frames this port put in its TX ring.
        let n = unsafe { self.comp.consume(scratch) };
        self.free.extend_from_slice(&scratch[..n]);
        n
    }

    /// Gives every free frame to the kernel's fill ring (as many as fit).
    pub fn refill(&mut self) {
        if self.free.is_empty() {
            return;
        }
        let room = self.fill.nb_free(self.free.len() as u32) as usize;
        let k = room.min(self.free.len());
        if k == 0 {
            return;
        }
        let start = self.free.len() - k;
        // Safety: the frames are ours and in no ring.
        let put = unsafe { self.fill.produce(&self.free[start..]) };
        self.free.truncate(self.free.len() - put);
    }
}

/// CLOCK_MONOTONIC in nanoseconds (the workers' clock): the generator's stamps and the
/// sink's arrival times, which every process on the machine shares.
pub fn mono_ns() -> u64 {
    xlvs_dataplane::afxdp::now().0
}
