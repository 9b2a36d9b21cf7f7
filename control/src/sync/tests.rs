//! The sync codec against the reference's example, real captures, every rejection rule,
//! the encoder's packing, and random input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xlvs_dataplane::core::events::{ConnEvent, EventKind};
use xlvs_dataplane::core::service::Fwd;
use xlvs_dataplane::core::tcp_state::TcpState;

use super::*;

/// The reference's worked example: one IPv4 DR connection, syncid 1.
const EXAMPLE: [u8; 44] = [
    0x00, 0x01, 0x00, 0x2C, 0x01, 0x01, 0x00, 0x00, // header
    0x00, 0x06, 0x00, 0x24, // IPv4, TCP, version 0 / length 36
    0x00, 0x00, 0x00, 0x83, // DR | NOOUTPUT
    0x00, 0x01, 0xC7, 0x38, 0x00, 0x50, 0x00, 0x50, // state 1, ports 51000 80 80
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x84, // fwmark 0, timeout 900
    0xC0, 0x00, 0x02, 0x0A, 0xC6, 0x33, 0x64, 0x01, 0x0A, 0x00, 0x00, 0x0B, // addresses
];

pub(super) const V1_CAPTURE: &[u8] =
    include_bytes!("../../tests/captures/ipvs-sync-v1-linux-6.1-master.pcapng");
pub(super) const V0_CAPTURE: &[u8] =
    include_bytes!("../../tests/captures/ipvs-sync-v0-constructed.pcap");

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn example_event() -> ConnEvent {
    ConnEvent {
        kind: EventKind::StateChanged,
        proto: 6,
        fwd: Fwd::Route,
        state: TcpState::Established,
        template: false,
        inactive: false,
        persistent: false,
        fwmark: 0,
        cport: 51000,
        vport: 80,
        dport: 80,
        timeout: 900,
        caddr: v4([192, 0, 2, 10]),
        vaddr: v4([198, 51, 100, 1]),
        daddr: v4([10, 0, 0, 11]),
    }
}

fn conn(proto: u8, flags: u32, state: u16, cport: u16, timeout: u32) -> SyncConn {
    SyncConn {
        proto,
        flags,
        state,
        cport,
        vport: 80,
        dport: 8080,
        fwmark: 0,
        timeout,
        caddr: v4([198, 51, 100, 7]),
        vaddr: v4([192, 0, 2, 1]),
        daddr: v4([10, 0, 0, 1]),
        seq: None,
        pe_data: None,
        pe_name: None,
    }
}

fn conn6(cport: u16) -> SyncConn {
    SyncConn {
        caddr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7)),
        vaddr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1)),
        daddr: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x11)),
        ..conn(6, 0, 1, cport, 900)
    }
}

fn encode_all(syncid: u8, maxlen: usize, conns: &[SyncConn]) -> Vec<Vec<u8>> {
    let mut enc = Encoder::new(syncid, maxlen);
    let mut out: Vec<Vec<u8>> = conns
        .iter()
        .filter_map(|c| enc.push(c).expect("encodable"))
        .collect();
    out.extend(enc.flush());
    out
}

// ---------------------------------------------------------------------------------------
// 1. The reference's example.

#[test]
fn the_reference_example_decodes_and_encodes_byte_for_byte() {
    let d = decode(&EXAMPLE, 1).unwrap();
    assert_eq!((d.syncid, d.version), (1, Version::V1));
    assert_eq!((d.dropped.len(), d.stopped), (0, None));
    let want = SyncConn::from_event(&example_event()).unwrap();
    assert_eq!(d.conns, std::slice::from_ref(&want));
    assert_eq!(want.flags, flags::FWD_DR | flags::NOOUTPUT);
    assert_eq!(want.backup_flags(Version::V1), 0xA3);
    assert_eq!(
        encode_all(1, Encoder::DEFAULT_MAXLEN, &[want]),
        [EXAMPLE.to_vec()]
    );
    // A backup with syncid 0 takes it too.
    assert!(decode(&EXAMPLE, 0).is_ok());
}

