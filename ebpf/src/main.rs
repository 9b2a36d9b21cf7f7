//! The xlvs XDP program.
//!
//! For every frame: parse Ethernet (one optional 802.1Q tag), IPv4 or IPv6 (the fixed header,
//! at most a fragment header) and TCP/UDP, bounds-checked against `data_end`; then
//! 1. (protocol, destination IP, destination port) is a virtual service → redirect;
//! 2. (protocol, source IP, source port) is an LVS-NAT realserver and the destination is not
//!    one of the director's own addresses → redirect (a reply to be SNATed);
//! 3. an ICMP or ICMPv6 error quoting a packet that 1 or 2 would have matched in the other direction
//!    (from a VIP:port, or to a NAT realserver's RIP:port) → redirect;
//! 4. a non-first fragment of a datagram whose first fragment was redirected (the `FRAGS` LRU
//!    map, filled here when a first fragment is redirected) → redirect;
//! 5. anything else (ARP, neighbour discovery, LACP, echo requests, the director's own TCP
//!    services, sync multicast, fragments of the kernel's own traffic, IPv6 with other
//!    extension headers, ...) → `XDP_PASS`.
//!
//! Before 1 and 2, a TCP or UDP frame of an offloaded connection (the fast path, `xlvsd
//! --offload`: the `OFFLOAD` map, which the workers fill once a connection is established;
//! an entry is all it needs, and the control thread takes a deleted service's connections
//! back), IPv4 or IPv6, is rewritten here as the worker did it for the connection's first frames (MACs,
//! addresses, ports, TTL or hop limit, checksums by precomputed deltas) and sent out of its
//! interface with `bpf_redirect`, without a round trip through userspace. SYN, FIN and RST,
//! fragments, IPv4 options, IPv6 extension headers and a TTL or hop limit of 1 still go to
//! the workers, so TCP state and timeouts stay theirs.
//!
//! Other redirects go to the XSKMAP entry of the frame's RX queue inside the interface's block.
//! A frame that is steered but cannot be delivered (an empty entry: xlvsd not running, or
//! still starting; a queue without a socket) is dropped and counted as a failed redirect:
//! passed, it would reach the director's own stack, which holds the VIP and answers a
//! connection it does not know with a reset. The program outlives a crashed xlvsd (its link
//! is pinned), so until keepalived moves the VIPs away their clients see silence, which TCP
//! retransmits through, and no reset. An orderly stop leaves it too, for `--restart-hold`: a
//! restarted xlvsd finds it in place (and its saved table) and loses no connection; if none
//! comes in time, such frames go to the kernel (`IfaceSlot::pass_after_ns`).
#![no_std]
#![no_main]

mod rt;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns, bpf_redirect},
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use rt::{fold, ptr_at};
use xlvs_common::{
    AddrKey, COUNTERS, Counter, EgressPorts, FRAGS_MAX, FlowKey, FragKey, IfaceSlot, L4Key,
    LOCAL_ADDRS_MAX, MAX_IFACES, MAX_STEER_KEYS, OFFLOAD_MAX, Offload, PROTO_ICMP, PROTO_TCP,
    PROTO_UDP, SteerValue, XSK_SLOTS, handoff_mark, handoff_mark6,
};

/// AF_XDP sockets, one per (interface slot, RX queue).
#[map(name = "XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(XSK_SLOTS, 0);

/// Virtual services: (VIP, vport, proto).
#[map(name = "SERVICES")]
static SERVICES: HashMap<L4Key, SteerValue> = HashMap::with_max_entries(MAX_STEER_KEYS, 0);

/// LVS-NAT realservers: (RIP, rport, proto); their replies are steered.
#[map(name = "REALS")]
static REALS: HashMap<L4Key, SteerValue> = HashMap::with_max_entries(MAX_STEER_KEYS, 0);

/// The director's own addresses: traffic from a realserver to these is the director's own.
#[map(name = "LOCAL_ADDRS")]
static LOCAL_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(LOCAL_ADDRS_MAX, 0);

