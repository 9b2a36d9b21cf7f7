//! rtnetlink: the IPv6 neighbour table (one `RTM_GETNEIGH` dump, as `ip -6 neigh` does; IPv4's
//! is read from /proc/net/arp, IPv6's is not in /proc), and [`Events`], the kernel's word that
//! its neighbours, routes or addresses changed (what `ip monitor` listens to).

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

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_DELNEIGH: u16 = 29;
/// rtnetlink's multicast groups, as the bitmask of `sockaddr_nl.nl_groups`.
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_NEIGH: u32 = 0x4;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;

/// What an rtnetlink notification said changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Neighbours or routes: next hops must be looked up again.
    pub neighbours: bool,
    /// The director's own addresses.
    pub addresses: bool,
    /// A link (carrier, a bond's member).
    pub links: bool,
}

/// A non-blocking rtnetlink socket subscribed to neighbour, route and address changes of the
/// network namespace it was opened in.
pub struct Events(OwnedFd);

impl Events {
    /// Subscribes.
    pub fn subscribe() -> io::Result<Events> {
        let fd = socket(libc::NETLINK_ROUTE, libc::SOCK_NONBLOCK)?;
        // Safety: an all-zero sockaddr_nl is valid; the fields are set below.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = RTMGRP_LINK
            | RTMGRP_NEIGH
            | RTMGRP_IPV4_IFADDR
            | RTMGRP_IPV4_ROUTE
            | RTMGRP_IPV6_IFADDR
            | RTMGRP_IPV6_ROUTE;
        // Safety: `sa` is a valid sockaddr_nl of the size passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Events(fd))
    }

    /// Reads every pending notification and says what changed. A lost notification (the
    /// socket's buffer overflowed) counts as a change of everything.
    pub fn drain(&self) -> Changes {
        let mut c = Changes::default();
        let mut buf = [0u8; 16 * 1024];
        // Bounded: the kernel cannot queue more than the socket buffer meanwhile.
        for _ in 0..1024 {
            // Safety: `buf` is a valid writable buffer of its length.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => continue,
                    _ => {
                        // ENOBUFS: notifications were lost.
                        c.neighbours = true;
                        c.addresses = true;
                        c.links = true;
                        continue;
                    }
                }
            }
            classify(&buf[..n as usize], &mut c);
        }
        c
    }
}

impl AsRawFd for Events {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// Notes what the messages of one notification datagram are about.
fn classify(mut b: &[u8], c: &mut Changes) {
    while b.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < NLMSG_HDR || len > b.len() {
            return;
        }
        match u16::from_ne_bytes([b[4], b[5]]) {
            RTM_NEWNEIGH | RTM_DELNEIGH | RTM_NEWROUTE | RTM_DELROUTE => c.neighbours = true,
            RTM_NEWADDR | RTM_DELADDR => c.addresses = true,
            RTM_NEWLINK | RTM_DELLINK => c.links = true,
            _ => {}
        }
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
}

/// A netlink socket of family `protocol` (`NETLINK_ROUTE`, `NETLINK_GENERIC`), close-on-exec,
/// with socket type flags `flags` (`SOCK_NONBLOCK` or 0).
pub(crate) fn socket(protocol: libc::c_int, flags: libc::c_int) -> io::Result<OwnedFd> {
    // Safety: plain syscall; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | flags,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: a new descriptor that nothing else owns; closed when it drops.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Dumps the kernel's IPv6 neighbours with a usable MAC: (address, device) → MAC.
pub fn neighbours6() -> io::Result<Neighbours> {
    let fd = socket(libc::NETLINK_ROUTE, 0)?;
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
    fn notifications_say_what_changed() {
        let msg = |t: u16| {
            let mut m = vec![0u8; NLMSG_HDR + 4];
            let len = m.len() as u32;
            m[0..4].copy_from_slice(&len.to_ne_bytes());
            m[4..6].copy_from_slice(&t.to_ne_bytes());
            m
        };
        let mut c = Changes::default();
        classify(&msg(RTM_NEWADDR), &mut c);
        assert_eq!(
            c,
            Changes {
                neighbours: false,
                addresses: true,
                links: false
            }
        );
        let mut c = Changes::default();
        classify(&msg(RTM_NEWLINK), &mut c);
        assert!(c.links && !c.neighbours && !c.addresses);
        let mut c = Changes::default();
        let mut two = msg(RTM_DELROUTE);
        two.extend(msg(99));
        classify(&two, &mut c);
        assert!(c.neighbours && !c.addresses);
        // Garbage is ignored, not a panic.
        classify(&[0xff; 7], &mut c);
        classify(&[0xff; 40], &mut c);
    }

    #[test]
    fn the_kernel_takes_the_subscription() {
        let e = Events::subscribe().unwrap();
        let _ = e.drain();
    }

    #[test]
    fn dumps_this_hosts_table() {
        // Whatever the host has; the point is that the kernel accepts the request.
        assert!(neighbours6().is_ok());
    }
}
