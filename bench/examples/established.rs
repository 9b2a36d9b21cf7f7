//! Drives `Core::process` over established LVS-NAT flows, or new connections, for instruction
//! counting (`valgrind --tool=callgrind`): `established [nat|dr|reply|syn] [packets] [sync]`.
//! Deterministic, so two builds can be compared by instructions per packet whatever else the
//! machine is doing. `sync`: a sync master listens (the connection-event hand-off is on; the
//! outbox is emptied every 10 000 packets, as the master drains it).

use xlvs_bench::*;
use xlvs_dataplane::core::Instant;
use xlvs_dataplane::core::service::Fwd;
use xlvs_dataplane::wire::tcp::SYN;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "nat".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let fwd = if which == "dr" { Fwd::Route } else { Fwd::Masq };
    let (mut core, snap) = setup(fwd, 1 << 20);
    let outbox = std::sync::Arc::new(xlvs_dataplane::core::events::Outbox::new(1 << 16));
    if args.next().as_deref() == Some("sync") {
        outbox.set_listening(true);
        core.set_outbox(Some(outbox.clone()));
    }
    if which == "syn" {
        // New connections: a SYN from a new client endpoint each time.
        let mut tx = 0usize;
        for i in 0..n as u32 {
            let mut f = client_frame(1_000_000 + i, SYN);
            let v = core.process(Instant(1), &snap, &mut f, 0);
            tx += matches!(v, xlvs_dataplane::core::Verdict::Tx(_)) as usize;
        }
        println!("{which}: {tx} of {n} forwarded");
        return;
    }
    let frames: Vec<_> = (0..10_000)
        .map(|i| established(&mut core, &snap, i))
        .collect();
    let mut buf = [0u8; 64];
    let mut tx = 0usize;
    // Rounds over the flows; the outbox (if listened to) is emptied between rounds, so the
    // per-packet loop is the same with and without it.
    let mut left = n;
    while left > 0 {
        while outbox.pop().is_some() {}
        let round = left.min(frames.len());
        for fr in &frames[..round] {
            let (f, iface) = if which == "reply" {
                (&fr.1, 1)
            } else {
                (&fr.0, 0)
            };
            buf[..f.len()].copy_from_slice(f);
            let v = core.process(Instant(2), &snap, &mut buf[..f.len()], iface);
            tx += matches!(v, xlvs_dataplane::core::Verdict::Tx(_)) as usize;
        }
        left -= round;
    }
    println!("{which}: {tx} of {n} forwarded");
}