#[test]
fn events_map_to_the_kernels_flags() {
    let e = example_event();
    let nat = ConnEvent {
        fwd: Fwd::Masq,
        ..e
    };
    assert_eq!(SyncConn::from(&nat).flags, 0);
    let nat_closing = ConnEvent {
        inactive: true,
        persistent: false,
        fwmark: 0,
        state: TcpState::TimeWait,
        ..nat
    };
    let c = SyncConn::from(&nat_closing);
    assert_eq!((c.flags, c.state), (flags::INACTIVE, 5));
    let dr_inactive = ConnEvent {
        inactive: true,
        persistent: false,
        fwmark: 0,
        ..e
    };
    assert_eq!(SyncConn::from(&dr_inactive).flags, 0x183);
    // Templates: TEMPLATE | INACTIVE with the forwarding bits, cport 0, state 0.
    let tpl = ConnEvent {
        kind: EventKind::TemplateCreated,
        template: true,
        state: TcpState::None,
        cport: 0,
        timeout: 300,
        caddr: v4([192, 0, 2, 0]),
        ..e
    };
    let t = SyncConn::from(&tpl);
    assert_eq!((t.flags, t.cport, t.state, t.fwmark), (0x1183, 0, 0, 0));
    let t_nat = SyncConn::from(&ConnEvent {
        fwd: Fwd::Masq,
        ..tpl
    });
    assert_eq!(t_nat.flags, 0x1100);
    // A fwmark service's template: protocol 0, the mark in vaddr and fwmark.
    let fwm = SyncConn::from(&ConnEvent {
        proto: 0,
        vport: 0,
        dport: 0,
        vaddr: v4([0, 0, 0, 7]),
        ..tpl
    });
    assert_eq!((fwm.proto, fwm.fwmark, fwm.vaddr), (0, 7, v4([0, 0, 0, 7])));
    let fwm6 = SyncConn::from(&ConnEvent {
        proto: 0,
        caddr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
        vaddr: IpAddr::V6(Ipv6Addr::new(0, 7, 0, 0, 0, 0, 0, 0)),
        daddr: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
        ..tpl
    });
    assert_eq!(fwm6.fwmark, 7);
    // No expiry on the wire.
    let gone = ConnEvent {
        kind: EventKind::Expired,
        timeout: 0,
        ..e
    };
    assert_eq!(SyncConn::from_event(&gone), None);
}

// ---------------------------------------------------------------------------------------
// 2. Real captures, read with a small pcap / pcapng reader (Ethernet, IPv4, UDP).

/// The UDP payloads of a pcap or pcapng file of Ethernet frames.
pub(super) fn udp_payloads(file: &[u8]) -> Vec<Vec<u8>> {
    let frames = if file[..4] == [0x0A, 0x0D, 0x0D, 0x0A] {
        pcapng_frames(file)
    } else {
        pcap_frames(file)
    };
    frames.iter().filter_map(|f| udp_of_ethernet(f)).collect()
}

fn u32_at(b: &[u8], at: usize, le: bool) -> u32 {
    let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if le {
        u32::from_le_bytes(w)
    } else {
        u32::from_be_bytes(w)
    }
}

fn pcap_frames(file: &[u8]) -> Vec<Vec<u8>> {
    let le = match file[..4] {
        [0xD4, 0xC3, 0xB2, 0xA1] | [0x4D, 0x3C, 0xB2, 0xA1] => true,
        [0xA1, 0xB2, 0xC3, 0xD4] | [0xA1, 0xB2, 0x3C, 0x4D] => false,
        _ => panic!("not a pcap file"),
    };
    assert_eq!(u32_at(file, 20, le), 1, "Ethernet link type");
    let mut frames = Vec::new();
    let mut p = 24;
    while p + 16 <= file.len() {
        let caplen = u32_at(file, p + 8, le) as usize;
        frames.push(file[p + 16..p + 16 + caplen].to_vec());
        p += 16 + caplen;
    }
    frames
}

fn pcapng_frames(file: &[u8]) -> Vec<Vec<u8>> {
    let le = u32_at(file, 8, true) == 0x1A2B_3C4D;
    let mut frames = Vec::new();
    let mut p = 0;
    while p + 12 <= file.len() {
        let (ty, len) = (u32_at(file, p, le), u32_at(file, p + 4, le) as usize);
        match ty {
            // Interface description: link type u16 first.
            1 => {
                let link = u16::from_le_bytes([file[p + 8], file[p + 9]]);
                let link = if le { link } else { link.swap_bytes() };
                assert_eq!(link, 1, "Ethernet link type");
            }
            // Enhanced packet: interface, timestamp (2 words), captured and original length.
            6 => {
                let caplen = u32_at(file, p + 20, le) as usize;
                frames.push(file[p + 28..p + 28 + caplen].to_vec());
            }
            _ => {}
        }
        p += len;
    }
    frames
}

