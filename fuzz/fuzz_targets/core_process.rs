//! The forwarding core on arbitrary frames, against a snapshot with LVS-NAT and LVS-DR
//! services over TCP and UDP and a table that keeps the connections earlier inputs made.
//! Checked after each input: no panic, and a frame whose IP and TCP/UDP checksums were right
//! before is still right after a `Tx` verdict (the rewrite updates them incrementally).
#![no_main]

#[path = "common/lab.rs"]
mod lab;

use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use xlvs_dataplane::core::conn::Tables;
use xlvs_dataplane::core::service::Snapshot;
use xlvs_dataplane::core::{Core, Instant, Verdict};
use xlvs_dataplane::testing::checksums_ok;

struct State {
    core: Core,
    snap: Snapshot,
    now: u64,
}

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        let snap = lab::snapshot();
        Mutex::new(State {
            core: Core::new(Arc::new(Tables::new(1 << 12))),
            snap,
            now: 1_000_000_000,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, frame)) = data.split_first() else {
        return;
    };
    let mut st = state().lock().unwrap_or_else(|e| e.into_inner());
    let st = &mut *st;
    // The first byte: the interface it came in on, and how far time moves (expiry runs).
    st.now += (first as u64 >> 1) * 100_000_000;
    let iface = first & 1;
    let mut f = frame.to_vec();
    let ok_before = checksums_ok(&f);
    let v = st.core.process(Instant(st.now), &st.snap, &mut f, iface);
    if ok_before && matches!(v, Verdict::Tx(_)) {
        assert!(
            checksums_ok(&f),
            "checksums broken by the rewrite: {f:02x?}"
        );
    }
    if first & 0x80 != 0 {
        st.core.expire(Instant(st.now));
    }
});
