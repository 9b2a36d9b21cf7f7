//! What XDP an interface's driver supports, as the kernel reports it (`netdev` generic
//! netlink family, `NETDEV_CMD_DEV_GET`, Linux ≥ 6.3; what `ynl --family netdev --do dev-get`
//! prints). xlvsd asks before it turns the XDP fast path on: a frame the program redirects
//! out of an interface without `ndo_xdp_xmit` is dropped, and an offloaded connection would
//! lose every frame. A veth advertises it only while its peer has NAPI on (GRO, or an XDP
//! program), which is exactly when redirects to it work.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// `NETDEV_XDP_ACT_NDO_XMIT`: frames can be redirected out of the device.
pub const NDO_XMIT: u64 = 1 << 2;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const HDR: usize = 16 + 4;

/// A generic netlink request: `nlmsghdr`, `genlmsghdr` (command, version 1), then one
/// attribute.
fn request(family: u16, cmd: u8, seq: u32, attr_type: u16, attr: &[u8]) -> Vec<u8> {
    let alen = 4 + attr.len();
    let len = HDR + alen.next_multiple_of(4);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&family.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[cmd, 1, 0, 0]);
    m.extend_from_slice(&(alen as u16).to_ne_bytes());
    m.extend_from_slice(&attr_type.to_ne_bytes());
    m.extend_from_slice(attr);
    m.resize(len, 0);
    m
}

/// The attribute `want` of the first message in a reply; `Err` with the errno of an
/// `NLMSG_ERROR`, `Ok(None)` if the attribute is not there.
fn reply_attr(b: &[u8], want: u16) -> io::Result<Option<&[u8]>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "short netlink reply");
    let len = u32::from_ne_bytes(b.get(0..4).ok_or_else(bad)?.try_into().unwrap()) as usize;
    let typ = u16::from_ne_bytes(b.get(4..6).ok_or_else(bad)?.try_into().unwrap());
    let m = b.get(..len.min(b.len())).ok_or_else(bad)?;
    if typ == NLMSG_ERROR {
        let e = i32::from_ne_bytes(m.get(16..20).ok_or_else(bad)?.try_into().unwrap());
        return Err(io::Error::from_raw_os_error(-e));
    }
    let mut a = m.get(HDR..).ok_or_else(bad)?;
    while a.len() >= 4 {
        let alen = u16::from_ne_bytes([a[0], a[1]]) as usize;
        let atype = u16::from_ne_bytes([a[2], a[3]]) & 0x3fff;
        if alen < 4 || alen > a.len() {
            return Err(bad());
        }
        if atype == want {
            return Ok(Some(&a[4..alen]));
        }
        a = &a[alen.next_multiple_of(4).min(a.len())..];
    }
    Ok(None)
}

/// One request and its reply's attribute `want`.
fn ask(fd: &OwnedFd, req: &[u8], want: u16) -> io::Result<Option<Vec<u8>>> {
    // Safety: `req` is a valid buffer of its length; the kernel is the default destination.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 8192];
    // Safety: `buf` is a valid writable buffer of its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(reply_attr(&buf[..n as usize], want)?.map(<[u8]>::to_vec))
}

/// Whether interface `ifindex` takes XDP redirects (`NETDEV_XDP_ACT_NDO_XMIT`), as the XDP
/// fast path needs of every port it sends out of. `Ok(None)`: the kernel cannot say.
pub fn takes_redirects(ifindex: u32) -> io::Result<Option<bool>> {
    Ok(xdp_features(ifindex)?.map(|f| f & NDO_XMIT != 0))
}

