//! The IPv6 neighbour table over rtnetlink: one `RTM_GETNEIGH` dump (`ip -6 neigh` does the
//! same). IPv4's is read from /proc/net/arp; IPv6's is not in /proc.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::neigh::Neighbours;

const NLMSG_HDR: usize = 16;
const NDMSG: usize = 12;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT: a usable MAC.
const NUD_VALID: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x80;

/// Dumps the kernel's IPv6 neighbours with a usable MAC: (address, device) → MAC.
pub fn neighbours6() -> io::Result<Neighbours> {
    // Safety: plain syscall; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: a new descriptor that nothing else owns; closed when `fd` drops.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = [0u8; NLMSG_HDR + NDMSG];
    let len = req.len() as u32;
    req[0..4].copy_from_slice(&len.to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[NLMSG_HDR] = libc::AF_INET6 as u8;
    // Safety: `req` is a valid buffer of its length; the kernel is the default destination.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Neighbours::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Safety: `buf` is a valid writable buffer of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        match parse(&buf[..n as usize], &mut out, ifname) {
            Parsed::More => continue,
            Parsed::Done => return Ok(out),
            Parsed::Error(e) => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

fn ifname(ifindex: u32) -> Option<String> {
    let mut name = [0u8; libc::IF_NAMESIZE];
    // Safety: `name` has room for IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    let len = name.iter().position(|&b| b == 0)?;
    String::from_utf8(name[..len].to_vec()).ok()
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    More,
    Done,
    Error(i32),
}

/// Adds the neighbours in one datagram of the dump to `out`.
fn parse(mut b: &[u8], out: &mut Neighbours, ifname: impl Fn(u32) -> Option<String>) -> Parsed {
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    while b.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < NLMSG_HDR || len > b.len() {
            return Parsed::Error(libc::EBADMSG);
        }
        let msg = &b[..len];
        match u16_at(msg, 4) {
            NLMSG_DONE => return Parsed::Done,
            NLMSG_ERROR => {
                let e = msg
                    .get(NLMSG_HDR..NLMSG_HDR + 4)
                    .map_or(libc::EBADMSG, |e| {
                        -i32::from_ne_bytes([e[0], e[1], e[2], e[3]])
                    });
                return Parsed::Error(e);
            }
            RTM_NEWNEIGH if len >= NLMSG_HDR + NDMSG => {
                let nd = &msg[NLMSG_HDR..];
                let ifindex = i32::from_ne_bytes([nd[4], nd[5], nd[6], nd[7]]) as u32;
                let state = u16_at(nd, 8);
                let (mut dst, mut mac) = (None, None);
                let mut attrs = &msg[NLMSG_HDR + NDMSG..];
                while attrs.len() >= 4 {
                    let alen = u16_at(attrs, 0) as usize;
                    if alen < 4 || alen > attrs.len() {
                        break;
                    }
                    let data = &attrs[4..alen];
                    match u16_at(attrs, 2) {
                        NDA_DST if data.len() == 16 => {
                            dst = <[u8; 16]>::try_from(data).ok().map(Ipv6Addr::from)
                        }
                        NDA_LLADDR if data.len() == 6 => mac = <[u8; 6]>::try_from(data).ok(),
                        _ => {}
                    }
                    attrs = &attrs[alen.next_multiple_of(4).min(attrs.len())..];
                }
                if state & NUD_VALID != 0
                    && let (Some(dst), Some(mac), Some(dev)) = (dst, mac, ifname(ifindex))
                    && mac != [0; 6]
                {
                    out.insert((IpAddr::V6(dst), dev), mac);
                }
            }
            _ => {}
        }
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    Parsed::More
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neigh_msg(state: u16, dst: Ipv6Addr, mac: [u8; 6]) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDR + NDMSG];
        m[4..6].copy_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
        m[NLMSG_HDR] = libc::AF_INET6 as u8;
        m[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&7i32.to_ne_bytes());
        m[NLMSG_HDR + 8..NLMSG_HDR + 10].copy_from_slice(&state.to_ne_bytes());
        m.extend_from_slice(&20u16.to_ne_bytes());
        m.extend_from_slice(&NDA_DST.to_ne_bytes());
        m.extend_from_slice(&dst.octets());
        m.extend_from_slice(&10u16.to_ne_bytes());
        m.extend_from_slice(&NDA_LLADDR.to_ne_bytes());
        m.extend_from_slice(&mac);
        m.extend_from_slice(&[0, 0]);
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    #[test]
    fn parses_valid_entries_and_skips_incomplete_ones() {
        let mut b = neigh_msg(0x02, "fd00::11".parse().unwrap(), [2, 0, 0, 0, 0, 0x11]);
        b.extend(neigh_msg(
            0x01,
            "fd00::12".parse().unwrap(),
            [2, 0, 0, 0, 0, 0x12],
        ));
        let mut out = Neighbours::new();
        let name = |i: u32| (i == 7).then(|| "int0".to_string());
        assert_eq!(parse(&b, &mut out, name), Parsed::More);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[&("fd00::11".parse::<IpAddr>().unwrap(), "int0".to_string())],
            [2, 0, 0, 0, 0, 0x11]
        );
        let mut done = vec![0u8; NLMSG_HDR];
        done[0..4].copy_from_slice(&(NLMSG_HDR as u32).to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert_eq!(parse(&done, &mut out, name), Parsed::Done);
        // Truncated input is an error, not a panic.
        assert_eq!(
            parse(&b[..20], &mut out, name),
            Parsed::Error(libc::EBADMSG)
        );
    }

    #[test]
    fn dumps_this_hosts_table() {
        // Whatever the host has; the point is that the kernel accepts the request.
        assert!(neighbours6().is_ok());
    }
}