/// Datagrams whose first fragment was redirected: their other fragments follow it.
#[map(name = "FRAGS")]
static FRAGS: LruHashMap<FragKey, u32> = LruHashMap::with_max_entries(FRAGS_MAX, 0);

/// ifindex → block in XSKS.
#[map(name = "IFACES")]
static IFACES: HashMap<u32, IfaceSlot> = HashMap::with_max_entries(64, 0);

/// Offloaded directions of established connections: tuple → rewrite.
#[map(name = "OFFLOAD")]
static OFFLOAD: HashMap<FlowKey, Offload> = HashMap::with_max_entries(OFFLOAD_MAX, 0);

/// The ports each logical interface transmits on (a bond's usable members), for `OFFLOAD`'s
/// entries, in two copies: the control thread writes the one not in use when a member fails
/// or returns, then flips `EGRESS_GEN`, and every offloaded flow through it moves at once.
#[map(name = "EGRESS")]
static EGRESS: Array<EgressPorts> = Array::with_max_entries(2 * MAX_IFACES, 0);

/// Which copy of `EGRESS` is current (0 or 1).
#[map(name = "EGRESS_GEN")]
static EGRESS_GEN: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU counters, indexed by `Counter`.
#[map(name = "COUNTERS")]
static COUNTERS_MAP: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPV6_HLEN: usize = 40;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_ICMPV6: u8 = 58;
const ETH_P_8021Q: u16 = 0x8100;
const VLAN_HLEN: usize = 4;
const IPV4_HLEN: usize = 20;
/// TCP flags that leave a frame to the workers: SYN, FIN, RST.
const TCP_SYN_FIN_RST: u8 = 0x07;

#[xdp]
pub fn xlvs(ctx: XdpContext) -> u32 {
    match try_steer(&ctx) {
        Some(action) => action,
        None => {
            count(Counter::Passed);
            xdp_action::XDP_PASS
        }
    }
}