fn udp_of_ethernet(f: &[u8]) -> Option<Vec<u8>> {
    if f.len() < 14 + 20 || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &f[14..];
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if ip[9] != 17 {
        return None;
    }
    let udp = &ip[ihl..];
    let len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    Some(udp[8..len].to_vec())
}

#[test]
fn a_linux_master_datagram_decodes_and_reencodes() {
    let payloads = udp_payloads(V1_CAPTURE);
    assert_eq!(payloads.len(), 1);
    let bytes = &payloads[0];
    assert_eq!(bytes.len(), 548);
    let d = decode(bytes, 7).unwrap();
    assert_eq!((d.syncid, d.version, d.stopped), (7, Version::V1, None));
    assert!(d.dropped.is_empty());
    // What `tshark -V` shows: per client port, ESTABLISHED 900 s, then CLOSE_WAIT 60 s and
    // TIME_WAIT 120 s, both INACTIVE; NAT, TCP, 10.200.5.2 → 10.200.5.1:80 → 10.200.6.2:80.
    let mut want = Vec::new();
    for cport in [46744, 46758, 46762, 46772, 46786] {
        for (f, state, timeout) in [(0, 1, 900), (0x100, 7, 60), (0x100, 5, 120)] {
            want.push(SyncConn {
                vport: 80,
                dport: 80,
                caddr: v4([10, 200, 5, 2]),
                vaddr: v4([10, 200, 5, 1]),
                daddr: v4([10, 200, 6, 2]),
                ..conn(6, f, state, cport, timeout)
            });
        }
    }
    assert_eq!(d.conns, want);
    assert_eq!(
        encode_all(7, Encoder::DEFAULT_MAXLEN, &d.conns),
        std::slice::from_ref(bytes)
    );
    // Another backup's syncid ignores it.
    assert_eq!(decode(bytes, 8), Err(Reject::WrongSyncid));
}

#[test]
fn a_v0_datagram_decodes() {
    let payloads = udp_payloads(V0_CAPTURE);
    assert_eq!(payloads.len(), 1);
    let d = decode(&payloads[0], 9).unwrap();
    assert_eq!((d.syncid, d.version, d.stopped), (9, Version::V0, None));
    assert_eq!(
        d.conns,
        [SyncConn {
            proto: 6,
            flags: flags::FWD_DR,
            state: 1,
            cport: 40000,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 0,
            caddr: v4([10, 200, 1, 3]),
            vaddr: v4([10, 200, 1, 100]),
            daddr: v4([10, 200, 2, 11]),
            seq: None,
            pe_data: None,
            pe_name: None,
        }]
    );
    assert_eq!(d.conns[0].backup_flags(Version::V0), 0x23);
}

#[test]
fn v0_sequence_data_follows_the_entry_in_host_order() {
    let mut m = vec![2, 0, 0, 0];
    let mut e = [0u8; 24];
    e[1] = 6;
    e[20..22].copy_from_slice(&0x0603u16.to_be_bytes()); // DR | IN_SEQ | OUT_SEQ
    e[22..24].copy_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&e);
    let seq: [u8; 24] = std::array::from_fn(|i| i as u8);
    m.extend_from_slice(&seq);
    e[1] = 17;
    e[20..24].fill(0);
    m.extend_from_slice(&e);
    let n = m.len() as u16;
    m[2..4].copy_from_slice(&n.to_be_bytes());
    let d = decode(&m, 0).unwrap();
    assert_eq!(d.conns.len(), 2);
    assert_eq!((d.conns[0].seq, d.conns[1].seq), (Some(seq), None));
    assert_eq!(d.conns[1].proto, 17);
    // Sequence data cut short: the rest of the datagram goes.
    let mut cut = m[..4 + 24 + 10].to_vec();
    set_size(&mut cut);
    let d = decode(&cut, 0).unwrap();
    assert_eq!(
        (d.conns.len(), d.stopped),
        (0, Some((0, Reject::EntryOverrun)))
    );
}

