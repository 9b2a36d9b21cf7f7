//! What the daemon reads from the system: interfaces (sysfs), the director's own addresses,
//! memlock, signals.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::{Context as _, anyhow, bail};

use crate::neigh::parse_mac;

/// An interface as the daemon found it.
#[derive(Clone, Debug)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub rx_queues: u32,
}

/// Looks `name` up in sysfs.
pub fn iface(name: &str) -> anyhow::Result<Iface> {
    if name.is_empty() || name.contains('/') || name.len() > 15 {
        bail!("bad interface name {name:?}");
    }
    let dir = format!("/sys/class/net/{name}");
    if !std::path::Path::new(&dir).exists() {
        bail!("no such interface: {name}");
    }
    let read = |f: &str| {
        std::fs::read_to_string(format!("{dir}/{f}")).with_context(|| format!("reading {dir}/{f}"))
    };
    let ifindex = read("ifindex")?.trim().parse().context("ifindex")?;
    let mac =
        parse_mac(&read("address")?).ok_or_else(|| anyhow!("{name} has no Ethernet address"))?;
    let rx_queues = std::fs::read_dir(format!("{dir}/queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1);
    Ok(Iface {
        name: name.to_string(),
        ifindex,
        mac,
        rx_queues,
    })
}

/// The addresses of interface `name` (IPv4 first, in the kernel's order: the primary one
/// first).
pub fn iface_addrs(name: &str) -> Vec<IpAddr> {
    iface_prefixes(name).into_iter().map(|(a, _)| a).collect()
}

/// The address a director's peers know it by on interface `name`, of the family of `v6`:
/// the first address that is neither link-local nor a single-host prefix (a VIP is added
/// as a /32 or /128), else the first that is not link-local, else any.
pub fn iface_source(name: &str, v6: bool) -> Option<IpAddr> {
    iface_prefixes(name)
        .into_iter()
        .filter(|(a, _)| a.is_ipv6() == v6)
        .min_by_key(|(a, len)| {
            let link_local = matches!(a, IpAddr::V6(a) if a.is_unicast_link_local());
            let host = *len == if a.is_ipv6() { 128 } else { 32 };
            (link_local, host)
        })
        .map(|(a, _)| a)
}

/// The addresses of interface `name` with their prefix lengths (IPv4 first, in the
/// kernel's order).
pub fn iface_prefixes(name: &str) -> Vec<(IpAddr, u8)> {
    let mut v4: Vec<(IpAddr, u8)> = Vec::new();
    let mut v6: Vec<(IpAddr, u8)> = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // Safety: getifaddrs allocates a list we walk read-only and free with freeifaddrs; the
    // names are NUL-terminated C strings.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return v4;
        }
        let mut p = ifap;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            let m = (*p).ifa_netmask;
            let this = std::ffi::CStr::from_ptr((*p).ifa_name).to_bytes() == name.as_bytes();
            if this && !a.is_null() && (*a).sa_family as i32 == libc::AF_INET {
                let sin = a as *const libc::sockaddr_in;
                let len = if m.is_null() {
                    32
                } else {
                    (*(m as *const libc::sockaddr_in))
                        .sin_addr
                        .s_addr
                        .count_ones() as u8
                };
                v4.push((
                    Ipv4Addr::from(u32::from_be((*sin).sin_addr.s_addr)).into(),
                    len,
                ));
            } else if this && !a.is_null() && (*a).sa_family as i32 == libc::AF_INET6 {
                let sin6 = a as *const libc::sockaddr_in6;
                let len = if m.is_null() {
                    128
                } else {
                    let m6 = &(*(m as *const libc::sockaddr_in6)).sin6_addr.s6_addr;
                    m6.iter().map(|b| b.count_ones()).sum::<u32>() as u8
                };
                v6.push((Ipv6Addr::from((*sin6).sin6_addr.s6_addr).into(), len));
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    v4.extend(v6);
    v4
}

/// The MTU of interface `name` (sysfs).
pub fn iface_mtu(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The director's own addresses (every interface, both families).
pub fn local_addrs() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // Safety: getifaddrs allocates a list we walk read-only and free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut p = ifap;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            if !a.is_null() && (*a).sa_family as i32 == libc::AF_INET {
                let sin = a as *const libc::sockaddr_in;
                out.push(Ipv4Addr::from(u32::from_be((*sin).sin_addr.s_addr)).into());
            } else if !a.is_null() && (*a).sa_family as i32 == libc::AF_INET6 {
                let sin6 = a as *const libc::sockaddr_in6;
                out.push(Ipv6Addr::from((*sin6).sin6_addr.s6_addr).into());
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}

/// Tries to lift RLIMIT_MEMLOCK (older kernels charge BPF maps and UMEMs to it). Failing is
/// not fatal: as root with CAP_IPC_LOCK, or on kernels with memcg accounting, it is not needed.
pub fn raise_memlock() {
    let r = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // Safety: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); continuing",
            std::io::Error::last_os_error()
        );
    }
}