#[inline(always)]
fn count(c: Counter) {
    if let Some(p) = COUNTERS_MAP.get_ptr_mut(c as u32) {
        // Safety: the pointer is this CPU's slot of a per-CPU array; nothing else writes it
        // while this program runs on this CPU.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn read_u8(ctx: &XdpContext, off: usize) -> Option<u8> {
    // Safety: ptr_at checked the byte lies inside the frame.
    ptr_at::<u8>(ctx, off).map(|p| unsafe { *p })
}

/// A big-endian u16 read byte by byte (the frame gives no alignment guarantee).
#[inline(always)]
fn read_be16(ctx: &XdpContext, off: usize) -> Option<u16> {
    let p = ptr_at::<[u8; 2]>(ctx, off)?;
    // Safety: ptr_at checked both bytes lie inside the frame.
    let b = unsafe { *p };
    Some(u16::from_be_bytes(b))
}

#[inline(always)]
fn read_4(ctx: &XdpContext, off: usize) -> Option<[u8; 4]> {
    let p = ptr_at::<[u8; 4]>(ctx, off)?;
    // Safety: ptr_at checked the four bytes lie inside the frame.
    Some(unsafe { *p })
}

#[inline(always)]
fn read_16(ctx: &XdpContext, off: usize) -> Option<[u8; 16]> {
    let p = ptr_at::<[u8; 16]>(ctx, off)?;
    // Safety: ptr_at checked the sixteen bytes lie inside the frame.
    Some(unsafe { *p })
}

#[inline(always)]
fn read_raw16(ctx: &XdpContext, off: usize) -> Option<u16> {
    let p = ptr_at::<[u8; 2]>(ctx, off)?;
    // Safety: ptr_at checked both bytes lie inside the frame.
    let b = unsafe { *p };
    // Keep network byte order: the map keys store ports as they appear on the wire.
    Some(u16::from_ne_bytes(b))
}

#[inline(always)]
fn try_steer(ctx: &XdpContext) -> Option<u32> {
    let mut off = ETH_HLEN;
    let mut ethertype = read_be16(ctx, 12)?;
    if ethertype == ETH_P_8021Q {
        ethertype = read_be16(ctx, ETH_HLEN + 2)?;
        off += VLAN_HLEN;
    }
    if ethertype == ETH_P_IPV6 {
        return steer6(ctx, off);
    }
    if ethertype != ETH_P_IP {
        return None;
    }
    let ihl = ipv4_ihl(ctx, off)?;
    let frag = read_be16(ctx, off + 6)?;
    let proto = read_u8(ctx, off + 9)?;
    let saddr = read_4(ctx, off + 12)?;
    let daddr = read_4(ctx, off + 16)?;
    let l4 = off + ihl;

    if frag & 0x1fff != 0 {
        // A non-first fragment: ours only if its first fragment was.
        let key = frag_key(ctx, off, saddr, daddr, proto)?;
        // Safety: plain lookup; the value is not kept past this call.
        unsafe { FRAGS.get(&key) }?;
        return Some(redirect(ctx));
    }
    if proto == PROTO_ICMP {
        // A fragmented ICMP error is left to the kernel: it cannot be rewritten in parts.
        if frag & 0x2000 != 0 {
            return None;
        }
        return if icmp_error_is_ours(ctx, l4, daddr)? {
            Some(redirect(ctx))
        } else {
            None
        };
    }
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let sport = read_raw16(ctx, l4)?;
    let dport = read_raw16(ctx, l4 + 2)?;
    // An offloaded connection's frame first: its entry is all the program needs (the
    // connection was steered when the worker filed it), so the steering lookups below are
    // spared for the fast path's frames.
    if frag & 0x2000 == 0
        && ihl == IPV4_HLEN
        && let Some(action) = if off == ETH_HLEN {
            offloaded::<ETH_HLEN>(ctx, proto, saddr, daddr, sport, dport)
        } else {
            offloaded::<{ ETH_HLEN + VLAN_HLEN }>(ctx, proto, saddr, daddr, sport, dport)
        }
    {
        return Some(action);
    }
    if !(is_service(L4Key::v4_raw(daddr, dport, proto))
        || is_nat_reply(L4Key::v4_raw(saddr, sport, proto), AddrKey::v4(daddr)))
    {
        return None;
    }
    if frag & 0x2000 != 0 {
        // A first fragment (MF set): let the rest of the datagram follow.
        let key = frag_key(ctx, off, saddr, daddr, proto)?;
        let _ = FRAGS.insert(&key, &0, 0);
    }
    Some(redirect(ctx))
}

/// The fast path: an IPv4 TCP or UDP frame without options or fragmentation, untagged or
/// with one 802.1Q tag (its IPv4 header at `L3`; the tag stays as it is, as the workers keep
/// it), whose direction of its connection is in `OFFLOAD` is rewritten as the entry says and
/// redirected out of the entry's interface. None leaves it to the workers.
///
/// `offloaded` and `offloaded6` keep their packet pointers to themselves, each checked
/// where it is used: shared helpers handing packet pointers around made code that Linux
/// 6.1's verifier refused (it loses a pointer's checked range where 6.18's does not). The
/// helpers they share see the entry or plain values only.
#[inline(always)]
fn offloaded<const L3: usize>(
    ctx: &XdpContext,
    proto: u8,
    saddr: [u8; 4],
    daddr: [u8; 4],
    sport: u16,
    dport: u16,
) -> Option<u32> {
    let at_l4: usize = L3 + IPV4_HLEN;
    if proto == PROTO_TCP && read_u8(ctx, at_l4 + 13)? & TCP_SYN_FIN_RST != 0 {
        return None;
    }
    let key = FlowKey::v4_raw(saddr, daddr, sport, dport, proto);
    let e = OFFLOAD.get_ptr_mut(&key)?;
    let eth = ptr_at::<[u8; ETH_HLEN]>(ctx, 0)?;
    let ip = ptr_at::<[u8; IPV4_HLEN]>(ctx, L3)?;
    let l4 = ptr_at::<[u8; 8]>(ctx, at_l4)?;
    // TCP's checksum is at 16, UDP's at 6.
    let ck = if proto == PROTO_TCP {
        ptr_at::<[u8; 2]>(ctx, at_l4 + 16)?
    } else {
        ptr_at::<[u8; 2]>(ctx, at_l4 + 6)?
    };
    // Safety: `ptr_at` checked each header lies inside the frame; `e` points into the map's
    // value, which stays valid while the program runs. Nothing else writes the frame.
    unsafe {
        let (e, ip, l4, ck, eth) = (&mut *e, &mut *ip, &mut *l4, &mut *ck, &mut *eth);
        // A TTL the worker must answer, or an IP length the frame does not hold (or too
        // short for the TCP or UDP header): the worker drops it and counts why.
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        if ip[8] <= 1
            || total < IPV4_HLEN + l4_min(proto)
            || L3 + total > ctx.data_end() - ctx.data()
        {
            return None;
        }
        let ifindex = egress_port(e)?;
        // A sync master counts the client's frames: the one the sync rule picks goes to the
        // worker, marked so that it knows why.
        if sync_picks(e) {
            e.handed = handoff_mark(proto, ip, l4);
            return None;
        }
        ip[8] -= 1;
        ip[12..16].copy_from_slice(&e.src[..4]);
        ip[16..20].copy_from_slice(&e.dst[..4]);
        let c = apply(u16::from_be_bytes([ip[10], ip[11]]), e.ip_delta);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        l4[0..2].copy_from_slice(&e.sport.to_ne_bytes());
        l4[2..4].copy_from_slice(&e.dport.to_ne_bytes());
        *ck = l4_check(proto, u16::from_be_bytes(*ck), e.l4_delta).to_be_bytes();
        eth[0..6].copy_from_slice(&e.dst_mac);
        eth[6..12].copy_from_slice(&e.src_mac);
        // IPVS counts IP lengths: not the Ethernet header, a tag or a short frame's padding.
        stamp(e, total);
        Some(bpf_redirect(ifindex, 0) as u32)
    }
}

/// The port an entry's frames leave by, as the workers choose it: a bond's member by the
/// flow's transmit hash over the members usable now. None the program may use: the worker
/// takes the frame. (These helpers see the entry only: packet pointers stay in `offloaded`
/// and `offloaded6`, see there.)
#[inline(always)]
fn egress_port(e: &Offload) -> Option<u32> {
    let copy = *EGRESS_GEN.get(0)? & 1;
    let out = EGRESS.get(copy * MAX_IFACES + (e.egress & (MAX_IFACES - 1)))?;
    if out.count == 0 {
        return None;
    }
    out.ifindex
        .get(((e.hash % out.count) & (MAX_IFACES - 1)) as usize)
        .copied()
}

/// Counts a client frame on an entry that counts for the sync rule; true (and counted as
/// handed) if it is the frame the rule picks, which the caller marks and leaves to the
/// worker.
#[inline(always)]
fn sync_picks(e: &mut Offload) -> bool {
    if e.sync_on == 0 {
        return false;
    }
    let n = e.next_sync_count();
    e.sync_pkts = n;
    if n != e.sync_due {
        return false;
    }
    count(Counter::Handed);
    true
}

/// Stamps an entry with a frame the program sends on, of IP length `ip_len`. Plain adds: a
/// flow's frames arrive on one RX queue, so one CPU at a time. The coarse clock: a tick's
/// precision is plenty for timeouts of seconds.
#[inline(always)]
fn stamp(e: &mut Offload, ip_len: usize) {
    // Safety: a helper call without arguments.
    e.last_ns = unsafe { bpf_ktime_get_coarse_ns() };
    e.packets += 1;
    e.bytes += ip_len as u64;
    count(Counter::Offloaded);
}

/// The shortest TCP (20 bytes) or UDP (8) header: a packet too short to hold its header
/// (and the checksum the fast path rewrites) goes to the workers, which drop and count it.
#[inline(always)]
fn l4_min(proto: u8) -> usize {
    if proto == PROTO_TCP { 20 } else { 8 }
}

/// The IPv6 counterpart of [`offloaded`]: a TCP or UDP frame without extension headers
/// (its IPv6 header at `L3`, untagged or with one 802.1Q tag, kept) whose direction is in
/// `OFFLOAD`: the hop limit goes down one, the addresses and ports are the entry's, the TCP
/// or UDP checksum follows by the entry's delta (IPv6's header has none). A hop limit of 1,
/// or a payload length the frame does not hold, leaves it to the workers.
#[inline(always)]
fn offloaded6<const L3: usize>(
    ctx: &XdpContext,
    proto: u8,
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: u16,
    dport: u16,
) -> Option<u32> {
    let at_l4: usize = L3 + IPV6_HLEN;
    if proto == PROTO_TCP && read_u8(ctx, at_l4 + 13)? & TCP_SYN_FIN_RST != 0 {
        return None;
    }
    let key = FlowKey::v6_raw(saddr, daddr, sport, dport, proto);
    let e = OFFLOAD.get_ptr_mut(&key)?;
    let eth = ptr_at::<[u8; ETH_HLEN]>(ctx, 0)?;
    let ip = ptr_at::<[u8; IPV6_HLEN]>(ctx, L3)?;
    let l4 = ptr_at::<[u8; 8]>(ctx, at_l4)?;
    let ck = if proto == PROTO_TCP {
        ptr_at::<[u8; 2]>(ctx, at_l4 + 16)?
    } else {
        ptr_at::<[u8; 2]>(ctx, at_l4 + 6)?
    };
    // Safety: as in `offloaded`.
    unsafe {
        let (e, ip, l4, ck, eth) = (&mut *e, &mut *ip, &mut *l4, &mut *ck, &mut *eth);
        let payload = u16::from_be_bytes([ip[4], ip[5]]) as usize;
        if ip[7] <= 1
            || payload < l4_min(proto)
            || L3 + IPV6_HLEN + payload > ctx.data_end() - ctx.data()
        {
            return None;
        }
        let ifindex = egress_port(e)?;
        if sync_picks(e) {
            e.handed = handoff_mark6(l4);
            return None;
        }
        ip[7] -= 1;
        ip[8..24].copy_from_slice(&e.src);
        ip[24..40].copy_from_slice(&e.dst);
        l4[0..2].copy_from_slice(&e.sport.to_ne_bytes());
        l4[2..4].copy_from_slice(&e.dport.to_ne_bytes());
        *ck = l4_check(proto, u16::from_be_bytes(*ck), e.l4_delta).to_be_bytes();
        eth[0..6].copy_from_slice(&e.dst_mac);
        eth[6..12].copy_from_slice(&e.src_mac);
        // The 40-byte header and the payload, as IPVS counts.
        stamp(e, IPV6_HLEN + payload);
        Some(bpf_redirect(ifindex, 0) as u32)
    }
}

/// A TCP or UDP checksum `old` after changes whose sum is `delta`. A UDP datagram without a
/// checksum stays without (over IPv6 a zero one is invalid: left as it is, the realserver's
/// stack drops the datagram, as it would without a director); one that sums to zero is sent
/// as 0xffff (RFC 768). Values only, no packet pointer (Linux 6.1's verifier).
#[inline(always)]
fn l4_check(proto: u8, old: u16, delta: u32) -> u16 {
    if proto == PROTO_UDP && old == 0 {
        return 0;
    }
    match apply(old, delta) {
        0 if proto == PROTO_UDP => 0xffff,
        c => c,
    }
}

/// A checksum after changes whose one's-complement sum is `delta` (RFC 1624 eqn. 3).
#[inline(always)]
fn apply(check: u16, delta: u32) -> u16 {
    !fold((!check) as u32 + delta)
}

/// The IPv6 counterpart of [`try_steer`]: the fixed header, then at most a fragment header
/// (RFC 8200 §4.5; other extension headers go to the kernel), then TCP, UDP or ICMPv6.
#[inline(always)]
fn steer6(ctx: &XdpContext, off: usize) -> Option<u32> {
    if read_u8(ctx, off)? >> 4 != 6 {
        return None;
    }
    let mut next = read_u8(ctx, off + 6)?;
    let saddr = read_16(ctx, off + 8)?;
    let daddr = read_16(ctx, off + 24)?;
    let mut l4 = off + IPV6_HLEN;
    let mut first_of_many = None;
    if next == NEXT_FRAGMENT {
        let inner = read_u8(ctx, l4)?;
        let offset_m = read_be16(ctx, l4 + 2)?;
        let ident = read_4(ctx, l4 + 4)?;
        let key = FragKey::v6(saddr, daddr, u32::from_be_bytes(ident), inner);
        if offset_m & 0xfff8 != 0 {
            // A non-first fragment: ours only if its first fragment was.
            // Safety: plain lookup; the value is not kept past this call.
            unsafe { FRAGS.get(&key) }?;
            return Some(redirect(ctx));
        }
        if inner == NEXT_ICMPV6 {
            // A fragmented ICMPv6 error is left to the kernel, as for IPv4.
            return None;
        }
        if offset_m & 1 != 0 {
            first_of_many = Some(key);
        }
        next = inner;
        l4 += 8;
    }
    if next == NEXT_ICMPV6 {
        return if icmp6_error_is_ours(ctx, l4, daddr)? {
            Some(redirect(ctx))
        } else {
            None
        };
    }
    if next != PROTO_TCP && next != PROTO_UDP {
        return None;
    }
    let sport = read_raw16(ctx, l4)?;
    let dport = read_raw16(ctx, l4 + 2)?;
    // An offloaded connection's frame first, as for IPv4.
    if l4 == off + IPV6_HLEN
        && let Some(action) = if off == ETH_HLEN {
            offloaded6::<ETH_HLEN>(ctx, next, saddr, daddr, sport, dport)
        } else {
            offloaded6::<{ ETH_HLEN + VLAN_HLEN }>(ctx, next, saddr, daddr, sport, dport)
        }
    {
        return Some(action);
    }
    if !(is_service(L4Key::v6_raw(daddr, dport, next))
        || is_nat_reply(L4Key::v6_raw(saddr, sport, next), AddrKey::v6(daddr)))
    {
        return None;
    }
    if let Some(key) = first_of_many {
        let _ = FRAGS.insert(&key, &0, 0);
    }
    Some(redirect(ctx))
}

/// An ICMPv6 error (destination unreachable, packet too big, time exceeded, parameter
/// problem) quoting a TCP/UDP packet as for IPv4. A quote that starts with a fragment header
/// goes to the kernel.
#[inline(always)]
fn icmp6_error_is_ours(ctx: &XdpContext, l4: usize, daddr: [u8; 16]) -> Option<bool> {
    let ty = read_u8(ctx, l4)?;
    if !matches!(ty, 1..=4) {
        return Some(false);
    }
    let inner = l4 + 8;
    if read_u8(ctx, inner)? >> 4 != 6 {
        return Some(false);
    }
    let proto = read_u8(ctx, inner + 6)?;
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Some(false);
    }
    let isrc = read_16(ctx, inner + 8)?;
    let idst = read_16(ctx, inner + 24)?;
    let sport = read_raw16(ctx, inner + IPV6_HLEN)?;
    let dport = read_raw16(ctx, inner + IPV6_HLEN + 2)?;
    Some(
        is_service(L4Key::v6_raw(isrc, sport, proto))
            || is_nat_reply(L4Key::v6_raw(idst, dport, proto), AddrKey::v6(daddr)),
    )
}

