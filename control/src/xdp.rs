//! Loads the XDP program, attaches it, and keeps its maps in step with the services table.

use std::collections::BTreeSet;
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData, PerCpuArray, XskMap};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode};
use xlvs_common::{
    AddrKey, COUNTERS, EgressPorts, IfaceSlot, L4Key, LOCAL_ADDRS_MAX, MAP_COUNTERS, MAP_EGRESS,
    MAP_EGRESS_GEN, MAP_IFACES, MAP_LOCAL_ADDRS, MAP_OFFLOAD, MAP_REALS, MAP_SERVICES, MAP_XSKS,
    MAX_IFACES, MAX_QUEUES, MAX_STEER_KEYS, PROG_NAME, SteerValue,
};
use xlvs_dataplane::bond::Egress;

/// The XDP object built from `ebpf/` by build.rs.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xlvs"));

/// The benchmark rig's XDP object (`ebpf/src/bench.rs`: sink, XDP-only forwarder), built with
/// the product's; only `xlvs-bench` loads it.
pub static BENCH_XDP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xlvs-bench"));

/// The loaded XDP program and its maps.
///
/// With a pin directory, each interface's XDP link is pinned there (`IFNAME@netINODE`, the
/// network namespace's inode telling apart namespaces with the same interface names), so the
/// program outlives a crashed xlvsd: its frames for the virtual services are then dropped
/// (no socket to redirect to), never handed to the director's stack, until keepalived moves
/// the VIPs to the peer. A starting xlvsd finds the pinned link and swaps its own program in
/// atomically (`BPF_LINK_UPDATE`): no frame goes to the kernel during a restart.
///
/// Dropping it detaches the program from every interface, unless it was told to stay
/// ([`XdpSteering::stay_attached`], set once the daemon runs): a panic then leaves the
/// pinned program in place, as a crash does; an orderly stop calls it with `false` first.
pub struct XdpSteering {
    ebpf: Ebpf,
    xsks: XskMap<MapData>,
    services: HashMap<MapData, L4Key, SteerValue>,
    reals: HashMap<MapData, L4Key, SteerValue>,
    local: HashMap<MapData, AddrKey, u32>,
    ifaces: HashMap<MapData, u32, IfaceSlot>,
    counters: PerCpuArray<MapData, u64>,
    /// The ports the fast path's frames leave by, per logical interface, and each port's
    /// ifindex (by slot, [`XdpSteering::set_iface`]).
    egress: Array<MapData, EgressPorts>,
    egress_gen: Array<MapData, u32>,
    /// The copy of `egress` the program reads.
    egress_copy: u32,
    port_ifindex: [u32; MAX_IFACES as usize],
    /// The fast path's map: the workers use it through its descriptor.
    offload: MapData,
    cur_services: BTreeSet<L4Key>,
    cur_reals: BTreeSet<L4Key>,
    cur_local: BTreeSet<AddrKey>,
    pin_dir: Option<PathBuf>,
    pins: Vec<PinnedLink>,
    stay: bool,
}

/// How the program ended up attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Native,
    Skb,
    /// A link left pinned by a previous xlvsd, in the mode it chose.
    Pinned,
}

/// Where `iface`'s link is pinned in `dir`: `IFNAME@netINODE` (None if this namespace's
/// inode cannot be read).
pub fn pin_path(dir: &Path, iface: &str) -> Option<PathBuf> {
    let ino = std::fs::metadata("/proc/self/ns/net").ok()?.ino();
    Some(dir.join(format!("{iface}@net{ino}")))
}

impl Drop for XdpSteering {
    fn drop(&mut self) {
        if self.stay {
            // The pins keep the links; the fds close with the process.
            return;
        }
        for p in self.pins.drain(..) {
            // Unpinned, the link goes when its last fd closes, here.
            if let Err(e) = p.unpin() {
                log::warn!("unpinning an XDP link: {e}");
            }
        }
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<T>
where
    T: TryFrom<aya::maps::Map>,
    <T as TryFrom<aya::maps::Map>>::Error: std::error::Error + Send + Sync + 'static,
{
    let m = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the XDP object"))?;
    T::try_from(m).with_context(|| format!("map {name}"))
}

impl XdpSteering {
    /// Loads the program into the kernel (not attached yet); links are pinned in `pin_dir`
    /// (a directory on a bpffs) if given.
    pub fn load(pin_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut ebpf = Ebpf::load(XDP_OBJECT).context("loading the XDP object")?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROG_NAME)
            .ok_or_else(|| anyhow!("program {PROG_NAME} missing"))?
            .try_into()
            .context("program type")?;
        prog.load().context("loading the XDP program (verifier)")?;
        Ok(XdpSteering {
            xsks: take(&mut ebpf, MAP_XSKS)?,
            services: take(&mut ebpf, MAP_SERVICES)?,
            reals: take(&mut ebpf, MAP_REALS)?,
            local: take(&mut ebpf, MAP_LOCAL_ADDRS)?,
            ifaces: take(&mut ebpf, MAP_IFACES)?,
            counters: take(&mut ebpf, MAP_COUNTERS)?,
            egress: take(&mut ebpf, MAP_EGRESS)?,
            egress_gen: take(&mut ebpf, MAP_EGRESS_GEN)?,
            egress_copy: 0,
            port_ifindex: [0; MAX_IFACES as usize],
            offload: match ebpf.take_map(MAP_OFFLOAD) {
                Some(aya::maps::Map::HashMap(m)) => m,
                _ => return Err(anyhow!("map {MAP_OFFLOAD} missing from the XDP object")),
            },
            ebpf,
            cur_services: BTreeSet::new(),
            cur_reals: BTreeSet::new(),
            cur_local: BTreeSet::new(),
            pin_dir,
            pins: Vec::new(),
            stay: false,
        })
    }

    /// The fast path map's descriptor, open as long as this is.
    pub fn offload_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::{AsFd, AsRawFd};
        self.offload.fd().as_fd().as_raw_fd()
    }

