//! The workers' handle on the XDP program's `OFFLOAD` map (`xlvsd --offload`, see
//! [`crate::core::offload`]): plain `bpf(2)` element operations on the map's file
//! descriptor, which the control plane opened when it loaded the program. A worker calls
//! them a few times per connection (one update per direction, one delete per direction,
//! one lookup per expiry that finds the connection offloaded), never per packet.

use std::os::fd::RawFd;

use xlvs_common::{FlowKey, Offload};

use crate::core::Instant;
use crate::core::offload::{OffloadRequest, OffloadSeen};
use crate::wire::{checksum, ethernet};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// `BPF_ANY`: create or replace.
const BPF_ANY: u64 = 0;

/// `union bpf_attr` as the element commands read it.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    /// `value`, or `next_key` for `BPF_MAP_GET_NEXT_KEY`.
    value: u64,
    flags: u64,
}

/// `union bpf_attr` as `BPF_MAP_LOOKUP_BATCH` reads and writes it.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The `OFFLOAD` map, by a descriptor the control plane keeps open for the workers' life.
#[derive(Clone, Copy, Debug)]
pub struct OffloadMap {
    fd: RawFd,
}

impl OffloadMap {
    pub fn new(fd: RawFd) -> Self {
        OffloadMap { fd }
    }

    fn call(&self, cmd: libc::c_long, key: *const FlowKey, value: u64, flags: u64) -> bool {
        let attr = ElemAttr {
            map_fd: self.fd as u32,
            key: key as u64,
            value,
            flags,
            ..ElemAttr::default()
        };
        // Safety: `attr` is a valid `bpf_attr` prefix for the element commands; the key and
        // value pointers point at live values of the map's key and value sizes.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                &attr as *const ElemAttr,
                size_of::<ElemAttr>() as libc::c_uint,
            )
        };
        r == 0
    }

    /// Files (or replaces) an entry. False if the map refused it (full).
    pub fn update(&self, key: &FlowKey, value: &Offload) -> bool {
        self.call(
            BPF_MAP_UPDATE_ELEM,
            key,
            value as *const Offload as u64,
            BPF_ANY,
        )
    }

    /// Removes an entry (absent is fine).
    pub fn delete(&self, key: &FlowKey) {
        self.call(BPF_MAP_DELETE_ELEM, key, 0, 0);
    }

    pub fn lookup(&self, key: &FlowKey) -> Option<Offload> {
        let mut v = Offload::default();
        self.call(BPF_MAP_LOOKUP_ELEM, key, &mut v as *mut Offload as u64, 0)
            .then_some(v)
    }

    /// Every entry with its value (the control thread's count of what the program forwarded,
    /// once a second): `BPF_MAP_LOOKUP_BATCH`, 1 024 entries a call, or one key at a time
    /// where the kernel has no batch lookup for the map. An entry added or removed meanwhile
    /// may be missed or seen; none is seen twice by the batch walk.
    pub fn entries(&self) -> Vec<(FlowKey, Offload)> {
        const CHUNK: usize = 1024;
        let mut out = Vec::new();
        let mut keys = vec![FlowKey::default(); CHUNK];
        let mut vals = vec![Offload::default(); CHUNK];
        // A hash map's batch position is a bucket number.
        let (mut pos, mut next) = (0u32, 0u32);
        // A call may stop short of CHUNK at a bucket boundary: generous bound on the calls.
        for round in 0..4 * (xlvs_common::OFFLOAD_MAX as usize / CHUNK) + 16 {
            let mut attr = BatchAttr {
                in_batch: if round == 0 {
                    0
                } else {
                    &pos as *const u32 as u64
                },
                out_batch: &mut next as *mut u32 as u64,
                keys: keys.as_mut_ptr() as u64,
                values: vals.as_mut_ptr() as u64,
                count: CHUNK as u32,
                map_fd: self.fd as u32,
                ..BatchAttr::default()
            };
            // Safety: `attr` is a valid `bpf_attr` for the batch commands; the key and value
            // buffers hold `count` elements of the map's key and value sizes, the positions
            // are u32 as a hash map's are. The kernel writes `count` back into `attr`.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    size_of::<BatchAttr>() as libc::c_uint,
                )
            };
            let errno = std::io::Error::last_os_error().raw_os_error();
            let n = (attr.count as usize).min(CHUNK);
            out.extend(keys[..n].iter().copied().zip(vals[..n].iter().copied()));
            if r == 0 {
                pos = next;
                continue;
            }
            if errno == Some(libc::ENOENT) {
                return out;
            }
            // No batch operations (or a bucket larger than a chunk): one key at a time.
            break;
        }
        out.clear();
        let mut key = FlowKey::default();
        let mut first = true;
        for _ in 0..=xlvs_common::OFFLOAD_MAX {
            let prev: *const FlowKey = if first { std::ptr::null() } else { &key };
            let mut k = FlowKey::default();
            if !self.call(BPF_MAP_GET_NEXT_KEY, prev, &mut k as *mut FlowKey as u64, 0) {
                break;
            }
            first = false;
            key = k;
            if let Some(v) = self.lookup(&key) {
                out.push((key, v));
            }
        }
        out
    }

    /// Removes every entry (at start, and when the queue of entries to remove overflowed);
    /// returns how many went.
    pub fn clear(&self) -> usize {
        let mut n = 0;
        let mut key = FlowKey::default();
        // Always ask for the first key: each round deletes it. Bounded by the map's size.
        for _ in 0..=xlvs_common::OFFLOAD_MAX {
            let attr_key: *const FlowKey = std::ptr::null();
            if !self.call(
                BPF_MAP_GET_NEXT_KEY,
                attr_key,
                &mut key as *mut FlowKey as u64,
                0,
            ) {
                break;
            }
            self.delete(&key);
            n += 1;
        }
        n
    }
}