/// Header length of the IPv4 header at `off`, if it is one (version 4, 20..=60 bytes; the
/// verifier needs the constant upper bound).
#[inline(always)]
fn ipv4_ihl(ctx: &XdpContext, off: usize) -> Option<usize> {
    let vihl = read_u8(ctx, off)?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if !(20..=60).contains(&ihl) {
        return None;
    }
    Some(ihl)
}

#[inline(always)]
fn frag_key(
    ctx: &XdpContext,
    off: usize,
    saddr: [u8; 4],
    daddr: [u8; 4],
    proto: u8,
) -> Option<FragKey> {
    Some(FragKey::v4(saddr, daddr, read_be16(ctx, off + 4)?, proto))
}

/// (proto, VIP, vport) is a virtual service.
#[inline(always)]
fn is_service(vip: L4Key) -> bool {
    // Safety: plain lookup; the value is not kept past this call.
    unsafe { SERVICES.get(&vip) }.is_some()
}

/// From an LVS-NAT realserver's RIP:rport to an address that is not the director's own.
#[inline(always)]
fn is_nat_reply(rip: L4Key, dst: AddrKey) -> bool {
    // Safety: plain lookups; the values are not kept past this call.
    unsafe { REALS.get(&rip) }.is_some() && unsafe { LOCAL_ADDRS.get(&dst) }.is_none()
}