    /// Whether dropping this leaves the pinned links (and the program) attached.
    pub fn stay_attached(&mut self, stay: bool) {
        self.stay = stay;
    }

    /// Records an interface's XSKMAP block (slot = its index among the driven interfaces).
    pub fn set_iface(&mut self, ifindex: u32, slot: u32, queues: u32) -> anyhow::Result<()> {
        let v = IfaceSlot {
            xsk_base: slot * MAX_QUEUES,
            queues,
            pass_after_ns: 0,
        };
        self.ifaces.insert(ifindex, v, 0).context("IFACES map")?;
        if let Some(p) = self.port_ifindex.get_mut(slot as usize) {
            *p = ifindex;
        }
        Ok(())
    }

    /// Makes the fast path send each logical interface's frames where `egress` (by
    /// `IfaceId`) says: the ports' ifindexes (slots given to [`XdpSteering::set_iface`]
    /// first), in order, so that the program's `ifindex[hash % count]` is the workers'
    /// `ports[hash % count]`. A port without a usable ifindex (not set up yet, or taking no
    /// XDP redirects) leaves its interface none: its frames go to the workers. Written into
    /// the copy the program does not read, which then becomes current: a frame sees the
    /// old ports or the new, never a mix.
    pub fn set_egress(&mut self, egress: &[Egress]) -> anyhow::Result<()> {
        let next = self.egress_copy ^ 1;
        for i in 0..MAX_IFACES {
            let mut v = EgressPorts::default();
            for &p in egress.get(i as usize).map_or(&[][..], Egress::ports) {
                match self.port_ifindex.get(p as usize) {
                    Some(&ix) if ix != 0 => {
                        v.ifindex[v.count as usize] = ix;
                        v.count += 1;
                    }
                    _ => {
                        v.count = 0;
                        break;
                    }
                }
            }
            self.egress
                .set(next * MAX_IFACES + i, v, 0)
                .context("EGRESS map")?;
        }
        self.egress_gen.set(0, next, 0).context("EGRESS_GEN map")?;
        self.egress_copy = next;
        Ok(())
    }

    /// Leaves a port out of the fast path's egress (it takes no XDP redirects): from the next
    /// [`XdpSteering::set_egress`] on, an interface that transmits on it leaves its frames to
    /// the workers.
    pub fn no_redirects_to(&mut self, slot: u32) {
        if let Some(p) = self.port_ifindex.get_mut(slot as usize) {
            *p = 0;
        }
    }

    /// Leaves the program for a restart: until `until_ns` (CLOCK_MONOTONIC) its frames for
    /// the virtual services keep being dropped once the sockets close, then they go to the
    /// kernel; the links stay pinned. False (nothing changed) if no link is pinned.
    pub fn leave_for_restart(&mut self, until_ns: u64) -> anyhow::Result<bool> {
        if self.pins.is_empty() {
            return Ok(false);
        }
        let all: Vec<(u32, IfaceSlot)> = self.ifaces.iter().filter_map(Result::ok).collect();
        for (ifindex, mut v) in all {
            v.pass_after_ns = until_ns.max(1);
            self.ifaces.insert(ifindex, v, 0).context("IFACES map")?;
        }
        self.stay = true;
        Ok(true)
    }

    /// Puts an AF_XDP socket in the XSKMAP.
    pub fn set_socket(&mut self, slot: u32, queue: u32, fd: RawFd) -> anyhow::Result<()> {
        self.xsks
            .set(slot * MAX_QUEUES + queue, fd, 0)
            .context("XSKMAP")?;
        Ok(())
    }