// ---------------------------------------------------------------------------------------
// 3. Malformed datagrams, one rule each.

/// A v1 datagram of `entries` (raw, padded between), its count and size fixed up.
fn v1(syncid: u8, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![0, syncid, 0, 0, entries.len() as u8, 1, 0, 0];
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            m.resize(m.len().next_multiple_of(4), 0);
        }
        m.extend_from_slice(e);
    }
    set_size(&mut m);
    m
}

fn set_size(m: &mut [u8]) {
    let n = m.len() as u16;
    m[2..4].copy_from_slice(&n.to_be_bytes());
}

/// The raw v1 entry of `c`.
fn raw(c: &SyncConn) -> Vec<u8> {
    let d = encode_all(0, MAX_DATAGRAM, std::slice::from_ref(c));
    d[0][HEADER_V1..].to_vec()
}

/// An entry with `opts` appended and its length fixed up.
fn with_opts(c: &SyncConn, opts: &[u8]) -> Vec<u8> {
    let mut e = raw(c);
    e.extend_from_slice(opts);
    let len = e.len() as u16;
    e[2..4].copy_from_slice(&len.to_be_bytes());
    e
}

enum Want {
    Err(Reject),
    /// Conns kept, entries dropped, stop.
    Ok(
        usize,
        &'static [(usize, EntryDrop)],
        Option<(usize, Reject)>,
    ),
}

