//! Types shared by the XDP program (`xlvs-ebpf`) and userspace (`xlvs-control`).
//!
//! Every map key and value the two sides exchange is defined here, once, as `#[repr(C)]`
//! with explicit padding, so the layouts cannot drift apart. The `user` feature adds the
//! `aya::Pod` impls the userspace map API needs.
#![no_std]

/// Name of the XSKMAP holding one AF_XDP socket per (interface slot, RX queue).
pub const MAP_XSKS: &str = "XSKS";
/// Name of the hash map of virtual services: [`L4Key`] (VIP, vport, protocol) → [`SteerValue`].
pub const MAP_SERVICES: &str = "SERVICES";
/// Name of the hash map of LVS-NAT realservers: [`L4Key`] (RIP, rport, protocol) → [`SteerValue`].
pub const MAP_REALS: &str = "REALS";
/// Name of the hash map of the director's own addresses: [`AddrKey`] → `u32` (unused value).
pub const MAP_LOCAL_ADDRS: &str = "LOCAL_ADDRS";
/// Name of the hash map from ifindex to [`IfaceSlot`].
pub const MAP_IFACES: &str = "IFACES";
/// Name of the LRU hash of fragmented datagrams whose first fragment was steered:
/// [`FragKey`] → `u32` (unused value). The XDP program fills and reads it alone.
pub const MAP_FRAGS: &str = "FRAGS";
/// Size of [`MAP_FRAGS`].
pub const FRAGS_MAX: u32 = 65536;
/// Size of the SERVICES and REALS maps: the most (VIP, vport, proto) and (RIP, rport, proto)
/// keys the program steers (a fwmark service's port ranges count one key per port).
pub const MAX_STEER_KEYS: u32 = 65536;
/// Size of the LOCAL_ADDRS map: the director's own addresses.
pub const LOCAL_ADDRS_MAX: u32 = 16384;
/// Name of the per-CPU array of `u64` counters, indexed by [`Counter`].
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Name of the XDP program inside the object file.
pub const PROG_NAME: &str = "xlvs";

/// Most RX queues per interface that get an AF_XDP socket.
pub const MAX_QUEUES: u32 = 64;
/// Most interfaces one director drives.
pub const MAX_IFACES: u32 = 16;
// The XDP program bounds an index into [`EgressPorts::ifindex`] with a mask.
const _: () = assert!(MAX_IFACES.is_power_of_two());
/// Size of the XSKMAP: slot `iface_slot * MAX_QUEUES + rx_queue`.
///
/// XSKMAP indices would collide across interfaces if the RX queue were used directly, so each
/// interface gets its own block of `MAX_QUEUES` entries.
pub const XSK_SLOTS: u32 = MAX_QUEUES * MAX_IFACES;

/// Address family values used in keys.
pub const FAMILY_IPV4: u8 = 4;
/// Address family value for IPv6 keys.
pub const FAMILY_IPV6: u8 = 6;

/// IP protocol numbers used in keys.
pub const PROTO_TCP: u8 = 6;
/// ICMP protocol number.
pub const PROTO_ICMP: u8 = 1;
/// UDP protocol number.
pub const PROTO_UDP: u8 = 17;

/// Key of [`MAP_SERVICES`] and [`MAP_REALS`]: an L4 endpoint.
///
/// IPv4 addresses sit in the first four bytes of `addr`, the rest zero. `port` is in network
/// byte order, exactly as it appears in the frame, so the XDP program copies it unchanged.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct L4Key {
    pub addr: [u8; 16],
    /// Port in network byte order.
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

impl L4Key {
    /// Key for an IPv6 endpoint; `port` in host byte order.
    pub const fn v6(addr: [u8; 16], port: u16, proto: u8) -> Self {
        Self::v6_raw(addr, port.to_be(), proto)
    }

    /// Key for an IPv6 endpoint; `port` as on the wire (network byte order).
    pub const fn v6_raw(addr: [u8; 16], port: u16, proto: u8) -> Self {
        let p = port.to_ne_bytes();
        let tail = u32::from_ne_bytes([p[0], p[1], proto, FAMILY_IPV6]);
        // Safety: see `addr_words`.
        unsafe { core::mem::transmute(key20(addr_words(addr), tail)) }
    }

    /// Key for an IPv4 endpoint; `port` in host byte order.
    pub const fn v4(addr: [u8; 4], port: u16, proto: u8) -> Self {
        Self::v4_raw(addr, port.to_be(), proto)
    }