/// Raises the soft limit on open files to the hard one: health checks may hold hundreds of
/// sockets and script pipes at once.
pub fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: getrlimit writes the struct we pass, setrlimit reads it.
    let ok = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0
        }
    };
    if !ok {
        log::debug!(
            "could not raise RLIMIT_NOFILE ({}); continuing",
            std::io::Error::last_os_error()
        );
    }
}

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
/// The eventfd the handler writes to wake the control loop (-1: none).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGHUP {
        RELOAD.store(true, Ordering::SeqCst);
    } else {
        STOP.store(true, Ordering::SeqCst);
    }
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // Safety: write(2) is async-signal-safe; 8 bytes from a valid u64 to an eventfd.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// A non-blocking eventfd that becomes readable when a signal arrives: the control loop polls
/// it with its other sources.
pub struct SignalFd(OwnedFd);

impl SignalFd {
    /// Creates the eventfd and installs SIGINT/SIGTERM handlers that set a flag (read with
    /// [`stop_requested`]) and a SIGHUP one (read with [`reload_requested`]); each also wakes
    /// the eventfd.
    pub fn install() -> std::io::Result<SignalFd> {
        // Safety: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        WAKE_FD.store(fd, Ordering::SeqCst);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // Safety: the handler only stores to atomics and writes to an eventfd, which are
            // async-signal-safe.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        // Safety: a new descriptor that nothing else owns.
        Ok(SignalFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Empties the eventfd (the flags say what arrived).
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // Safety: reading 8 bytes into a valid u64 from a non-blocking eventfd we own.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Drop for SignalFd {
    fn drop(&mut self) {
        WAKE_FD.store(-1, Ordering::SeqCst);
    }
}

/// SIGINT or SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// True once per SIGHUP received since the last call.
pub fn reload_requested() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}

/// The capabilities xlvsd needs, by number and name: XDP programs and maps (CAP_BPF,
/// CAP_NET_ADMIN to attach them), AF_XDP and bound sockets (CAP_NET_RAW).
pub const NEEDED_CAPS: [(u32, &str); 3] =
    [(12, "CAP_NET_ADMIN"), (13, "CAP_NET_RAW"), (39, "CAP_BPF")];

/// Those of [`NEEDED_CAPS`] this process does not have in its effective set (CAP_SYS_ADMIN
/// stands in for CAP_BPF, as on kernels before 5.8).
pub fn missing_caps() -> Vec<&'static str> {
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |n: u32| eff & (1u64 << n) != 0;
    NEEDED_CAPS
        .iter()
        .filter(|(n, _)| !(has(*n) || (*n == 39 && has(21))))
        .map(|(_, name)| *name)
        .collect()
}

/// Tells systemd (`Type=notify`) `state` ("READY=1", "RELOADING=1", "STOPPING=1"), if it
/// runs us: a datagram to `$NOTIFY_SOCKET` (a path, or `@` for an abstract socket).
pub fn sd_notify(state: &str) {
    use std::os::linux::net::SocketAddrExt as _;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let r = if let Some(name) = bytes.strip_prefix(b"@") {
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = r {
        log::warn!("sd_notify {state}: {e}");
    }
}

/// True if running as root.
pub fn is_root() -> bool {
    // Safety: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The magic number of the filesystem `path` is on (`statfs`).
pub fn fs_magic(path: &std::path::Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // Safety: statfs is plain data, for which all zeroes is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // Safety: a valid C string and an out-parameter of the right type.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_type as i64)
}

/// The user id of the process at the other end of a Unix stream socket (SO_PEERCRED).
pub fn peer_uid(fd: std::os::fd::RawFd) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cred.uid)
}

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The id of group `name` (from the system's group database).
pub fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid C string; getgrnam returns a pointer into static storage (or
    // null), read at once, before any other call could overwrite it.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    // SAFETY: non-null, it points at a valid `group`.
    (!g.is_null()).then(|| unsafe { (*g).gr_gid })
}

/// Makes the control socket `path` reachable by its owner only (0600), or also by group
/// `gid` (0660, the socket's group set to it).
pub fn control_socket_access(path: &std::path::Path, gid: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(g) = gid {
        std::os::unix::fs::chown(path, None, Some(g))?;
    }
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
