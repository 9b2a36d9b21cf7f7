//! The benchmark rig's XDP programs; not part of the product (xlvsd never loads them).
//!
//! - `xlvs_sink`: on the sink's interface, redirects every IPv4 TCP/UDP frame to the AF_XDP
//!   socket of its RX queue (`SINK_XSKS`), so `xlvs-bench sink` sees what the director
//!   forwarded; everything else (ARP above all) goes to the kernel.
//! - `xlvs_fwd`: the floor of the XDP path. On the director's client-side interface, a frame
//!   to the configured VIP gets the RIP as destination (IPv4 and L4 checksums updated
//!   incrementally, RFC 1624), its TTL decremented, the realserver's MAC, and is redirected
//!   out of the realservers' interface: LVS-NAT's per-packet work without a connection table.
#![no_std]
#![no_main]

mod rt;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_redirect,
    macros::{map, xdp},
    maps::{Array, XskMap},
    programs::XdpContext,
};
use rt::{fold, ptr_at};
use xlvs_common::{FwdConfig, MAX_QUEUES, PROTO_TCP, PROTO_UDP};

#[map(name = "SINK_XSKS")]
static SINK_XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

#[map(name = "FWD")]
static FWD: Array<FwdConfig> = Array::with_max_entries(1, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
/// Fixed IPv4 header (the programs leave options alone: they are looked at through `ihl`).
const IPV4_HLEN: usize = 20;

/// The IPv4 header after an untagged Ethernet header, if the frame has one of TCP or UDP.
#[inline(always)]
fn ipv4_l4(ctx: &XdpContext) -> Option<(*mut [u8; IPV4_HLEN], u8)> {
    let eth: *mut [u8; ETH_HLEN] = ptr_at(ctx, 0)?;
    // Safety: `ptr_at` checked the header lies inside the frame.
    let ethertype = unsafe { u16::from_be_bytes([(*eth)[12], (*eth)[13]]) };
    if ethertype != ETH_P_IP {
        return None;
    }
    let ip: *mut [u8; IPV4_HLEN] = ptr_at(ctx, ETH_HLEN)?;
    // Safety: as above.
    let proto = unsafe { (*ip)[9] };
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    Some((ip, proto))
}

#[xdp]
pub fn xlvs_sink(ctx: XdpContext) -> u32 {
    if ipv4_l4(&ctx).is_none() {
        return xdp_action::XDP_PASS;
    }
    SINK_XSKS
        .redirect(ctx.rx_queue_index(), xdp_action::XDP_PASS as u64)
        .unwrap_or(xdp_action::XDP_PASS)
}

/// RFC 1624 eqn. 3: the checksum after a 32-bit field changes from `old` to `new`.
#[inline(always)]
fn csum_replace4(csum: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let w = |b: [u8; 4], i: usize| u16::from_be_bytes([b[i], b[i + 1]]) as u32;
    let s = (!csum) as u32 + (!w(old, 0) & 0xffff) + (!w(old, 2) & 0xffff) + w(new, 0) + w(new, 2);
    !fold(s)
}

#[xdp]
pub fn xlvs_fwd(ctx: XdpContext) -> u32 {
    try_fwd(&ctx).unwrap_or(xdp_action::XDP_PASS)
}

#[inline(always)]
fn try_fwd(ctx: &XdpContext) -> Option<u32> {
    let cfg = FWD.get(0)?;
    let (ip, proto) = ipv4_l4(ctx)?;
    // Safety: `ipv4_l4` checked the fixed IPv4 header lies inside the frame, `ptr_at` the
    // L4 checksum and the MACs; nothing else touches the frame while the program runs.
    unsafe {
        let ip = &mut *ip;
        let daddr = [ip[16], ip[17], ip[18], ip[19]];
        if daddr != cfg.vip || ip[8] <= 1 {
            return None;
        }
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        if ihl < IPV4_HLEN || ihl > 60 {
            return None;
        }
        // L4 checksum covers the pseudo-header's destination address.
        let csum_off = if proto == PROTO_TCP { 16 } else { 6 };
        let l4 = &mut *ptr_at::<[u8; 2]>(ctx, ETH_HLEN + (ihl & 0x3c) + csum_off)?;
        let l4sum = u16::from_be_bytes(*l4);
        if proto == PROTO_TCP || l4sum != 0 {
            let mut s = csum_replace4(l4sum, daddr, cfg.rip);
            if proto == PROTO_UDP && s == 0 {
                s = 0xffff;
            }
            *l4 = s.to_be_bytes();
        }
        // TTL and the destination, one update of the header checksum for each.
        let ipsum = u16::from_be_bytes([ip[10], ip[11]]);
        let ttl_old = [ip[8], ip[9], 0, 0];
        ip[8] -= 1;
        let ttl_new = [ip[8], ip[9], 0, 0];
        let ipsum = csum_replace4(ipsum, ttl_old, ttl_new);
        let ipsum = csum_replace4(ipsum, daddr, cfg.rip);
        ip[10..12].copy_from_slice(&ipsum.to_be_bytes());
        ip[16..20].copy_from_slice(&cfg.rip);
        let eth = &mut *ptr_at::<[u8; 12]>(ctx, 0)?;
        eth[0..6].copy_from_slice(&cfg.dst_mac);
        eth[6..12].copy_from_slice(&cfg.src_mac);
        Some(bpf_redirect(cfg.ifindex, 0) as u32)
    }
}