/// The `NETDEV_XDP_ACT_*` bits interface `ifindex` advertises. `Ok(None)`: the kernel has no
/// `netdev` family (before 6.3) and cannot say.
pub fn xdp_features(ifindex: u32) -> io::Result<Option<u64>> {
    let fd = crate::netlink::socket(libc::NETLINK_GENERIC, 0)?;
    let family = match ask(
        &fd,
        &request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            1,
            CTRL_ATTR_FAMILY_NAME,
            b"netdev\0",
        ),
        CTRL_ATTR_FAMILY_ID,
    ) {
        Ok(Some(id)) if id.len() >= 2 => u16::from_ne_bytes([id[0], id[1]]),
        Ok(_) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let req = request(
        family,
        NETDEV_CMD_DEV_GET,
        2,
        NETDEV_A_DEV_IFINDEX,
        &ifindex.to_ne_bytes(),
    );
    match ask(&fd, &req, NETDEV_A_DEV_XDP_FEATURES)? {
        Some(v) if v.len() >= 8 => Ok(Some(u64::from_ne_bytes(v[..8].try_into().unwrap()))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request `ynl` sends for `dev-get` of ifindex 3, and the reply a veth whose peer
    /// has GRO on gives (captured on this machine's kernel: BASIC, REDIRECT, NDO_XMIT, RX_SG,
    /// NDO_XMIT_SG).
    #[test]
    fn builds_the_request_and_reads_the_features() {
        let r = request(
            20,
            NETDEV_CMD_DEV_GET,
            2,
            NETDEV_A_DEV_IFINDEX,
            &3u32.to_ne_bytes(),
        );
        assert_eq!(r.len(), 28);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 28);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 20);
        assert_eq!(&r[16..20], &[1, 1, 0, 0]);
        assert_eq!(u16::from_ne_bytes([r[20], r[21]]), 8);
        assert_eq!(u16::from_ne_bytes([r[22], r[23]]), NETDEV_A_DEV_IFINDEX);
        let name = request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            1,
            CTRL_ATTR_FAMILY_NAME,
            b"netdev\0",
        );
        assert_eq!(name.len(), 20 + 12, "7 bytes of name padded to 8");
        let mut reply = vec![0u8; 20];
        let attrs: [(u16, &[u8]); 3] = [
            (1, &3u32.to_ne_bytes()),
            (3, &0x67u64.to_ne_bytes()),
            (5, &7u64.to_ne_bytes()),
        ];
        for (t, v) in attrs {
            reply.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            reply.extend_from_slice(&t.to_ne_bytes());
            reply.extend_from_slice(v);
        }
        let len = reply.len() as u32;
        reply[0..4].copy_from_slice(&len.to_ne_bytes());
        reply[4..6].copy_from_slice(&20u16.to_ne_bytes());
        let f = reply_attr(&reply, NETDEV_A_DEV_XDP_FEATURES)
            .unwrap()
            .unwrap();
        assert_eq!(
            u64::from_ne_bytes(f.try_into().unwrap()) & NDO_XMIT,
            NDO_XMIT
        );
        assert_eq!(reply_attr(&reply, 9).unwrap(), None);
        // An error reply: ENODEV.
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::ENODEV).to_ne_bytes());
        assert_eq!(
            reply_attr(&err, 3).unwrap_err().raw_os_error(),
            Some(libc::ENODEV)
        );
        // Truncated and malformed replies are errors, not panics.
        assert!(reply_attr(&reply[..3], 3).is_err());
        let mut bad = reply.clone();
        bad[20..22].copy_from_slice(&200u16.to_ne_bytes());
        assert!(reply_attr(&bad, 3).is_err());
    }

    /// The real kernel: a veth advertises NDO_XMIT only while its peer has GRO on.
    #[test]
    fn a_veth_takes_redirects_only_with_napi_on_its_peer() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let ns = format!("xlvs-xdpf-{}", std::process::id());
        let sh = |cmd: &str| {
            std::process::Command::new("sh")
                .args(["-c", cmd])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        assert!(sh(&format!(
            "ip netns add {ns} && ip -n {ns} link add va type veth peer name vb && ip -n {ns} link set va up && ip -n {ns} link set vb up"
        )));
        let features = |gro: &str| -> Option<u64> {
            sh(&format!(
                "ip netns exec {ns} ethtool -K vb gro {gro} >/dev/null"
            ));
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "cat", "/sys/class/net/va/ifindex"])
                .output()
                .ok()?;
            let idx: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
            // The query runs in the namespace: a helper thread entering it.
            let ns2 = ns.clone();
            std::thread::spawn(move || {
                let f = std::fs::File::open(format!("/run/netns/{ns2}")).ok()?;
                // Safety: setns on a thread of our own, with a valid namespace descriptor.
                if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) }
                    != 0
                {
                    return None;
                }
                xdp_features(idx).ok().flatten()
            })
            .join()
            .ok()
            .flatten()
        };
        let off = features("off");
        let on = features("on");
        sh(&format!("ip netns del {ns}"));
        let (off, on) = (
            off.expect("features, peer GRO off"),
            on.expect("features, peer GRO on"),
        );
        assert_eq!(off & NDO_XMIT, 0, "{off:#x}");
        assert_eq!(on & NDO_XMIT, NDO_XMIT, "{on:#x}");
    }
}