    /// Key for an IPv4 endpoint; `port` as on the wire (network byte order).
    pub const fn v4_raw(addr: [u8; 4], port: u16, proto: u8) -> Self {
        let p = port.to_ne_bytes();
        let tail = u32::from_ne_bytes([p[0], p[1], proto, FAMILY_IPV4]);
        // Safety: see `addr_words`.
        unsafe { core::mem::transmute(key20(v4_words(addr), tail)) }
    }

    /// Key for an endpoint of either family; `port` in host byte order.
    pub const fn ip(addr: core::net::IpAddr, port: u16, proto: u8) -> Self {
        match addr {
            core::net::IpAddr::V4(a) => Self::v4(a.octets(), port, proto),
            core::net::IpAddr::V6(a) => Self::v6(a.octets(), port, proto),
        }
    }
}

/// Key of [`MAP_LOCAL_ADDRS`]: one of the director's own addresses.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AddrKey {
    pub addr: [u8; 16],
    pub family: u8,
    pub _pad: [u8; 3],
}

impl AddrKey {
    /// Key for an address of either family.
    pub const fn ip(addr: core::net::IpAddr) -> Self {
        match addr {
            core::net::IpAddr::V4(a) => Self::v4(a.octets()),
            core::net::IpAddr::V6(a) => Self::v6(a.octets()),
        }
    }

    /// Key for an IPv6 address.
    pub const fn v6(addr: [u8; 16]) -> Self {
        let tail = u32::from_ne_bytes([FAMILY_IPV6, 0, 0, 0]);
        // Safety: see `addr_words`.
        unsafe { core::mem::transmute(key20(addr_words(addr), tail)) }
    }

    /// Key for an IPv4 address.
    pub const fn v4(addr: [u8; 4]) -> Self {
        let tail = u32::from_ne_bytes([FAMILY_IPV4, 0, 0, 0]);
        // Safety: see `addr_words`.
        unsafe { core::mem::transmute(key20(v4_words(addr), tail)) }
    }
}

/// Key of [`MAP_FRAGS`]: the datagram a fragment belongs to (RFC 791: source, destination,
/// protocol, identification). IPv4 addresses in the first four bytes.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Identification, as on the wire (IPv4: 16 bits, zero-extended).
    pub ident: u32,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

impl FragKey {
    /// Key for an IPv4 datagram; `ident` in host order (read big-endian from the header),
    /// zero-extended.
    pub const fn v4(src: [u8; 4], dst: [u8; 4], ident: u16, proto: u8) -> Self {
        let tail = u32::from_ne_bytes([proto, FAMILY_IPV4, 0, 0]);
        let w = key40(v4_words(src), v4_words(dst), ident as u32, tail);
        // Safety: see `addr_words`.
        unsafe { core::mem::transmute(w) }
    }

    /// Key for an IPv6 datagram; `ident`, the fragment header's identification, in host
    /// order.
    pub const fn v6(src: [u8; 16], dst: [u8; 16], ident: u32, proto: u8) -> Self {
        let tail = u32::from_ne_bytes([proto, FAMILY_IPV6, 0, 0]);
        let w = key40(addr_words(src), addr_words(dst), ident, tail);
        // Safety: see `addr_words`.
        unsafe { core::mem::transmute(w) }
    }
}

/// An address's bytes as four words, in memory order.
///
/// Every key constructor here builds its key from 32-bit words and `transmute`s them (the
/// sizes are checked when compiling). The XDP program builds a key for every frame it looks
/// up; written field by field, an IPv4 key's zero bytes after the address became calls of
/// an out-of-line, byte-at-a-time `memset` (what `bpf-linker`'s LLVM made of them), 30–40 ns
/// per frame. Words are plain stores. Every key is `#[repr(C, align(4))]` with every byte in
/// a `u8` field (its padding explicit), so any bit pattern is a key.
const fn addr_words(a: [u8; 16]) -> [u32; 4] {
    // Safety: sixteen bytes, and any bit pattern is a `u32`.
    unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(a) }
}

/// An IPv4 address as a key's four address words: the address, then zeros.
const fn v4_words(a: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(a), 0, 0, 0]
}

/// The words of a 20-byte key: an address, then one word of the rest.
const fn key20(a: [u32; 4], tail: u32) -> [u32; 5] {
    [a[0], a[1], a[2], a[3], tail]
}

/// The words of a 40-byte key: two addresses, then two words of the rest.
const fn key40(s: [u32; 4], d: [u32; 4], w8: u32, w9: u32) -> [u32; 10] {
    [s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3], w8, w9]
}

