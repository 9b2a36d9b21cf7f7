//! ns per established packet through `Core::process` at a given table size:
//! `scale [nat|dr] FLOWS PACKETS`. Opens FLOWS connections (a SYN each, so the table holds
//! FLOWS), then forwards PACKETS client → server ACKs visiting the flows in a scattered order
//! (stride 7919), one at a time and then in batches of 32 after `Core::prefetch` (as the
//! workers run). Prints both figures. The frames are one template whose source address and
//! port are patched per packet (the core does not verify checksums; it updates them
//! incrementally), so no per-flow frame is kept and 10 M flows fit.
//! Compare versions side by side by running two builds' binaries alternately.

use std::time::Instant as StdInstant;

use xlvs_bench::*;
use xlvs_dataplane::core::Instant;
use xlvs_dataplane::core::service::Fwd;
use xlvs_dataplane::wire::tcp::{ACK, SYN};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "nat".into());
    let flows: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let packets: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let fwd = if which == "dr" { Fwd::Route } else { Fwd::Masq };
    let (mut core, snap) = setup(fwd, (flows as usize).next_power_of_two().max(1 << 16));
    let syn = client_frame(0, SYN);
    let ack = client_frame(0, ACK);
    // The source address and port of flow `i`, as `client_frame` makes them.
    let fields = |i: u32| {
        let t = client_frame(i, SYN);
        let mut a = [0u8; 6];
        a[..4].copy_from_slice(&t[26..30]);
        a[4..].copy_from_slice(&t[34..36]);
        a
    };
    let t0 = StdInstant::now();
    let mut opened = 0usize;
    // Each SYN is the template with flow i's source (no etherparse per flow, so 10 M opens
    // are quick).
    let mut f = syn.clone();
    for i in 0..flows {
        let a = fields_fast(i, &fields);
        f[26..30].copy_from_slice(&a[..4]);
        f[34..36].copy_from_slice(&a[4..]);
        let mut g = f.clone();
        opened += matches!(
            core.process(Instant(1), &snap, &mut g, 0),
            xlvs_dataplane::core::Verdict::Tx(_)
        ) as usize;
    }
    eprintln!(
        "{which}: {opened} of {flows} connections opened in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let flow_fields: Vec<[u8; 6]> = (0..flows).map(|i| fields_fast(i, &fields)).collect();
    let n = flows as usize;
    let mut i = 0usize;
    let mut step = || {
        i += 7919;
        while i >= n {
            i -= n;
        }
        i
    };
    let mut buf = [0u8; 64];
    let mut tx = 0usize;
    let t = StdInstant::now();
    for _ in 0..packets {
        let a = &flow_fields[step()];
        buf[..ack.len()].copy_from_slice(&ack);
        buf[26..30].copy_from_slice(&a[..4]);
        buf[34..36].copy_from_slice(&a[4..]);
        tx += matches!(
            core.process(Instant(2), &snap, &mut buf[..ack.len()], 0),
            xlvs_dataplane::core::Verdict::Tx(_)
        ) as usize;
    }
    let single = t.elapsed().as_nanos() as f64 / packets as f64;
    let mut bufs = [[0u8; 64]; BATCH];
    let t = StdInstant::now();
    for _ in 0..packets / BATCH {
        for b in bufs.iter_mut() {
            let a = &flow_fields[step()];
            b[..ack.len()].copy_from_slice(&ack);
            b[26..30].copy_from_slice(&a[..4]);
            b[34..36].copy_from_slice(&a[4..]);
        }
        process_batch(&mut core, &snap, Instant(3), &mut bufs);
    }
    let batched = t.elapsed().as_nanos() as f64 / (packets / BATCH * BATCH) as f64;
    println!(
        "{which} flows {flows}: {single:.1} ns/packet single, {batched:.1} batched 32 ({tx} of {packets} forwarded single)"
    );
}

/// The source address and port `client_frame(i, _)` gives flow `i`: computed once from a
/// built frame for the first flows, then from the pattern they follow (checked).
fn fields_fast(i: u32, slow: &dyn Fn(u32) -> [u8; 6]) -> [u8; 6] {
    let c = client(i);
    let port = 10_000 + (i % 50_000) as u16;
    let mut a = [0u8; 6];
    a[..4].copy_from_slice(&c.octets());
    a[4..].copy_from_slice(&port.to_be_bytes());
    if i < 4 {
        assert_eq!(a, slow(i), "client_frame's source for flow {i}");
    }
    a
}
