//! The xlvs XDP program.
//!
//! For every frame: parse Ethernet (one optional 802.1Q tag), IPv4 and TCP/UDP, bounds-checked
//! against `data_end`; then
//! 1. (protocol, destination IP, destination port) is a virtual service → redirect;
//! 2. (protocol, source IP, source port) is an LVS-NAT realserver and the destination is not
//!    one of the director's own addresses → redirect (a reply to be SNATed);
//! 3. anything else (ARP, LACP, ICMP, the director's own TCP services, sync multicast, ...)
//!    → `XDP_PASS`.
//!
//! Redirects go to the XSKMAP entry of the frame's RX queue inside the interface's block;
//! an empty entry falls back to `XDP_PASS` and is counted as a failed redirect.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{HashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use xlvs_common::{
    AddrKey, COUNTERS, Counter, FAMILY_IPV4, IfaceSlot, L4Key, PROTO_TCP, PROTO_UDP, SteerValue,
    XSK_SLOTS,
};

/// AF_XDP sockets, one per (interface slot, RX queue).
#[map(name = "XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(XSK_SLOTS, 0);

/// Virtual services: (VIP, vport, proto).
#[map(name = "SERVICES")]
static SERVICES: HashMap<L4Key, SteerValue> = HashMap::with_max_entries(65536, 0);

/// LVS-NAT realservers: (RIP, rport, proto); their replies are steered.
#[map(name = "REALS")]
static REALS: HashMap<L4Key, SteerValue> = HashMap::with_max_entries(65536, 0);

/// The director's own addresses: traffic from a realserver to these is the director's own.
#[map(name = "LOCAL_ADDRS")]
static LOCAL_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(1024, 0);

/// ifindex → block in XSKS.
#[map(name = "IFACES")]
static IFACES: HashMap<u32, IfaceSlot> = HashMap::with_max_entries(64, 0);

/// Per-CPU counters, indexed by `Counter`.
#[map(name = "COUNTERS")]
static COUNTERS_MAP: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const VLAN_HLEN: usize = 4;

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

/// Pointer to `len` bytes at `off`, or None if that runs past `data_end`.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *const T)
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
    if ethertype != ETH_P_IP {
        return None;
    }
    let vihl = read_u8(ctx, off)?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return None;
    }
    // Non-first fragments carry no L4 header: the kernel gets them (see ARCHITECTURE.md).
    let frag = read_be16(ctx, off + 6)?;
    if frag & 0x1fff != 0 {
        return None;
    }
    let proto = read_u8(ctx, off + 9)?;
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let saddr = read_4(ctx, off + 12)?;
    let daddr = read_4(ctx, off + 16)?;
    // The verifier needs a constant bound on the variable IHL.
    if ihl > 60 {
        return None;
    }
    let l4 = off + ihl;
    let sport = read_raw16(ctx, l4)?;
    let dport = read_raw16(ctx, l4 + 2)?;

    let mut key = L4Key {
        addr: [0; 16],
        port: dport,
        proto,
        family: FAMILY_IPV4,
    };
    key.addr[..4].copy_from_slice(&daddr);
    // Safety: plain lookup; the value is not kept past this call.
    let hit = unsafe { SERVICES.get(&key) }.is_some() || {
        key.addr[..4].copy_from_slice(&saddr);
        key.port = sport;
        // Safety: as above.
        unsafe { REALS.get(&key) }.is_some() && {
            let local = AddrKey::v4(daddr);
            // Safety: as above.
            unsafe { LOCAL_ADDRS.get(&local) }.is_none()
        }
    };
    if !hit {
        return None;
    }
    Some(redirect(ctx))
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
        count(Counter::RedirectFailed);
        return xdp_action::XDP_PASS;
    }
    match XSKS.redirect(slot.xsk_base + queue, xdp_action::XDP_PASS as u64) {
        Ok(action) if action == xdp_action::XDP_REDIRECT => {
            count(Counter::Steered);
            action
        }
        _ => {
            count(Counter::RedirectFailed);
            xdp_action::XDP_PASS
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