/// The last two words of a [`FlowKey`]: the ports (as on the wire), then the protocol,
/// the family and two zero bytes.
const fn ports_proto(sport: u16, dport: u16, proto: u8, family: u8) -> [u32; 2] {
    let (s, d) = (sport.to_ne_bytes(), dport.to_ne_bytes());
    [
        u32::from_ne_bytes([s[0], s[1], d[0], d[1]]),
        u32::from_ne_bytes([proto, family, 0, 0]),
    ]
}

/// Value of [`MAP_SERVICES`] and [`MAP_REALS`]. Reserved for per-entry flags.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SteerValue {
    pub flags: u32,
}

/// Value of [`MAP_IFACES`]: the interface's block in the XSKMAP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IfaceSlot {
    /// First XSKMAP index of this interface (`slot * MAX_QUEUES`).
    pub xsk_base: u32,
    /// Number of RX queues that have a socket; frames on other queues are dropped.
    pub queues: u32,
    /// 0 while an xlvsd drives the interface (or crashed): a steered frame that finds no
    /// socket is dropped. An orderly stop that leaves the program for a restart sets it to a
    /// `CLOCK_MONOTONIC` time (ns, `bpf_ktime_get_ns`): until then such frames are dropped
    /// (TCP retransmits through the restart), after it they go to the kernel, as if no
    /// director ran (`xlvsd --restart-hold`).
    pub pass_after_ns: u64,
}

/// Indices into [`MAP_COUNTERS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Frames redirected into an AF_XDP socket.
    Steered = 0,
    /// Frames passed to the kernel (not for a virtual service, or not parseable by us).
    Passed = 1,
    /// Frames that matched but whose redirect failed (no socket in the slot): dropped, never
    /// passed to the director's stack (which would reset the VIP's connections).
    RedirectFailed = 2,
    /// Frames of an offloaded connection rewritten and sent on by the program itself
    /// ([`MAP_OFFLOAD`]).
    Offloaded = 3,
    /// Frames of an offloaded connection handed to a worker because the sync rule picks them
    /// ([`Offload::sync_on`]).
    Handed = 4,
}

/// Number of counters in [`MAP_COUNTERS`].
pub const COUNTERS: u32 = 5;

/// Established connections whose rewrite the XDP program does itself (`xlvsd --offload`):
/// [`FlowKey`] → [`Offload`], one entry per direction, IPv4 and IPv6. The workers fill it; a
/// frame with SYN, FIN or RST, a fragment, IPv4 options, IPv6 extension headers, more than
/// one VLAN tag or a TTL (hop limit) of 1 still goes to them.
pub const MAP_OFFLOAD: &str = "OFFLOAD";
/// Entries of [`MAP_OFFLOAD`] (two per connection).
pub const OFFLOAD_MAX: u32 = 1 << 18;

/// Name of the array of [`EgressPorts`], two copies of one per logical interface (`IfaceId`):
/// the ports the fast path's frames for it leave by. Copy `g` of interface `i` is at
/// `g * MAX_IFACES + i`; [`MAP_EGRESS_GEN`] says which copy is current. The control thread
/// writes the other copy whole, then flips the generation: a frame reads one copy, never a
/// copy half written (a link changes milliseconds apart, a frame takes microseconds).
pub const MAP_EGRESS: &str = "EGRESS";
/// Name of the one-entry array holding the current copy of [`MAP_EGRESS`] (0 or 1).
pub const MAP_EGRESS_GEN: &str = "EGRESS_GEN";

/// Value of [`MAP_EGRESS`]: the ifindexes a logical interface transmits on (a plain port: its
/// own; a bond: its usable members in the bond's order, or its active member), `count` of
/// them. None (`count` 0): the program leaves the frames to the workers, which drop and
/// count them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EgressPorts {
    pub count: u32,
    pub ifindex: [u32; MAX_IFACES as usize],
}

/// Key of [`MAP_OFFLOAD`]: a frame's tuple as on the wire (IPv4 addresses in the first four
/// bytes, ports in network byte order).
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