    /// Attaches to `iface` natively, falling back to SKB (generic) mode with a warning; with
    /// a pin directory, replaces the program of a link a previous xlvsd left pinned there
    /// (keeping its mode), and pins the link.
    pub fn attach(&mut self, iface: &str) -> anyhow::Result<Mode> {
        let pin = self.pin_dir.as_deref().and_then(|d| pin_path(d, iface));
        if let Some(path) = &pin
            && path.exists()
        {
            match self.replace_pinned(path) {
                Ok(()) => {
                    log::info!(
                        "XDP on {iface}: took over the link left pinned at {} (the program swapped atomically)",
                        path.display()
                    );
                    return Ok(Mode::Pinned);
                }
                Err(e) => {
                    log::warn!(
                        "XDP on {iface}: the link pinned at {} cannot be reused ({e:#}); attaching afresh",
                        path.display()
                    );
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROG_NAME)
            .expect("loaded")
            .try_into()?;
        let (id, mode) = match prog.attach(iface, XdpMode::Driver) {
            Ok(id) => (id, Mode::Native),
            Err(e) => {
                log::warn!(
                    "native XDP on {iface} failed ({e}); using SKB (generic) mode, which is slower"
                );
                let id = prog
                    .attach(iface, XdpMode::Skb)
                    .with_context(|| format!("attaching XDP to {iface} in SKB mode"))?;
                (id, Mode::Skb)
            }
        };
        if let Some(path) = pin {
            // The link moves out of the program's keeping into ours, pinned.
            let link = prog.take_link(id)?;
            match FdLink::try_from(link) {
                Ok(fd) => match fd.pin(&path) {
                    Ok(p) => self.pins.push(p),
                    Err(e) => log::warn!(
                        "XDP on {iface}: cannot pin its link at {} ({e}); a crashed xlvsd will leave the VIPs' frames to the kernel",
                        path.display()
                    ),
                },
                Err(e) => log::warn!(
                    "XDP on {iface}: not a bpf_link ({e}), not pinned; a crashed xlvsd will leave the VIPs' frames to the kernel"
                ),
            }
        }
        Ok(mode)
    }

    /// Swaps this program into the link pinned at `path`, and keeps it pinned there.
    fn replace_pinned(&mut self, path: &Path) -> anyhow::Result<()> {
        let fd = PinnedLink::from_pin(path)
            .context("opening the pin")?
            .unpin()
            .context("unpinning")?;
        let link = XdpLink::try_from(fd).context("not an XDP link")?;
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROG_NAME)
            .expect("loaded")
            .try_into()?;
        let id = prog.attach_to_link(link).context("replacing its program")?;
        let fd = FdLink::try_from(prog.take_link(id)?).context("the link")?;
        self.pins.push(fd.pin(path).context("pinning it again")?);
        Ok(())
    }

    /// Makes the steering maps hold exactly these keys: virtual services, LVS-NAT realservers
    /// and the director's own addresses (adds first, then removes).
    pub fn set_keys(
        &mut self,
        services: &[L4Key],
        reals: &[L4Key],
        local: &[AddrKey],
    ) -> anyhow::Result<()> {
        let steer = MAX_STEER_KEYS as usize;
        let v = SteerValue::default();
        sync_set(
            &mut self.services,
            &mut self.cur_services,
            services,
            v,
            steer,
        )?;
        sync_set(&mut self.reals, &mut self.cur_reals, reals, v, steer)?;
        sync_set(
            &mut self.local,
            &mut self.cur_local,
            local,
            0,
            LOCAL_ADDRS_MAX as usize,
        )?;
        Ok(())
    }

    /// Runs the loaded program once on `frame` as if it had arrived on interface `ifindex`,
    /// RX queue `queue` (`BPF_PROG_TEST_RUN`, nothing attached, nothing sent): its XDP action.
    /// A steered frame comes back `XDP_DROP` when the queue has no socket (tests and the
    /// `xdp_steer` fuzz target rely on that), `XDP_PASS` when it is not steered.
    pub fn test_run(&self, frame: &[u8], ifindex: u32, queue: u32) -> std::io::Result<u32> {
        self.test_run_out(frame, ifindex, queue)
            .map(|(action, _)| action)
    }

    /// [`XdpSteering::test_run`], with the frame as the program left it.
    pub fn test_run_out(
        &self,
        frame: &[u8],
        ifindex: u32,
        queue: u32,
    ) -> std::io::Result<(u32, Vec<u8>)> {
        self.test_run_repeat(frame, ifindex, queue, 1)
            .map(|(action, out, _)| (action, out))
    }

    /// [`XdpSteering::test_run_out`] `repeat` times over the same buffer (each run sees
    /// what the previous one left), with the kernel's average time per run in ns (a
    /// benchmark's figure: `bench/examples/xdp_cost.rs`).
    pub fn test_run_repeat(
        &self,
        frame: &[u8],
        ifindex: u32,
        queue: u32,
        repeat: u32,
    ) -> std::io::Result<(u32, Vec<u8>, u32)> {
        let prog: &Xdp = self
            .ebpf
            .program(PROG_NAME)
            .ok_or_else(|| std::io::Error::other("program missing"))?
            .try_into()
            .map_err(std::io::Error::other)?;
        test_run(prog, frame, ifindex, queue, repeat)
    }

    /// Summed per-CPU counters: [steered, passed, redirect_failed].
    pub fn counters(&self) -> [u64; COUNTERS as usize] {
        let mut out = [0u64; COUNTERS as usize];
        for (i, o) in out.iter_mut().enumerate() {
            if let Ok(v) = self.counters.get(&(i as u32), 0) {
                *o = v.iter().sum();
            }
        }
        out
    }
}

/// Brings `map` to the keys `want`, adding before removing so a key that stays is never
/// missing; if old and new together would not fit in the map (`capacity`), stale keys go
/// first. `cur` follows the map key by key, so after a failure it still says what is there
/// and the next sync carries on from it.
fn sync_set<K: aya::Pod + Ord, V: aya::Pod + Copy>(
    map: &mut HashMap<MapData, K, V>,
    cur: &mut BTreeSet<K>,
    want: &[K],
    value: V,
    capacity: usize,
) -> anyhow::Result<()> {
    let want: BTreeSet<K> = want.iter().copied().collect();
    let added: Vec<K> = want.difference(cur).copied().collect();
    let stale: Vec<K> = cur.difference(&want).copied().collect();
    let remove = |map: &mut HashMap<MapData, K, V>, cur: &mut BTreeSet<K>| {
        for k in &stale {
            let _ = map.remove(k);
            cur.remove(k);
        }
    };
    let remove_first = cur.len() + added.len() > capacity;
    if remove_first {
        remove(map, cur);
    }
    for k in added {
        map.insert(k, value, 0).context("updating a steering map")?;
        cur.insert(k);
    }
    if !remove_first {
        remove(map, cur);
    }
    Ok(())
}

/// Runs a loaded XDP program on `frame` (`BPF_PROG_TEST_RUN`, root) `repeat` times over
/// the same buffer (each run sees what the previous one left): the last run's action, the
/// frame as it left it, and the kernel's average time per run in ns.
pub fn test_run(
    prog: &Xdp,
    frame: &[u8],
    ifindex: u32,
    queue: u32,
    repeat: u32,
) -> std::io::Result<(u32, Vec<u8>, u32)> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let fd = prog.fd().map_err(std::io::Error::other)?;
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
    // egress_ifindex.
    // The kernel wants data 0 and data_end the frame's length.
    let ctx: [u32; 6] = [0, frame.len() as u32, 0, ifindex, queue, 0];
    let mut out = vec![0u8; frame.len() + 256];
    // union bpf_attr's `test` member (BPF_PROG_TEST_RUN).
    #[repr(C)]
    #[derive(Default)]
    struct TestAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _pad: u32,
    }
    let mut attr = TestAttr {
        prog_fd: fd.as_fd().as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ctx_size_in: std::mem::size_of_val(&ctx) as u32,
        ctx_in: ctx.as_ptr() as u64,
        ..TestAttr::default()
    };
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    // SAFETY: `attr` is a valid bpf_attr prefix for this command; the buffers it points at
    // live across the call with the sizes given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestAttr,
            std::mem::size_of::<TestAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    out.truncate(attr.data_size_out as usize);
    Ok((attr.retval, out, attr.duration))
}