impl OffloadSeen for OffloadMap {
    fn last_seen(&mut self, key: &FlowKey) -> Option<Instant> {
        self.lookup(key)
            .filter(|v| v.last_ns != 0)
            .map(|v| Instant(v.last_ns))
    }

    fn handed(&mut self, key: &FlowKey) -> Option<u32> {
        self.lookup(key)
            .filter(|v| v.sync_on != 0)
            .map(|v| v.handed)
    }
}

/// The entry that repeats, for every later frame of its direction, what the core did to
/// `frame` (IPv4 TCP or UDP without options, or IPv6 TCP or UDP without extension headers;
/// untagged or with one 802.1Q tag, as the XDP program takes them), whose tuple was `key`
/// before, to go out of logical interface `egress` on the port the bond's transmit hash
/// `hash` picks. None for any other frame, or one of the other family than the key's.
pub fn entry(
    req: &OffloadRequest,
    frame: &[u8],
    (egress, hash): (crate::core::service::IfaceId, u32),
    filed_ns: u64,
) -> Option<Offload> {
    let key = &req.key;
    // Untagged, or one 802.1Q tag (which the program leaves as it is).
    let (ethertype, ip) = ethernet::payload(frame).ok()?;
    // Where the addresses, the protocol and the TCP or UDP header are, and how long the
    // addresses are.
    let (addrs, l4, alen) = match (ethertype, key.family) {
        (ethernet::EtherType::Ipv4, xlvs_common::FAMILY_IPV4) => {
            let h = frame.get(ip..ip + 20)?;
            if h[0] != 0x45 || h[9] != key.proto {
                return None;
            }
            (ip + 12, ip + 20, 4)
        }
        (ethernet::EtherType::Ipv6, xlvs_common::FAMILY_IPV6) => {
            let h = frame.get(ip..ip + 40)?;
            if h[0] >> 4 != 6 || h[6] != key.proto {
                return None;
            }
            (ip + 8, ip + 40, 16)
        }
        _ => return None,
    };
    let l4_len = if key.proto == xlvs_common::PROTO_UDP {
        8
    } else {
        18
    };
    if frame.len() < l4 + l4_len {
        return None;
    }
    let (new_src, new_dst) = (
        &frame[addrs..addrs + alen],
        &frame[addrs + alen..addrs + 2 * alen],
    );
    let be16 = |p: u16| u16::from_be_bytes(p.to_ne_bytes());
    let sport = u16::from_ne_bytes([frame[l4], frame[l4 + 1]]);
    let dport = u16::from_ne_bytes([frame[l4 + 2], frame[l4 + 3]]);
    // The addresses' words, old and new: what both checksums' deltas are made of.
    fn words(a: &[u8]) -> impl Iterator<Item = u16> + '_ {
        a.chunks_exact(2).map(|w| u16::from_be_bytes([w[0], w[1]]))
    }
    let addrs_delta: u32 = words(&key.src[..alen])
        .chain(words(&key.dst[..alen]))
        .zip(words(new_src).chain(words(new_dst)))
        .map(|(o, n)| checksum::delta16(o, n))
        .sum();
    let mut e = Offload {
        egress: egress as u32,
        hash,
        sport,
        dport,
        // IPv6's header has no checksum: the program leaves `ip_delta` unused there.
        ip_delta: if alen == 4 {
            addrs_delta + checksum::TTL_DEC
        } else {
            0
        },
        l4_delta: addrs_delta
            + checksum::delta16(be16(key.sport), be16(sport))
            + checksum::delta16(be16(key.dport), be16(dport)),
        filed_ns,
        ..Offload::default()
    };
    if let Some(sc) = req.sync {
        e.sync_on = 1;
        e.sync_pkts = sc.pkts;
        e.sync_period = sc.period;
        e.sync_due = sc.due;
    }
    e.dst_mac.copy_from_slice(&frame[0..6]);
    e.src_mac.copy_from_slice(&frame[6..12]);
    e.src[..alen].copy_from_slice(new_src);
    e.dst[..alen].copy_from_slice(new_dst);
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::offload::flow_key;
    use std::net::Ipv4Addr;

    /// The entry's deltas, applied as the XDP program applies them, give the checksums the
    /// core computed: built from a frame before and after a NAT rewrite.
    #[test]
    fn deltas_reproduce_the_cores_checksums() {
        use etherparse::PacketBuilder;
        let build = |src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, ttl: u8| {
            let mut v = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4(src, dst, ttl)
                .tcp(sp, dp, 7, 1000)
                .ack(9)
                .write(&mut v, b"hello")
                .unwrap();
            v
        };
        let before = build([192, 0, 2, 2], [192, 0, 2, 100], 40000, 80, 64);
        let after = build([192, 0, 2, 2], [10, 10, 0, 11], 40000, 8080, 63);
        let key = flow_key(&crate::core::conn::ConnKey {
            src: Ipv4Addr::new(192, 0, 2, 2),
            dst: Ipv4Addr::new(192, 0, 2, 100),
            sport: 40000,
            dport: 80,
            proto: 6,
        });
        let req = OffloadRequest { key, sync: None };
        let e = entry(&req, &after, (3, 0xabcd), 1).unwrap();
        let ck = |f: &[u8], at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
        assert_eq!(
            checksum::apply(ck(&before, 24), e.ip_delta),
            ck(&after, 24),
            "IPv4 header checksum"
        );
        assert_eq!(
            checksum::apply(ck(&before, 50), e.l4_delta),
            ck(&after, 50),
            "TCP checksum"
        );
        assert_eq!(e.dst[..4], [10, 10, 0, 11]);
        assert_eq!(e.dport.to_ne_bytes(), 8080u16.to_be_bytes());
        assert_eq!((e.egress, e.hash), (3, 0xabcd));
        // A frame with one 802.1Q tag: the same rewrite (the tag stays).
        let tagged = crate::testing::vlan_tagged(&after, 42);
        assert_eq!(entry(&req, &tagged, (3, 0xabcd), 1), Some(e));
        // Not for another tag (802.1ad), nor a frame that is not IPv4.
        let mut qinq = tagged.clone();
        qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
        assert!(entry(&req, &qinq, (3, 0), 1).is_none());
        let mut other = after.clone();
        other[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert!(entry(&req, &other, (3, 0), 1).is_none());
    }
}