impl FlowKey {
    /// Key for an IPv4 tuple; ports as on the wire (network byte order).
    pub const fn v4_raw(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> Self {
        let [ports, tail] = ports_proto(sport, dport, proto, FAMILY_IPV4);
        let w = key40(v4_words(src), v4_words(dst), ports, tail);
        // Safety: see `addr_words`.
        unsafe { core::mem::transmute(w) }
    }

    /// Key for an IPv6 tuple; ports as on the wire (network byte order).
    pub const fn v6_raw(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, proto: u8) -> Self {
        let [ports, tail] = ports_proto(sport, dport, proto, FAMILY_IPV6);
        let w = key40(addr_words(src), addr_words(dst), ports, tail);
        // Safety: see `addr_words`.
        unsafe { core::mem::transmute(w) }
    }
}

/// Value of [`MAP_OFFLOAD`]: the rewrite a worker did for the first frame of this direction,
/// to be repeated for every later one, and what the program reports back.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Offload {
    /// The frame's new Ethernet destination and source.
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// Where it goes: the logical interface (an index into [`MAP_EGRESS`]: a port, or a
    /// bond whose usable members the control thread keeps there) and the bond's transmit
    /// hash of the rewritten frame, which picks the member (`ifindex[hash % count]`) as the
    /// workers pick it for their frames.
    pub egress: u32,
    pub hash: u32,
    /// The new source and destination address and ports (as on the wire; unchanged ones
    /// copied from the key). An IPv4 address is in the first four bytes (the key's
    /// `family` says which).
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// One's-complement sums (unfolded, RFC 1624) to add to the IPv4 header checksum (the
    /// addresses and the TTL decrement; unused for IPv6, whose header has none) and to the
    /// TCP or UDP checksum (the pseudo-header's addresses and the ports): the rewrite of a
    /// connection never changes, so neither do they.
    pub ip_delta: u32,
    pub l4_delta: u32,
    /// The IPVS sync rule, for a client → director entry while a sync master runs
    /// (`sync_on` 1; else 0 and the rest unused): the client frames counted as the core counts
    /// them (`sync_pkts`: modulo `sync_period`, or up to 255 with a period of 0). The frame
    /// whose count is `sync_due` (the stored sync threshold) is not forwarded here: the
    /// program hands it to the worker, which reports the connection, and leaves that frame's
    /// [`handoff_mark`] in `handed`, so the worker tells it from other frames that reach it.
    pub sync_on: u8,
    pub sync_pkts: u8,
    pub sync_period: u8,
    pub sync_due: u8,
    pub handed: u32,
    /// Written by the program: `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC, to a tick) of the
    /// last frame it sent on, and how many
    /// frames and bytes (their IP lengths, as IPVS counts; the worker's expiry and counters
    /// read them).
    pub last_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    /// When the worker filed it (CLOCK_MONOTONIC ns; the program leaves it alone): with the
    /// key, which entry a count is of, should a tuple come back as a new connection.
    pub filed_ns: u64,
}

impl Offload {
    /// The count a client frame makes on an entry that counts (`sync_on`), as
    /// `Outbox::stored` keeps it in the core.
    #[inline(always)]
    pub fn next_sync_count(&self) -> u8 {
        let n = self.sync_pkts as u16 + 1;
        if self.sync_period == 0 {
            if n > 255 { 255 } else { n as u8 }
        } else {
            (n % self.sync_period as u16) as u8
        }
    }
}

/// What tells a frame the program handed to a worker (see [`Offload::handed`]) from the
/// others of its flow, read from its IPv4 header `ip` (without options) and the first 8
/// bytes of its TCP or UDP header `l4`: TCP's sequence number, or for UDP the IPv4
/// identification and header checksum.
#[inline(always)]
pub fn handoff_mark(proto: u8, ip: &[u8; 20], l4: &[u8; 8]) -> u32 {
    if proto == PROTO_TCP {
        u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]])
    } else {
        u32::from_be_bytes([ip[4], ip[5], ip[10], ip[11]])
    }
}

/// [`handoff_mark`] for IPv6, whose header has neither identification nor checksum: bytes
/// 4 to 7 of the TCP or UDP header `l4`, TCP's sequence number or UDP's length and checksum
/// (datagrams of one flow that carry the same payload share it, so the worker may take a
/// later one of them for the handed one: the sync rule's count is then off by one for that
/// connection, nothing else).
#[inline(always)]
pub fn handoff_mark6(l4: &[u8; 8]) -> u32 {
    u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]])
}