#[test]
fn malformed_datagrams_follow_the_kernels_rules() {
    let good = raw(&conn(6, 0, 1, 1000, 900));
    let good2 = raw(&conn(6, 0, 1, 1001, 900));
    let mut cases: Vec<(&str, Vec<u8>, Want)> = vec![
        ("empty", vec![], Want::Err(Reject::Short)),
        ("3 bytes", vec![0, 1, 0], Want::Err(Reject::Short)),
        (
            "size field off by one",
            {
                let mut m = v1(1, std::slice::from_ref(&good));
                m.push(0);
                m
            },
            Want::Err(Reject::SizeMismatch),
        ),
        (
            "wrong syncid",
            v1(2, std::slice::from_ref(&good)),
            Want::Err(Reject::WrongSyncid),
        ),
        ("no entries", v1(1, &[]), Want::Ok(0, &[], None)),
        (
            "two good",
            v1(1, &[good.clone(), good2.clone()]),
            Want::Ok(2, &[], None),
        ),
        (
            "255 claimed, 1 present",
            {
                let mut m = v1(1, std::slice::from_ref(&good));
                m[4] = 255;
                m
            },
            Want::Ok(1, &[], Some((1, Reject::EntryTruncated))),
        ),
        (
            "entry length past the datagram",
            {
                let mut e = good.clone();
                e[3] = 40;
                v1(1, &[good.clone(), e])
            },
            Want::Ok(1, &[], Some((1, Reject::EntryOverrun))),
        ),
        (
            "entry version 1",
            {
                let mut e = good.clone();
                e[2] = 0x10;
                v1(1, &[e, good2.clone()])
            },
            Want::Ok(0, &[], Some((0, Reject::EntryVersion))),
        ),
        (
            "unknown type 2",
            {
                let mut e = good.clone();
                e[0] = 2;
                v1(1, &[good.clone(), e])
            },
            Want::Ok(1, &[], Some((1, Reject::UnknownType))),
        ),
        (
            "type 3 reads as IPv6: too short",
            {
                let mut e = good.clone();
                e[0] = 3;
                v1(1, &[e])
            },
            Want::Ok(0, &[], Some((0, Reject::EntryShort))),
        ),
        (
            "entry length 20",
            {
                let mut e = good.clone();
                e[3] = 20;
                v1(1, &[e])
            },
            Want::Ok(0, &[], Some((0, Reject::EntryShort))),
        ),
        (
            "zero-length option",
            v1(
                1,
                &[good.clone(), with_opts(&conn(6, 0, 1, 2, 9), &[0x41, 0])],
            ),
            Want::Ok(1, &[], Some((1, Reject::OptionZeroLength))),
        ),
        (
            "option past the entry",
            {
                let mut e = with_opts(&conn(6, 0, 1, 2, 9), &[0x41, 4, 1, 2, 3, 4]);
                e[3] -= 1; // the entry ends one byte before the option's data does
                let mut m = v1(1, &[e]);
                m.push(0);
                set_size(&mut m);
                m
            },
            Want::Ok(0, &[], Some((0, Reject::OptionOverrun))),
        ),
        (
            "one byte of option header",
            v1(1, &[with_opts(&conn(6, 0, 1, 2, 9), &[0x41])]),
            Want::Ok(0, &[], Some((0, Reject::OptionTruncated))),
        ),
        (
            "sequence data of 23 bytes",
            v1(
                1,
                &[with_opts(&conn(6, 0, 1, 2, 9), &{
                    let mut o = vec![1, 23];
                    o.extend([0; 23]);
                    o
                })],
            ),
            Want::Ok(0, &[], Some((0, Reject::BadSeqOption))),
        ),
        (
            "sequence data twice (0x41 is sequence data)",
            v1(
                1,
                &[with_opts(&conn(6, 0, 1, 2, 9), &{
                    let mut o = vec![1, 24];
                    o.extend([0; 24]);
                    o.extend([0x41, 24]);
                    o.extend([0; 24]);
                    o
                })],
            ),
            Want::Ok(0, &[], Some((0, Reject::BadSeqOption))),
        ),
        (
            "engine name of 17 bytes",
            v1(
                1,
                &[with_opts(&conn(6, 0, 1, 2, 9), &{
                    let mut o = vec![3, 17];
                    o.extend([b'a'; 17]);
                    o
                })],
            ),
            Want::Ok(0, &[], Some((0, Reject::BadPeName))),
        ),
        (
            "engine data twice",
            v1(1, &[with_opts(&conn(6, 0, 1, 2, 9), &[2, 1, 9, 2, 1, 9])]),
            Want::Ok(0, &[], Some((0, Reject::BadPeData))),
        ),
        (
            "unknown protocol: that entry only",
            v1(
                1,
                &[good.clone(), raw(&conn(47, 0, 0, 2, 9)), good2.clone()],
            ),
            Want::Ok(2, &[(1, EntryDrop::UnknownProtocol)], None),
        ),
        (
            "SCTP: unknown to xlvs",
            v1(1, &[raw(&conn(132, 0, 7, 2, 9))]),
            Want::Ok(0, &[(0, EntryDrop::UnknownProtocol)], None),
        ),
        (
            "TCP state 11",
            v1(1, &[raw(&conn(6, 0, 11, 2, 9)), good.clone()]),
            Want::Ok(1, &[(0, EntryDrop::UnknownState)], None),
        ),
        (
            "UDP state 1",
            v1(1, &[raw(&conn(17, 0, 1, 2, 9))]),
            Want::Ok(0, &[(0, EntryDrop::UnknownState)], None),
        ),
        (
            "template: protocol and state unchecked",
            v1(1, &[raw(&conn(0, 0x1100, 5, 0, 300))]),
            Want::Ok(1, &[], None),
        ),
        (
            "unknown mandatory option",
            v1(
                1,
                &[with_opts(&conn(6, 0, 1, 2, 9), &[9, 2, 0, 0]), good.clone()],
            ),
            Want::Ok(1, &[(0, EntryDrop::UnknownMandatoryOption)], None),
        ),
        (
            "unknown mandatory option hides a later zero length",
            v1(
                1,
                &[
                    with_opts(&conn(6, 0, 1, 2, 9), &[9, 2, 0, 0, 0x42, 0]),
                    good.clone(),
                ],
            ),
            Want::Ok(1, &[(0, EntryDrop::UnknownMandatoryOption)], None),
        ),
        (
            "skippable unknown option",
            v1(1, &[with_opts(&conn(6, 0, 1, 2, 9), &[0x49, 3, 1, 2, 3])]),
            Want::Ok(1, &[], None),
        ),
        (
            "engine data without a name",
            v1(1, &[with_opts(&conn(6, 0, 1, 2, 9), &[2, 2, 7, 7])]),
            Want::Ok(0, &[(0, EntryDrop::PeDataWithoutName)], None),
        ),
    ];
    // v1 with a non-zero spare is read as v0: byte 0 (reserved, 0) is its count.
    let mut spare = v1(1, std::slice::from_ref(&good));
    spare[7] = 1;
    cases.push((
        "v1 spare set: v0, no entries",
        spare,
        Want::Ok(0, &[], None),
    ));
    // Non-zero reserved byte: v0 with that many 24-byte entries, the first read from the
    // v1 header's bytes 4..28: protocol = the version byte (1, ICMP), dropped.
    let mut reserved = v1(1, std::slice::from_ref(&good));
    reserved[0] = 1;
    cases.push((
        "v1 reserved set: v0, garbage entry",
        reserved,
        Want::Ok(0, &[(0, EntryDrop::UnknownProtocol)], None),
    ));
    // Version 2: v0 as well.
    let mut v2 = v1(1, std::slice::from_ref(&good));
    v2[5] = 2;
    cases.push(("version 2: v0, no entries", v2, Want::Ok(0, &[], None)));
    // A 4-byte v0 header claiming one entry.
    cases.push((
        "v0 header only, 1 claimed",
        vec![1, 1, 0, 4],
        Want::Ok(0, &[], Some((0, Reject::EntryTruncated))),
    ));

    for (name, m, want) in cases {
        let got = decode(&m, 1);
        match want {
            Want::Err(r) => assert_eq!(got, Err(r), "{name}"),
            Want::Ok(n, dropped, stopped) => {
                let d = got.unwrap_or_else(|r| panic!("{name}: {r:?}"));
                assert_eq!(
                    (d.conns.len(), d.dropped.as_slice(), d.stopped),
                    (n, dropped, stopped),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn labels_are_distinct() {
    use std::collections::HashSet;
    let r = [
        Reject::Short,
        Reject::SizeMismatch,
        Reject::WrongSyncid,
        Reject::EntryTruncated,
        Reject::EntryOverrun,
        Reject::EntryVersion,
        Reject::UnknownType,
        Reject::EntryShort,
        Reject::OptionTruncated,
        Reject::OptionZeroLength,
        Reject::OptionOverrun,
        Reject::BadSeqOption,
        Reject::BadPeData,
        Reject::BadPeName,
    ];
    assert_eq!(
        r.iter().map(|r| r.label()).collect::<HashSet<_>>().len(),
        r.len()
    );
    let e = [
        EntryDrop::UnknownMandatoryOption,
        EntryDrop::UnknownProtocol,
        EntryDrop::UnknownState,
        EntryDrop::PeDataWithoutName,
    ];
    assert_eq!(
        e.iter().map(|e| e.label()).collect::<HashSet<_>>().len(),
        e.len()
    );
}

// ---------------------------------------------------------------------------------------
// 4. The encoder.

#[test]
fn forty_ipv4_entries_fill_a_default_datagram() {
    assert_eq!(maxlen_for_mtu(1500, false), Encoder::DEFAULT_MAXLEN);
    let mut enc = Encoder::new(3, Encoder::DEFAULT_MAXLEN);
    for i in 0..40 {
        assert_eq!(enc.push(&conn(6, 0, 1, i, 900)).unwrap(), None);
    }
    assert_eq!(enc.pending(), 40);
    let full = enc.push(&conn(6, 0, 1, 40, 900)).unwrap().unwrap();
    assert_eq!((full.len(), full[4], enc.pending()), (8 + 40 * 36, 40, 1));
    let d = decode(&full, 3).unwrap();
    assert_eq!(d.conns.len(), 40);
    assert_eq!(d.conns[39].cport, 39);
    let rest = enc.flush().unwrap();
    assert_eq!(decode(&rest, 3).unwrap().conns[0].cport, 40);
}

#[test]
fn twenty_ipv6_entries_fill_a_default_datagram() {
    let mut enc = Encoder::new(3, Encoder::DEFAULT_MAXLEN);
    for i in 0..20 {
        assert_eq!(enc.push(&conn6(i)).unwrap(), None);
    }
    let full = enc.push(&conn6(20)).unwrap().unwrap();
    assert_eq!((full.len(), full[4], enc.pending()), (8 + 20 * 72, 20, 1));
    let d = decode(&full, 0).unwrap();
    assert_eq!(d.conns, (0..20).map(conn6).collect::<Vec<_>>());
}

#[test]
fn a_datagram_never_counts_more_than_255_entries() {
    let mut enc = Encoder::new(1, 1 << 20);
    assert_eq!(enc.maxlen(), MAX_DATAGRAM);
    for i in 0..255 {
        assert_eq!(enc.push(&conn(17, 0, 0, i, 300)).unwrap(), None);
    }
    let full = enc.push(&conn(17, 0, 0, 255, 300)).unwrap().unwrap();
    assert_eq!((full.len(), full[4], enc.pending()), (8 + 255 * 36, 255, 1));
    assert_eq!(decode(&full, 1).unwrap().conns.len(), 255);
}

#[test]
fn flush_sends_a_partial_datagram_once() {
    let mut enc = Encoder::new(1, Encoder::DEFAULT_MAXLEN);
    assert_eq!(enc.flush(), None);
    for i in 0..3 {
        enc.push(&conn(6, 0, 1, i, 900)).unwrap();
    }
    let d = enc.flush().unwrap();
    assert_eq!((d.len(), d[4], enc.pending()), (8 + 3 * 36, 3, 0));
    assert_eq!(enc.flush(), None);
    // A recycled buffer is reused for the next datagram.
    let cap = d.capacity();
    enc.recycle(d);
    enc.push(&conn(6, 0, 1, 9, 900)).unwrap();
    let again = enc.flush().unwrap();
    assert_eq!(again.len(), 44);
    assert!(again.capacity() >= cap.min(Encoder::DEFAULT_MAXLEN));
}

#[test]
fn entries_after_the_first_start_on_4_byte_boundaries() {
    let odd = SyncConn {
        pe_data: Some(vec![1, 2, 3]),
        pe_name: Some("sip".into()),
        ..conn(17, 0, 0, 5060, 300)
    };
    assert_eq!(odd.wire_len(), Ok(36 + 5 + 5));
    let d = encode_all(1, Encoder::DEFAULT_MAXLEN, &[odd.clone(), odd.clone()]);
    assert_eq!(d.len(), 1);
    // 8 + 46, 2 bytes of padding, 46, none after the last.
    assert_eq!(d[0].len(), 8 + 46 + 2 + 46);
    assert_eq!(&d[0][8 + 46..8 + 48], &[0, 0]);
    assert_eq!(u16::from_be_bytes([d[0][2], d[0][3]]) as usize, d[0].len());
    assert_eq!(decode(&d[0], 1).unwrap().conns, [odd.clone(), odd.clone()]);
    // The padding counts when deciding whether an entry fits.
    let exact = Encoder::new(1, 8 + 46 + 46);
    let mut exact = exact;
    assert_eq!(exact.push(&odd).unwrap(), None);
    assert!(exact.push(&odd).unwrap().is_some());
}

#[test]
fn an_oversized_entry_still_goes_alone() {
    let mut enc = Encoder::new(1, 10);
    assert_eq!(enc.push(&conn(6, 0, 1, 1, 9)).unwrap(), None);
    let first = enc.push(&conn(6, 0, 1, 2, 9)).unwrap().unwrap();
    assert_eq!(first.len(), 44);
    assert_eq!(enc.flush().unwrap().len(), 44);
}

#[test]
fn unencodable_entries_are_refused() {
    let mut enc = Encoder::new(1, Encoder::DEFAULT_MAXLEN);
    let mixed = SyncConn {
        daddr: IpAddr::V6(Ipv6Addr::LOCALHOST),
        ..conn(6, 0, 1, 1, 9)
    };
    assert_eq!(enc.push(&mixed), Err(Unencodable::MixedFamilies));
    let long = SyncConn {
        pe_name: Some("x".repeat(17)),
        ..conn(6, 0, 1, 1, 9)
    };
    assert_eq!(enc.push(&long), Err(Unencodable::PeNameLength));
    let empty = SyncConn {
        pe_data: Some(vec![]),
        ..conn(6, 0, 1, 1, 9)
    };
    assert_eq!(enc.push(&empty), Err(Unencodable::PeDataLength));
    assert_eq!(enc.pending(), 0);
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn random_conn(r: &mut Rng) -> SyncConn {
    let ipv6 = r.below(3) == 0;
    let addr = |r: &mut Rng| -> IpAddr {
        if ipv6 {
            IpAddr::V6(Ipv6Addr::from_bits(
                ((r.next() as u128) << 64) | r.next() as u128,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from_bits(r.next() as u32))
        }
    };
    let template = r.below(4) == 0;
    let (proto, state) = match (template, r.below(2)) {
        (true, _) => ([0u8, 6, 17][r.below(3) as usize], r.below(2) as u16),
        (false, 0) => (6, r.below(11) as u16),
        (false, _) => (17, 0),
    };
    let mut flags = r.next() as u32 & !flags::TEMPLATE;
    if template {
        flags |= flags::TEMPLATE;
    }
    let pe = r.below(5) == 0;
    SyncConn {
        proto,
        flags,
        state,
        cport: r.next() as u16,
        vport: r.next() as u16,
        dport: r.next() as u16,
        fwmark: r.next() as u32,
        timeout: r.next() as u32,
        caddr: addr(r),
        vaddr: addr(r),
        daddr: addr(r),
        seq: (r.below(3) == 0).then(|| std::array::from_fn(|_| r.next() as u8)),
        pe_data: pe.then(|| {
            let n = 1 + r.below(255) as usize;
            r.bytes(n)
        }),
        pe_name: pe.then(|| {
            let n = 1 + r.below(16) as usize;
            (0..n).map(|_| (b'a' + r.below(26) as u8) as char).collect()
        }),
    }
}

#[test]
fn random_entries_survive_a_round_trip() {
    let mut r = Rng(0x5EED_1234_ABCD_0001);
    for maxlen in [Encoder::DEFAULT_MAXLEN, 600, 9000] {
        let conns: Vec<SyncConn> = (0..500).map(|_| random_conn(&mut r)).collect();
        let datagrams = encode_all(42, maxlen, &conns);
        let mut back = Vec::new();
        for d in &datagrams {
            assert!(d.len() <= maxlen, "{} > {maxlen}", d.len());
            let dec = decode(d, 42).unwrap();
            assert_eq!((dec.dropped.len(), dec.stopped), (0, None));
            back.extend(dec.conns);
        }
        assert_eq!(back, conns);
    }
}

// ---------------------------------------------------------------------------------------
// 5. Random mutations never panic.

#[test]
fn mutated_datagrams_never_panic() {
    let mut r = Rng(0xF022_0000_0000_0007);
    let mut seeds = vec![EXAMPLE.to_vec()];
    seeds.extend(udp_payloads(V1_CAPTURE));
    seeds.extend(udp_payloads(V0_CAPTURE));
    let rich: Vec<SyncConn> = (0..30).map(|_| random_conn(&mut r)).collect();
    seeds.extend(encode_all(5, Encoder::DEFAULT_MAXLEN, &rich));
    let mut outcomes = [0usize; 3];
    for _ in 0..100_000 {
        let mut m = seeds[r.below(seeds.len() as u64) as usize].clone();
        for _ in 0..1 + r.below(4) {
            match r.below(6) {
                0 | 1 if !m.is_empty() => {
                    let i = r.below(m.len() as u64) as usize;
                    m[i] = r.next() as u8;
                }
                2 if !m.is_empty() => {
                    let i = r.below(m.len() as u64) as usize;
                    m[i] ^= 1 << r.below(8);
                }
                3 => {
                    let n = r.below(m.len() as u64 + 1) as usize;
                    m.truncate(n);
                }
                4 => {
                    let n = r.below(80) as usize;
                    m.extend(r.bytes(n));
                }
                _ if m.len() > 8 => {
                    // Small values in the count, entry length or option fields.
                    let i = r.below(m.len() as u64) as usize;
                    m[i] = [0, 1, 2, 3, 0x40, 0x41, 0xFF][r.below(7) as usize];
                }
                _ => {}
            }
        }
        // Mostly keep the size field right, so the entries get read.
        if m.len() >= 4 && r.below(4) != 0 {
            set_size(&mut m);
        }
        match decode(&m, [0, 5, 7][r.below(3) as usize]) {
            Err(_) => outcomes[0] += 1,
            Ok(d) if d.stopped.is_some() => outcomes[1] += 1,
            Ok(d) => {
                outcomes[2] += 1;
                // Whatever decodes cleanly and is encodable goes through the encoder.
                let mut enc = Encoder::new(d.syncid, MAX_DATAGRAM);
                for c in &d.conns {
                    let _ = enc.push(c);
                }
            }
        }
    }
    // Every path was taken.
    assert!(outcomes.iter().all(|&n| n > 1000), "{outcomes:?}");
}
