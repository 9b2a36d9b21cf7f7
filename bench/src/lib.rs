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

/// A core and snapshot with one service of two realservers. The calling thread then counts
/// realservers' connections as xlvsd's worker 0 does (deferred in its shard).
pub fn setup(fwd: Fwd, max_conns: usize) -> (Core, Snapshot) {
    // A shard for worker 0 and one for the control thread, before the realservers exist.
    xlvs_dataplane::core::stats::set_shards(2);
    xlvs_dataplane::core::stats::defer_counts(Some(0));
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

/// A 64-byte client → VIP segment.
pub fn client_frame(i: u32, flags: u8) -> Vec<u8> {
    tcp_frame(
        CLIENT_MAC,
        EXT_MAC,
        (client(i), 10_000 + (i % 50_000) as u16),
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
    let cport = 10_000 + (i % 50_000) as u16;
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