/// The benchmark rig's XDP object (`ebpf/src/bench.rs`, not part of the product): the sink
/// program, which redirects IPv4 TCP/UDP frames to the AF_XDP socket of their RX queue.
pub const PROG_SINK: &str = "xlvs_sink";
/// The benchmark rig's XDP-only forwarder (the floor of the XDP path): stateless DNAT of one
/// VIP to one RIP, then a redirect out of another interface.
pub const PROG_FWD: &str = "xlvs_fwd";
/// The sink's XSKMAP: RX queue → socket.
pub const MAP_SINK_XSKS: &str = "SINK_XSKS";
/// The forwarder's configuration: one [`FwdConfig`] at index 0.
pub const MAP_FWD: &str = "FWD";

/// Value of [`MAP_FWD`]. Addresses as on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FwdConfig {
    pub vip: [u8; 4],
    pub rip: [u8; 4],
    /// The egress interface (the realservers' side).
    pub ifindex: u32,
    /// The realserver's MAC, and the egress interface's own.
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

#[cfg(feature = "user")]
mod user {
    // Safety: as below.
    unsafe impl aya::Pod for super::FwdConfig {}
    // Safety: all of these are #[repr(C)], Copy, with explicit padding and no pointers,
    // so any bit pattern read back from a map is a valid value.
    unsafe impl aya::Pod for super::L4Key {}
    // Safety: as above.
    unsafe impl aya::Pod for super::AddrKey {}
    // Safety: as above.
    unsafe impl aya::Pod for super::SteerValue {}
    // Safety: as above.
    unsafe impl aya::Pod for super::IfaceSlot {}
    // Safety: as above.
    unsafe impl aya::Pod for super::FragKey {}
    // Safety: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // Safety: as above.
    unsafe impl aya::Pod for super::Offload {}
    // Safety: as above (`u32`s only).
    unsafe impl aya::Pod for super::EgressPorts {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const A4: [u8; 4] = [192, 0, 2, 1];
    const B4: [u8; 4] = [10, 10, 0, 11];
    const A6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    const B6: [u8; 16] = [
        0xfd, 0, 0, 0x10, 0xff, 0xee, 0xdd, 0xcc, 0, 0, 0, 0, 0, 0, 0, 0x11,
    ];

    /// An IPv4 address as a 16-byte key address: the four bytes first, zeros after.
    fn v4_16(a: [u8; 4]) -> [u8; 16] {
        let mut r = [0; 16];
        r[..4].copy_from_slice(&a);
        r
    }

    #[test]
    fn keys_built_from_words_are_the_field_by_field_keys() {
        let port = 8080u16.to_be();
        assert_eq!(
            L4Key::v4_raw(A4, port, PROTO_TCP),
            L4Key {
                addr: v4_16(A4),
                port,
                proto: PROTO_TCP,
                family: FAMILY_IPV4
            }
        );
        assert_eq!(
            L4Key::v6(A6, 8080, PROTO_UDP),
            L4Key {
                addr: A6,
                port,
                proto: PROTO_UDP,
                family: FAMILY_IPV6
            }
        );
        let addr = |addr, family| AddrKey {
            addr,
            family,
            _pad: [0; 3],
        };
        assert_eq!(AddrKey::v4(A4), addr(v4_16(A4), FAMILY_IPV4));
        assert_eq!(AddrKey::v6(B6), addr(B6, FAMILY_IPV6));
        let flow = |src, dst, family| FlowKey {
            src,
            dst,
            sport: 0x1234,
            dport: port,
            proto: PROTO_TCP,
            family,
            _pad: [0; 2],
        };
        assert_eq!(
            FlowKey::v4_raw(A4, B4, 0x1234, port, PROTO_TCP),
            flow(v4_16(A4), v4_16(B4), FAMILY_IPV4)
        );
        assert_eq!(
            FlowKey::v6_raw(A6, B6, 0x1234, port, PROTO_TCP),
            flow(A6, B6, FAMILY_IPV6)
        );
        let frag = |src, dst, ident, family| FragKey {
            src,
            dst,
            ident,
            proto: PROTO_UDP,
            family,
            _pad: [0; 2],
        };
        assert_eq!(
            FragKey::v4(A4, B4, 0xbeef, PROTO_UDP),
            frag(v4_16(A4), v4_16(B4), 0xbeef, FAMILY_IPV4)
        );
        assert_eq!(
            FragKey::v6(A6, B6, 0xdead_beef, PROTO_UDP),
            frag(A6, B6, 0xdead_beef, FAMILY_IPV6)
        );
    }

    #[test]
    fn keys_keep_their_sizes() {
        use core::mem::size_of;
        assert_eq!(size_of::<L4Key>(), 20);
        assert_eq!(size_of::<AddrKey>(), 20);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<FragKey>(), 40);
    }
}