#[cfg(test)]
mod tests {
    //! The real XDP program run by the kernel on crafted frames (`BPF_PROG_TEST_RUN`, nothing
    //! attached): what it steers and what it leaves to the kernel.
    use std::net::Ipv4Addr;

    use xlvs_common::{AddrKey, L4Key, PROTO_TCP, PROTO_UDP};
    use xlvs_dataplane::bond::Egress;
    use xlvs_dataplane::testing::{
        CLIENT_MAC, EXT_MAC, INT_MAC, tcp_frame, udp_frame, vlan_tagged,
    };
    use xlvs_dataplane::wire::tcp::{ACK, SYN};

    use super::{XDP_OBJECT, XdpSteering};

    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const RIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 11);
    const DIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);

    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn the_program_steers_services_and_nat_replies_and_passes_the_rest() {
        if !root() {
            eprintln!("skipped: loading an XDP program needs root");
            return;
        }
        let vip6: std::net::Ipv6Addr = "2001:db8::100".parse().unwrap();
        let cip6: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
        let mut x = XdpSteering::load(None).expect("load");
        x.set_keys(
            &[
                L4Key::v4(VIP.octets(), 80, PROTO_TCP),
                L4Key::v4(VIP.octets(), 53, PROTO_UDP),
                L4Key::v6(vip6.octets(), 80, PROTO_TCP),
            ],
            &[L4Key::v4(RIP.octets(), 8080, PROTO_TCP)],
            &[AddrKey::v4(DIP.octets())],
        )
        .unwrap();
        // Interface 1 (lo), one RX queue, no socket: a steered frame is dropped.
        x.set_iface(1, 0, 1).unwrap();
        // XDP_DROP (steered, no socket here), XDP_PASS.
        const STEER: u32 = 1;
        const PASS: u32 = 2;
        let syn = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 40000), (VIP, 80), SYN, 64, b"");
        let tagged = vlan_tagged(&syn, 42);
        let qinq = {
            let mut f = syn[..12].to_vec();
            f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x07, 0x81, 0x00, 0x00, 0x2a]);
            f.extend_from_slice(&syn[12..]);
            f
        };
        let mut arp = vec![0xffu8; 6];
        arp.extend_from_slice(&CLIENT_MAC);
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0u8; 28]);
        // (what, frame, expected action)
        let fixtures: Vec<(&str, Vec<u8>, u32)> = vec![
            ("a SYN to the service", syn.clone(), STEER),
            (
                "the VIP on another port",
                tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 40000), (VIP, 81), SYN, 64, b""),
                PASS,
            ),
            (
                "a datagram to the UDP service",
                udp_frame(CLIENT_MAC, EXT_MAC, (CIP, 5353), (VIP, 53), b"q"),
                STEER,
            ),
            (
                "TCP to the UDP service's port",
                tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 40000), (VIP, 53), SYN, 64, b""),
                PASS,
            ),
            (
                "a NAT realserver's reply",
                tcp_frame(
                    INT_MAC,
                    EXT_MAC,
                    (RIP, 8080),
                    (CIP, 40000),
                    SYN | ACK,
                    64,
                    b"",
                ),
                STEER,
            ),
            (
                "a realserver answering the director's health check",
                tcp_frame(
                    INT_MAC,
                    EXT_MAC,
                    (RIP, 8080),
                    (DIP, 50000),
                    SYN | ACK,
                    64,
                    b"",
                ),
                PASS,
            ),
            ("a SYN with one 802.1Q tag", tagged, STEER),
            ("a SYN in QinQ (left to the kernel)", qinq, PASS),
            (
                "an IPv6 SYN to the IPv6 service",
                tcp_frame(CLIENT_MAC, EXT_MAC, (cip6, 40000), (vip6, 80), SYN, 64, b""),
                STEER,
            ),
            ("ARP", arp, PASS),
            ("a frame cut inside its IP header", syn[..20].to_vec(), PASS),
        ];
        for (what, frame, want) in &fixtures {
            let got = x.test_run(frame, 1, 0).expect("test run");
            assert_eq!(got, *want, "{what}: counters {:?}", x.counters());
        }
        let c = x.counters();
        assert_eq!(c[0], 0, "nothing redirected without sockets");
        assert_eq!(c[2], 5, "failed redirects counted: {c:?}");
    }

    /// The fast path: with an `OFFLOAD` entry built (as a worker builds it) from the frame
    /// the core rewrote, the program rewrites the next frame of the flow into exactly that
    /// frame and redirects it; a FIN, a TTL of 1 and another flow still go to the workers.
    #[test]
    fn the_fast_path_rewrites_as_the_core_did() {
        if !root() {
            eprintln!("skipped: loading an XDP program needs root");
            return;
        }
        use xlvs_dataplane::core::conn::ConnKey;
        use xlvs_dataplane::core::offload::{OffloadRequest, flow_key};
        use xlvs_dataplane::offload_map::{OffloadMap, entry};
        use xlvs_dataplane::wire::tcp::FIN;
        let mut x = XdpSteering::load(None).expect("load");
        x.set_keys(
            &[
                L4Key::v4(VIP.octets(), 80, PROTO_TCP),
                L4Key::v4(VIP.octets(), 53, PROTO_UDP),
            ],
            &[],
            &[AddrKey::v4(DIP.octets())],
        )
        .unwrap();
        x.set_iface(1, 0, 1).unwrap();
        x.set_egress(&[Egress::Port(0)]).unwrap();
        let map = OffloadMap::new(x.offload_fd());
        const REDIRECT: u32 = 4;
        const DROP: u32 = 1;
        let seg = |flags, ttl, payload: &[u8]| {
            tcp_frame(
                CLIENT_MAC,
                EXT_MAC,
                (CIP, 40000),
                (VIP, 80),
                flags,
                ttl,
                payload,
            )
        };
        // What the core made of it: DNAT to RIP:8080, TTL down one, the realserver's MAC.
        let rewritten = |flags, payload: &[u8]| {
            tcp_frame(
                EXT_MAC,
                INT_MAC,
                (CIP, 40000),
                (RIP, 8080),
                flags,
                63,
                payload,
            )
        };
        let tuple = |sport, dst, dport, proto| ConnKey {
            src: CIP,
            dst,
            sport,
            dport,
            proto,
        };
        let key = flow_key(&tuple(40000, VIP, 80, PROTO_TCP));
        let req = |key| OffloadRequest { key, sync: None };
        let e = entry(&req(key), &rewritten(ACK, b"first"), (0, 0), 1).expect("an entry");
        assert!(map.update(&key, &e));
        for payload in [&b"second"[..], b"", b"a longer payload, odd length"] {
            let (action, out) = x.test_run_out(&seg(ACK, 64, payload), 1, 0).unwrap();
            assert_eq!(action, REDIRECT, "{payload:?}");
            assert_eq!(out, rewritten(ACK, payload), "{payload:?}");
        }
        // An IP length the frame does not hold: to the workers (which drop it as malformed),
        // not forwarded nor counted.
        let mut long = seg(ACK, 64, b"short");
        long[16..18].copy_from_slice(&1500u16.to_be_bytes());
        assert_eq!(x.test_run(&long, 1, 0).unwrap(), DROP);
        let v = map.lookup(&key).unwrap();
        assert_eq!(v.packets, 3);
        assert!(v.last_ns > 0);
        // What the control thread reads once a second.
        let all = map.entries();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].0, all[0].1.packets), (key, 3));
        // To the workers (here: no socket, dropped as steered).
        assert_eq!(x.test_run(&seg(FIN | ACK, 64, b""), 1, 0).unwrap(), DROP);
        assert_eq!(x.test_run(&seg(ACK, 1, b""), 1, 0).unwrap(), DROP);
        let other = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 40001), (VIP, 80), ACK, 64, b"");
        assert_eq!(x.test_run(&other, 1, 0).unwrap(), DROP);
        assert_eq!(x.counters()[3], 3, "offloaded frames counted");
        // A tagged frame (one 802.1Q tag, kept): the same, at the tag's offset.
        // The core's rewrite of a tagged segment from port 40002, and the segment.
        let trewritten = |payload: &[u8]| {
            let f = tcp_frame(
                EXT_MAC,
                INT_MAC,
                (CIP, 40002),
                (RIP, 8080),
                ACK,
                63,
                payload,
            );
            vlan_tagged(&f, 42)
        };
        let tkey = flow_key(&tuple(40002, VIP, 80, PROTO_TCP));
        let te = entry(&req(tkey), &trewritten(b"first"), (0, 0), 1)
            .expect("an entry for a tagged frame");
        assert!(map.update(&tkey, &te));
        let twant = trewritten(b"tagged");
        let tseg = tcp_frame(
            CLIENT_MAC,
            EXT_MAC,
            (CIP, 40002),
            (VIP, 80),
            ACK,
            64,
            b"tagged",
        );
        let (action, out) = x.test_run_out(&vlan_tagged(&tseg, 42), 1, 0).unwrap();
        assert_eq!(action, REDIRECT);
        assert_eq!(out, twant, "the tagged frame rewritten, its tag kept");
        let tv = map.lookup(&tkey).unwrap();
        assert_eq!(
            (tv.packets, tv.bytes),
            (1, 20 + 20 + 6),
            "IP lengths counted, not the frame's"
        );
        map.delete(&tkey);
        // The egress: none usable (a bond's members all down), to the workers; a bond of
        // two ports, by the program again.
        x.set_egress(&[Egress::Down]).unwrap();
        assert_eq!(x.test_run(&seg(ACK, 64, b""), 1, 0).unwrap(), DROP);
        x.set_iface(2, 1, 1).unwrap();
        let bond = Egress::hashed(xlvs_dataplane::bond::XmitHash::Layer34, &[0, 1]);
        x.set_egress(&[bond]).unwrap();
        assert_eq!(x.test_run(&seg(ACK, 64, b""), 1, 0).unwrap(), REDIRECT);
        assert_eq!(map.lookup(&key).unwrap().packets, 4);
        x.set_egress(&[Egress::Port(0)]).unwrap();
        // UDP: a datagram with a checksum gets it rewritten; one without keeps none.
        let dgram = |dst: (Ipv4Addr, u16), mac| udp_frame(CLIENT_MAC, mac, (CIP, 5353), dst, b"q");
        let mut want = dgram((RIP, 5300), INT_MAC);
        want[6..12].copy_from_slice(&EXT_MAC);
        want[22] = 63;
        let ip_ck = xlvs_dataplane::wire::checksum::compute(&{
            let mut h = want[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        want[24..26].copy_from_slice(&ip_ck.to_be_bytes());
        let ukey = flow_key(&tuple(5353, VIP, 53, PROTO_UDP));
        let ue = entry(&req(ukey), &want, (0, 0), 1).expect("a UDP entry");
        assert!(map.update(&ukey, &ue));
        let (action, out) = x.test_run_out(&dgram((VIP, 53), EXT_MAC), 1, 0).unwrap();
        assert_eq!(action, REDIRECT);
        assert_eq!(out[..40], want[..40]);
        assert_eq!(out[40..42], want[40..42], "the UDP checksum");
        let mut nock = dgram((VIP, 53), EXT_MAC);
        nock[40] = 0;
        nock[41] = 0;
        let (_, out) = x.test_run_out(&nock, 1, 0).unwrap();
        assert_eq!(out[40..42], [0, 0], "no checksum stays none");
        // More entries than one batch read takes: each read once.
        for p in 0..3000u16 {
            let k = flow_key(&tuple(10_000 + p, VIP, 80, PROTO_TCP));
            assert!(map.update(&k, &ue));
        }
        let t = std::time::Instant::now();
        let mut all: Vec<_> = map.entries().into_iter().map(|(k, _)| k).collect();
        eprintln!("read {} entries in {:?}", all.len(), t.elapsed());
        assert_eq!(all.len(), 3002);
        all.sort_by_key(|k| (k.sport, k.proto));
        all.dedup();
        assert_eq!(all.len(), 3002, "an entry read twice");
    }

    /// The fast path over IPv6: the program rewrites a TCP segment and a UDP datagram as
    /// the core did (hop limit down one, addresses, ports, MACs, the TCP or UDP checksum by
    /// the entry's delta), with or without an 802.1Q tag, counts IP lengths (the 40-byte
    /// header and the payload), and leaves a hop limit of 1, a FIN, a payload length the
    /// frame does not hold and a segment with an extension header to the workers.
    #[test]
    fn the_fast_path_rewrites_ipv6_as_the_core_did() {
        if !root() {
            eprintln!("skipped: loading an XDP program needs root");
            return;
        }
        use std::net::Ipv6Addr;
        use xlvs_dataplane::core::conn::ConnKey;
        use xlvs_dataplane::core::offload::{OffloadRequest, flow_key};
        use xlvs_dataplane::offload_map::{OffloadMap, entry};
        use xlvs_dataplane::wire::tcp::FIN;
        const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
        const CIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
        const RIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x11);
        const REDIRECT: u32 = 4;
        const DROP: u32 = 1;
        let mut x = XdpSteering::load(None).expect("load");
        x.set_keys(
            &[
                L4Key::v6(VIP6.octets(), 80, PROTO_TCP),
                L4Key::v6(VIP6.octets(), 53, PROTO_UDP),
            ],
            &[],
            &[],
        )
        .unwrap();
        x.set_iface(1, 0, 1).unwrap();
        x.set_egress(&[Egress::Port(0)]).unwrap();
        let map = OffloadMap::new(x.offload_fd());
        let seg = |sport, flags, hops, payload: &[u8]| {
            tcp_frame(
                CLIENT_MAC,
                EXT_MAC,
                (CIP6, sport),
                (VIP6, 80),
                flags,
                hops,
                payload,
            )
        };
        // What the core made of it: DNAT to RIP6:8080, hop limit down one, the realserver's
        // MAC.
        let rewritten = |sport, payload: &[u8]| {
            tcp_frame(
                EXT_MAC,
                INT_MAC,
                (CIP6, sport),
                (RIP6, 8080),
                ACK,
                63,
                payload,
            )
        };
        let key = |sport, dport, proto| {
            flow_key(&ConnKey {
                src: CIP6,
                dst: VIP6,
                sport,
                dport,
                proto,
            })
        };
        let req = |key| OffloadRequest { key, sync: None };
        let k = key(40000, 80, PROTO_TCP);
        let e = entry(&req(k), &rewritten(40000, b"first"), (0, 0), 1).expect("an entry");
        assert!(map.update(&k, &e));
        for payload in [&b"second"[..], b"", b"a longer payload, odd length"] {
            let (action, out) = x.test_run_out(&seg(40000, ACK, 64, payload), 1, 0).unwrap();
            assert_eq!(action, REDIRECT, "{payload:?}");
            assert_eq!(out, rewritten(40000, payload), "{payload:?}");
        }
        let v = map.lookup(&k).unwrap();
        assert_eq!(
            (v.packets, v.bytes),
            (3, 3 * (40 + 20) + 6 + 28),
            "IP lengths counted"
        );
        assert!(v.last_ns > 0);
        // To the workers (here: no socket, dropped as steered), uncounted.
        assert_eq!(
            x.test_run(&seg(40000, FIN | ACK, 64, b""), 1, 0).unwrap(),
            DROP
        );
        assert_eq!(x.test_run(&seg(40000, ACK, 1, b""), 1, 0).unwrap(), DROP);
        let mut long = seg(40000, ACK, 64, b"short");
        long[18..20].copy_from_slice(&1400u16.to_be_bytes());
        assert_eq!(x.test_run(&long, 1, 0).unwrap(), DROP);
        // A hop-by-hop options header (8 bytes of padding) before the TCP header.
        let mut hbh = seg(40000, ACK, 64, b"x");
        let plen = u16::from_be_bytes([hbh[18], hbh[19]]) + 8;
        hbh[18..20].copy_from_slice(&plen.to_be_bytes());
        hbh[20] = 0;
        hbh.splice(54..54, [PROTO_TCP, 0, 1, 4, 0, 0, 0, 0]);
        assert_eq!(x.test_run(&hbh, 1, 0).unwrap(), 2, "passed to the kernel");
        // A first fragment of the same tuple (a fragment header, more to come): to the
        // workers, not the fast path.
        let mut frag = seg(40000, ACK, 64, b"x");
        let plen = u16::from_be_bytes([frag[18], frag[19]]) + 8;
        frag[18..20].copy_from_slice(&plen.to_be_bytes());
        frag[20] = 44;
        frag.splice(54..54, [PROTO_TCP, 0, 0, 1, 0, 0, 0, 9]);
        assert_eq!(
            x.test_run(&frag, 1, 0).unwrap(),
            DROP,
            "steered to a worker"
        );
        assert_eq!(map.lookup(&k).unwrap().packets, 3);
        // One 802.1Q tag, kept.
        let tk = key(40002, 80, PROTO_TCP);
        let te = entry(
            &req(tk),
            &vlan_tagged(&rewritten(40002, b"first"), 42),
            (0, 0),
            1,
        )
        .expect("an entry for a tagged frame");
        assert!(map.update(&tk, &te));
        let (action, out) = x
            .test_run_out(&vlan_tagged(&seg(40002, ACK, 64, b"tagged"), 42), 1, 0)
            .unwrap();
        assert_eq!(action, REDIRECT);
        assert_eq!(out, vlan_tagged(&rewritten(40002, b"tagged"), 42));
        // UDP: the checksum, mandatory over IPv6, follows the rewrite.
        let dgram = |dst: (Ipv6Addr, u16), mac| udp_frame(CLIENT_MAC, mac, (CIP6, 5353), dst, b"q");
        let mut want = dgram((RIP6, 5300), INT_MAC);
        want[6..12].copy_from_slice(&EXT_MAC);
        want[21] = 63;
        let uk = key(5353, 53, PROTO_UDP);
        let ue = entry(&req(uk), &want, (0, 0), 1).expect("a UDP entry");
        assert!(map.update(&uk, &ue));
        let (action, out) = x.test_run_out(&dgram((VIP6, 53), EXT_MAC), 1, 0).unwrap();
        assert_eq!(action, REDIRECT);
        assert_eq!(out, want);
        assert_eq!(x.counters()[3], 5, "offloaded frames counted");
        // A sync master's count: the frame the sync rule picks (here the next) goes to the
        // worker, the entry holding its TCP sequence number as the mark.
        let sk = key(40004, 80, PROTO_TCP);
        let sync = xlvs_dataplane::core::offload::SyncCount {
            pkts: 0,
            period: 0,
            due: 1,
        };
        let se = entry(
            &OffloadRequest {
                key: sk,
                sync: Some(sync),
            },
            &rewritten(40004, b"first"),
            (0, 0),
            1,
        )
        .unwrap();
        assert!(map.update(&sk, &se));
        assert_eq!(x.test_run(&seg(40004, ACK, 64, b"1"), 1, 0).unwrap(), DROP);
        assert_eq!(
            map.lookup(&sk).unwrap().handed,
            1000,
            "the segment's sequence number"
        );
        let (action, _) = x.test_run_out(&seg(40004, ACK, 64, b"2"), 1, 0).unwrap();
        assert_eq!(action, REDIRECT);
    }

    /// While a sync master runs, the program counts a client direction's frames as the
    /// core would (threshold 3, period 50) and hands the worker the 3rd, 53rd, 103rd (here:
    /// dropped as steered, no socket), leaving each one's mark; it forwards all the others.
    #[test]
    fn the_fast_path_hands_the_sync_rules_frames_to_the_workers() {
        if !root() {
            eprintln!("skipped: loading an XDP program needs root");
            return;
        }
        use xlvs_common::handoff_mark;
        use xlvs_dataplane::core::conn::ConnKey;
        use xlvs_dataplane::core::offload::{OffloadRequest, OffloadSeen, SyncCount, flow_key};
        use xlvs_dataplane::offload_map::{OffloadMap, entry};
        let mut x = XdpSteering::load(None).expect("load");
        x.set_keys(&[L4Key::v4(VIP.octets(), 80, PROTO_TCP)], &[], &[])
            .unwrap();
        x.set_iface(1, 0, 1).unwrap();
        x.set_egress(&[Egress::Port(0)]).unwrap();
        let mut map = OffloadMap::new(x.offload_fd());
        const REDIRECT: u32 = 4;
        const DROP: u32 = 1;
        let seg = |seq: u32| {
            let mut f = tcp_frame(CLIENT_MAC, EXT_MAC, (CIP, 40000), (VIP, 80), ACK, 64, b"x");
            f[38..42].copy_from_slice(&seq.to_be_bytes());
            f
        };
        let key = flow_key(&ConnKey {
            src: CIP,
            dst: VIP,
            sport: 40000,
            dport: 80,
            proto: PROTO_TCP,
        });
        let rewritten = tcp_frame(EXT_MAC, INT_MAC, (CIP, 40000), (RIP, 8080), ACK, 63, b"x");
        // Offered at the 2nd client packet (the handshake's ACK).
        let req = OffloadRequest {
            key,
            sync: Some(SyncCount {
                pkts: 2,
                period: 50,
                due: 3,
            }),
        };
        assert!(map.update(&key, &entry(&req, &rewritten, (0, 0), 1).unwrap()));
        let mut handed = Vec::new();
        for n in 3..=110u32 {
            let f = seg(n * 1000);
            let action = x.test_run(&f, 1, 0).unwrap();
            if action == DROP {
                handed.push(n);
                let mark = handoff_mark(
                    PROTO_TCP,
                    f[14..34].try_into().unwrap(),
                    f[34..42].try_into().unwrap(),
                );
                assert_eq!(map.handed(&key), Some(mark), "the {n}th packet's mark");
            } else {
                assert_eq!(action, REDIRECT, "packet {n}");
            }
        }
        assert_eq!(handed, [3, 53, 103], "the packets handed over");
        assert_eq!(map.lookup(&key).unwrap().packets, 108 - 3);
        assert_eq!(x.counters()[4], 3, "handed frames counted");
        // An entry without the count hands nothing and has no mark.
        let plain = OffloadRequest { key, sync: None };
        assert!(map.update(&key, &entry(&plain, &rewritten, (0, 0), 1).unwrap()));
        for n in 0..60u32 {
            assert_eq!(x.test_run(&seg(n), 1, 0).unwrap(), REDIRECT);
        }
        assert_eq!(map.handed(&key), None);
    }

    /// The program calls nothing but the kernel's helpers: no out-of-line `memset`,
    /// `memcpy` and the like, which the BPF target's compiler builtins implement a byte at a
    /// time (an IPv4 key written field by field cost 20–70 ns per frame that way). Reads the
    /// object's relocations, and its instructions for any BPF-to-BPF call (a call whose
    /// callee is local needs no relocation), so it needs no root.
    #[test]
    fn the_program_calls_no_byte_loops() {
        use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};
        let obj = object::File::parse(XDP_OBJECT).expect("the XDP object parses");
        let mut called = Vec::new();
        let mut sections = 0;
        let mut local_calls = 0;
        for sec in obj.sections() {
            let name = sec.name().unwrap_or("");
            if !(name == "xdp" || name.starts_with("xdp/") || name.starts_with(".text")) {
                continue;
            }
            if name.starts_with("xdp") {
                sections += 1;
                // `call` is opcode 0x85; a BPF-to-BPF one has source register 1
                // (BPF_PSEUDO_CALL) in the high nibble of the registers byte.
                let code = sec.data().expect("the program's instructions");
                local_calls += code
                    .chunks_exact(8)
                    .filter(|i| i[0] == 0x85 && i[1] >> 4 == 1)
                    .count();
            }
            for (_, r) in sec.relocations() {
                if let RelocationTarget::Symbol(i) = r.target() {
                    let sym = obj.symbol_by_index(i).expect("a relocation's symbol");
                    called.push(sym.name().unwrap_or("").to_string());
                }
            }
        }
        assert!(sections > 0, "the object has no program section");
        // The maps are relocations too: the check has something to look at.
        assert!(called.iter().any(|s| s == "OFFLOAD"), "{called:?}");
        let loops: Vec<_> = called
            .iter()
            .filter(|s| ["memset", "memcpy", "memmove", "memcmp", "bcmp"].contains(&s.as_str()))
            .collect();
        assert!(loops.is_empty(), "the program calls {loops:?}");
        assert_eq!(local_calls, 0, "the program calls functions of its own");
    }
}
