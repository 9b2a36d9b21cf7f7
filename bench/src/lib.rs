//! Shared fixtures for the xlvs benchmarks: a NAT or DR snapshot and frames of an established
//! connection, built once and copied into a scratch buffer per iteration (the core rewrites
//! frames in place).

pub mod fwd;
pub mod generator;
pub mod loadgen;
pub mod plot;
pub mod rig;
pub mod sink;
pub mod xsk;

use std::net::Ipv4Addr;
use std::sync::Arc;

use xlvs_dataplane::core::conn::Tables;
use xlvs_dataplane::core::service::{Fwd, Proto, Snapshot};
use xlvs_dataplane::core::{Core, Instant, Verdict};
use xlvs_dataplane::testing::*;
use xlvs_dataplane::wire::tcp::{ACK, SYN};

pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub const RIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 11);

/// Client address number `i` (spreads flows over a /8).
pub fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0b00_0000 | (i & 0x00ff_ffff))
}

/// A core and snapshot with one service of two realservers, counted as by xlvsd with one
/// worker thread (which changes the realservers' connection counts at once).
pub fn setup(fwd: Fwd, max_conns: usize) -> (Core, Snapshot) {
    setup_for(fwd, max_conns, 1)
}

/// [`setup`] for `workers` workers: each its own shard of the realservers' counters (and the
/// control thread one), as the daemon sizes them before any realserver exists.
pub fn setup_for(fwd: Fwd, max_conns: usize, workers: usize) -> (Core, Snapshot) {
    xlvs_dataplane::core::stats::set_shards(workers + 1);
    let snap = snapshot(
        Proto::Tcp,
        (VIP, 80),
        &[(RIP, 8080), (Ipv4Addr::new(10, 10, 0, 12), 8080)],
        fwd,
        "wlc",
    );
    let tables = Arc::new(Tables::new(max_conns));
    // As xlvsd does: back the table with huge pages where the kernel allows.
    xlvs_dataplane::afxdp::advise_huge_pages(&tables.regions());
    (Core::new(tables), snap)
}

/// Client `i`'s source port.
pub fn client_port(i: u32) -> u16 {
    10_000 + (i % 50_000) as u16
}

/// A 64-byte client → VIP segment.
pub fn client_frame(i: u32, flags: u8) -> Vec<u8> {
    tcp_frame(
        CLIENT_MAC,
        EXT_MAC,
        (client(i), client_port(i)),
        (VIP, 80),
        flags,
        64,
        &[],
    )
}

/// Opens connection `i` and returns (client → server frame, server → client frame) templates.
pub fn established(core: &mut Core, snap: &Snapshot, i: u32) -> (Vec<u8>, Vec<u8>) {
    let mut syn = client_frame(i, SYN);
    let v = core.process(Instant(1), snap, &mut syn, 0);
    assert!(matches!(v, Verdict::Tx(_)), "{v:?}");
    let rs = Ipv4Addr::new(syn[30], syn[31], syn[32], syn[33]);
    let rport = u16::from_be_bytes([syn[36], syn[37]]);
    let cport = client_port(i);
    let reply = tcp_frame(
        rs_mac(0),
        INT_MAC,
        (rs, rport),
        (client(i), cport),
        ACK,
        64,
        &[],
    );
    (client_frame(i, ACK), reply)
}

/// Makes a `client_frame` (untagged, 20-byte IP header) flow `i`'s: its source address and
/// port (the checksums are left stale: the core updates them incrementally and never checks).
pub fn set_client(frame: &mut [u8], i: u32) {
    frame[26..30].copy_from_slice(&client(i).octets());
    frame[34..36].copy_from_slice(&client_port(i).to_be_bytes());
}

/// A 64-byte LVS-NAT reply from RIP:8080 to client 0 ([`set_reply`] makes it another flow's).
pub fn reply_frame() -> Vec<u8> {
    tcp_frame(
        rs_mac(0),
        INT_MAC,
        (RIP, 8080),
        (client(0), client_port(0)),
        ACK,
        64,
        &[],
    )
}

/// Makes a [`reply_frame`] flow `i`'s, from the realserver whose address ends in `rs`.
pub fn set_reply(frame: &mut [u8], i: u32, rs: u8) {
    frame[29] = rs;
    frame[30..34].copy_from_slice(&client(i).octets());
    frame[36..38].copy_from_slice(&client_port(i).to_be_bytes());
}

/// Opens connections `0..flows` (a SYN each: the SYN template with each flow's source, no
/// frame built per flow, so 10 M opens are quick). Returns how many were forwarded and each
/// flow's realserver (the last octet of its address, for [`set_reply`]).
pub fn open_flows(core: &mut Core, snap: &Snapshot, flows: u32) -> (usize, Vec<u8>) {
    open_flows_in(core, snap, 0..flows)
}

/// [`open_flows`] for the clients numbered `clients`: how many opened, and the realserver
/// each chose (indexed from the range's start).
pub fn open_flows_in(
    core: &mut Core,
    snap: &Snapshot,
    clients: std::ops::Range<u32>,
) -> (usize, Vec<u8>) {
    let mut rs = vec![0u8; clients.len()];
    let mut opened = 0;
    let syn = client_frame(0, SYN);
    let mut f = syn.clone();
    for (k, i) in clients.enumerate() {
        f.copy_from_slice(&syn);
        set_client(&mut f, i);
        opened += matches!(core.process(Instant(1), snap, &mut f, 0), Verdict::Tx(_)) as usize;
        rs[k] = f[33];
    }
    (opened, rs)
}

/// The stride the benchmarks walk their flows with (a prime): consecutive packets belong to
/// flows far apart in the table, as real traffic's do, and a walk of `n` steps over `n`
/// flows visits each once (for `n` not a multiple of it).
pub const STRIDE: usize = 7919;

/// The flow after `i` of `n` in that walk: `(i + STRIDE) mod n`, without a division.
#[inline(always)]
pub fn scatter_next(i: usize, n: usize) -> usize {
    let mut j = i + STRIDE;
    while j >= n {
        j -= n;
    }
    j
}

/// The next command-line argument parsed as a `T`, or `default` (the examples' arguments).
pub fn arg<T: std::str::FromStr>(args: &mut impl Iterator<Item = String>, default: T) -> T {
    args.next().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Frames a batched benchmark processes at a time.
pub const BATCH: usize = 32;

/// Forwards a batch the way a worker does: the table loads of every frame started
/// (`Core::prefetch`) before the first is processed.
pub fn process_batch(core: &mut Core, snap: &Snapshot, now: Instant, bufs: &mut [[u8; 64]]) {
    core.prefetch(bufs.iter().map(|b| &b[..]));
    for buf in bufs.iter_mut() {
        std::hint::black_box(core.process(now, snap, buf, 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patched_frames_are_the_flows_frames() {
        for i in [0, 1, 49_999, 50_000, 16_777_215] {
            let mut f = client_frame(0, ACK);
            set_client(&mut f, i);
            let want = client_frame(i, ACK);
            assert_eq!(f[26..30], want[26..30], "flow {i}'s address");
            assert_eq!(f[34..36], want[34..36], "flow {i}'s port");
            let mut r = reply_frame();
            set_reply(&mut r, i, 12);
            assert_eq!(r[26..30], [10, 10, 0, 12]);
            assert_eq!(r[30..34], want[26..30]);
            assert_eq!(r[36..38], want[34..36]);
        }
    }
}
