//! The XDP-only forwarder (`xlvs_fwd`), the floor the rig compares against.

use std::net::Ipv4Addr;

use anyhow::{Context as _, anyhow};
use aya::Ebpf;
use aya::maps::Array;
use aya::programs::{Xdp, XdpMode};
use xlvs_common::{FwdConfig, MAP_FWD, PROG_FWD};

/// `xlvs_fwd` attached to the client-side interface; detached when dropped.
pub struct Forwarder {
    _ebpf: Ebpf,
}

impl Forwarder {
    /// Frames to `vip` arriving on `from` go to `rip` (MAC `rip_mac`) out of `to`.
    pub fn attach(
        from: &str,
        to: &str,
        vip: Ipv4Addr,
        rip: Ipv4Addr,
        rip_mac: [u8; 6],
    ) -> anyhow::Result<Self> {
        let out = xlvs_control::sys::iface(to)?;
        let mut ebpf =
            Ebpf::load(xlvs_control::xdp::BENCH_XDP_OBJECT).context("loading the bench object")?;
        let mut cfg: Array<_, FwdConfig> = ebpf
            .map_mut(MAP_FWD)
            .ok_or_else(|| anyhow!("map {MAP_FWD} missing"))?
            .try_into()?;
        cfg.set(
            0,
            FwdConfig {
                vip: vip.octets(),
                rip: rip.octets(),
                ifindex: out.ifindex,
                dst_mac: rip_mac,
                src_mac: out.mac,
            },
            0,
        )?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROG_FWD)
            .ok_or_else(|| anyhow!("program {PROG_FWD} missing"))?
            .try_into()?;
        prog.load().context("loading xlvs_fwd (verifier)")?;
        prog.attach(from, XdpMode::Driver)
            .with_context(|| format!("attaching xlvs_fwd to {from} (native mode)"))?;
        Ok(Forwarder { _ebpf: ebpf })
    }
}
