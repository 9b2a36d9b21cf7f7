//! The XDP program's own cost per frame, by the kernel's clock (`BPF_PROG_TEST_RUN`, needs
//! root; nothing attached, no frame leaves): an established connection's frame on the fast
//! path (IPv4 and IPv6, TCP), the same frame steered to a worker (no entry), and a frame
//! that is not for a service (passed to the kernel).
//!
//! `xdp_cost [ROUNDS]`: each case runs ROUNDS (default 300) times 250 repeats over one
//! buffer (the kernel's `repeat`: each run rewrites what the previous one left, so the
//! fast path's frame goes VIP:80 → RIP:8080 → VIP:80..., through two entries, and its TTL
//! starts at 255 and stays above 1) and prints the median, min and max of the rounds' ns
//! per run. A redirect here is only a return code: the cost of sending the frame
//! on (`xdp_do_redirect`, the driver's transmit) is not in these figures.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xlvs_common::{L4Key, PROTO_TCP};
use xlvs_control::xdp::XdpSteering;
use xlvs_dataplane::bond::Egress;
use xlvs_dataplane::core::conn::ConnKey;
use xlvs_dataplane::core::offload::{OffloadRequest, flow_key};
use xlvs_dataplane::offload_map::{OffloadMap, entry};
use xlvs_dataplane::testing::{CLIENT_MAC, EXT_MAC, INT_MAC, tcp_frame};
use xlvs_dataplane::wire::tcp::ACK;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const RIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 11);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const CIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
const RIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x11);
const REPEAT: u32 = 250;

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(300);
    let mut x = XdpSteering::load(None)?;
    let (c4, v4, r4) = (IpAddr::V4(CIP), IpAddr::V4(VIP), IpAddr::V4(RIP));
    let (c6, v6, r6) = (IpAddr::V6(CIP6), IpAddr::V6(VIP6), IpAddr::V6(RIP6));
    // The realservers' ports as services too, and the VIP's as a NAT realserver's: the fast
    // path's frame, rewritten, comes back to the program in the next run (a request to
    // RIP:8080, a reply from VIP:80) and is rewritten back by a second entry.
    let l4 = |a: IpAddr, port| match a {
        IpAddr::V4(a) => L4Key::v4(a.octets(), port, PROTO_TCP),
        IpAddr::V6(a) => L4Key::v6(a.octets(), port, PROTO_TCP),
    };
    x.set_keys(
        &[l4(v4, 80), l4(v6, 80), l4(r4, 8080), l4(r6, 8080)],
        &[l4(r4, 8080), l4(r6, 8080), l4(v4, 80), l4(v6, 80)],
        &[],
    )?;
    x.set_iface(1, 0, 1)?;
    x.set_egress(&[Egress::Port(0)])?;
    let map = OffloadMap::new(x.offload_fd());
    // A segment (64 bytes of payload), TTL 255.
    let seg = |src: (IpAddr, u16), dst: (IpAddr, u16)| {
        tcp_frame(CLIENT_MAC, EXT_MAC, src, dst, ACK, 255, &[7; 64])
    };
    // The entry for the frames `src` → `dst`, as the core would file it from its rewrite
    // of one of them to `to_src` → `to_dst`.
    let file = |(src, dst), (to_src, to_dst)| -> anyhow::Result<()> {
        let (s, d): ((IpAddr, u16), (IpAddr, u16)) = (src, dst);
        let key = match (s.0, d.0) {
            (IpAddr::V4(a), IpAddr::V4(b)) => flow_key(&ConnKey {
                src: a,
                dst: b,
                sport: s.1,
                dport: d.1,
                proto: PROTO_TCP,
            }),
            (IpAddr::V6(a), IpAddr::V6(b)) => flow_key(&ConnKey {
                src: a,
                dst: b,
                sport: s.1,
                dport: d.1,
                proto: PROTO_TCP,
            }),
            _ => anyhow::bail!("mixed families"),
        };
        let req = OffloadRequest { key, sync: None };
        let after = tcp_frame(EXT_MAC, INT_MAC, to_src, to_dst, ACK, 254, &[7; 64]);
        let e = entry(&req, &after, (0, 0), 1).ok_or_else(|| anyhow::anyhow!("no entry"))?;
        anyhow::ensure!(map.update(&key, &e), "filing the entry");
        Ok(())
    };
    for (c, v, r) in [(c4, v4, r4), (c6, v6, r6)] {
        let (c, v, r) = ((c, 40000), (v, 80), (r, 8080));
        file((c, v), (c, r))?;
        file((c, r), (c, v))?;
        file((r, c), (v, c))?;
        file((v, c), (r, c))?;
    }
    const REDIRECT: u32 = 4;
    const DROP: u32 = 1;
    const PASS: u32 = 2;
    // Port 40001 has no entry; port 81 is no service.
    let cases: [(&str, Vec<u8>, u32); 8] = [
        ("IPv4 TCP, fast path", seg((c4, 40000), (v4, 80)), REDIRECT),
        ("IPv6 TCP, fast path", seg((c6, 40000), (v6, 80)), REDIRECT),
        (
            "IPv4 NAT reply, fast path",
            seg((r4, 8080), (c4, 40000)),
            REDIRECT,
        ),
        (
            "IPv6 NAT reply, fast path",
            seg((r6, 8080), (c6, 40000)),
            REDIRECT,
        ),
        ("IPv4 TCP, to a worker", seg((c4, 40001), (v4, 80)), DROP),
        ("IPv6 TCP, to a worker", seg((c6, 40001), (v6, 80)), DROP),
        ("IPv4 TCP, not a service", seg((c4, 40000), (v4, 81)), PASS),
        ("IPv6 TCP, not a service", seg((c6, 40000), (v6, 81)), PASS),
    ];
    // The rig's floor (`xlvs_fwd`: stateless DNAT of one VIP, here to itself so that every
    // run does the whole rewrite, and a redirect) and the harness alone (the sink program on
    // a frame that is not IP: one bounds check and XDP_PASS).
    let mut bench = aya::Ebpf::load(xlvs_control::xdp::BENCH_XDP_OBJECT)?;
    let mut cfg: aya::maps::Array<_, xlvs_common::FwdConfig> = bench
        .map_mut(xlvs_common::MAP_FWD)
        .ok_or_else(|| anyhow::anyhow!("no FWD map"))?
        .try_into()?;
    cfg.set(
        0,
        xlvs_common::FwdConfig {
            vip: VIP.octets(),
            rip: VIP.octets(),
            ifindex: 1,
            dst_mac: INT_MAC,
            src_mac: EXT_MAC,
        },
        0,
    )?;
    for name in [xlvs_common::PROG_FWD, xlvs_common::PROG_SINK] {
        let prog: &mut aya::programs::Xdp = bench
            .program_mut(name)
            .ok_or_else(|| anyhow::anyhow!("no {name}"))?
            .try_into()?;
        prog.load()?;
    }
    let bench_prog = |name: &str| -> anyhow::Result<&aya::programs::Xdp> {
        Ok(bench
            .program(name)
            .ok_or_else(|| anyhow::anyhow!("no {name}"))?
            .try_into()?)
    };
    let floor = bench_prog(xlvs_common::PROG_FWD)?;
    let sink = bench_prog(xlvs_common::PROG_SINK)?;
    let mut arp = seg((c4, 40000), (v4, 80));
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let others: [(&str, &aya::programs::Xdp, Vec<u8>, u32); 2] = [
        (
            "IPv4 TCP, the rig's floor",
            floor,
            seg((c4, 40000), (v4, 80)),
            REDIRECT,
        ),
        ("harness (not IP, passed)", sink, arp, PASS),
    ];
    println!(
        "{:<28} {:>9} {:>7} {:>7}",
        "ns per frame", "median", "min", "max"
    );
    let runs = cases
        .into_iter()
        .map(|(name, frame, want)| (name, None, frame, want))
        .chain(others.into_iter().map(|(n, p, f, w)| (n, Some(p), f, w)));
    for (name, prog, frame, want) in runs {
        let mut ns = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let (action, _, d) = match prog {
                None => x.test_run_repeat(&frame, 1, 0, REPEAT)?,
                Some(p) => xlvs_control::xdp::test_run(p, &frame, 1, 0, REPEAT)?,
            };
            anyhow::ensure!(action == want, "{name}: action {action}, want {want}");
            ns.push(d);
        }
        ns.sort_unstable();
        println!(
            "{name:<28} {:>9} {:>7} {:>7}",
            ns[ns.len() / 2],
            ns[0],
            ns[ns.len() - 1]
        );
    }
    Ok(())
}