/// An ICMP error (destination unreachable, source quench, time exceeded, parameter problem)
/// quoting a TCP/UDP packet that left a virtual service (VIP:vport → client) or went to an
/// LVS-NAT realserver (client → RIP:rport, the error travelling to the client).
#[inline(always)]
fn icmp_error_is_ours(ctx: &XdpContext, l4: usize, daddr: [u8; 4]) -> Option<bool> {
    let ty = read_u8(ctx, l4)?;
    if !matches!(ty, 3 | 4 | 11 | 12) {
        return Some(false);
    }
    let inner = l4 + 8;
    let ihl = ipv4_ihl(ctx, inner)?;
    let proto = read_u8(ctx, inner + 9)?;
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Some(false);
    }
    let isrc = read_4(ctx, inner + 12)?;
    let idst = read_4(ctx, inner + 16)?;
    let sport = read_raw16(ctx, inner + ihl)?;
    let dport = read_raw16(ctx, inner + ihl + 2)?;
    Some(
        is_service(L4Key::v4_raw(isrc, sport, proto))
            || is_nat_reply(L4Key::v4_raw(idst, dport, proto), AddrKey::v4(daddr)),
    )
}

#[inline(always)]
fn redirect(ctx: &XdpContext) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    let queue = ctx.rx_queue_index();
    // Safety: plain lookup; the value is copied out.
    let slot = match unsafe { IFACES.get(&ifindex) } {
        Some(s) => *s,
        None => {
            count(Counter::RedirectFailed);
            return xdp_action::XDP_PASS;
        }
    };
    if queue >= slot.queues {
        return undelivered(&slot);
    }
    match XSKS.redirect(slot.xsk_base + queue, xdp_action::XDP_DROP as u64) {
        Ok(action) if action == xdp_action::XDP_REDIRECT => {
            count(Counter::Steered);
            action
        }
        _ => undelivered(&slot),
    }
}

/// A steered frame without a socket: dropped, unless the xlvsd that stopped gave a restart
/// time that has passed (then the kernel takes it, as without a director).
#[inline(always)]
fn undelivered(slot: &IfaceSlot) -> u32 {
    count(Counter::RedirectFailed);
    // Safety: a helper call without arguments.
    if slot.pass_after_ns != 0 && unsafe { bpf_ktime_get_ns() } > slot.pass_after_ns {
        return xdp_action::XDP_PASS;
    }
    xdp_action::XDP_DROP
}
