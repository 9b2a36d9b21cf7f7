//! The XDP program itself, run by the kernel on arbitrary frames (`BPF_PROG_TEST_RUN`, the
//! program loaded but attached nowhere; needs root), against the forwarding core's view of
//! the same frame, with the same services (LVS-NAT and LVS-DR, TCP and UDP):
//! - the program returns XDP_PASS (not steered) or XDP_DROP (steered: the queue has no
//!   socket here), never anything else;
//! - a frame the core would forward (a fresh core, an empty table: a new connection) is one
//!   the program steers: else it would reach the director's stack, which holds the VIP and
//!   resets the connection;
//! - a frame the program steers is IP to the core (never dropped as `not_ip`).
#![no_main]

#[path = "common/lab.rs"]
mod lab;

use std::sync::{Arc, Mutex, OnceLock};

use lab::{RIPS, VIP, VIP_DR};
use libfuzzer_sys::fuzz_target;
use xlvs_common::{AddrKey, L4Key, PROTO_TCP, PROTO_UDP};
use xlvs_control::xdp::XdpSteering;
use xlvs_dataplane::core::conn::Tables;
use xlvs_dataplane::core::service::Snapshot;
use xlvs_dataplane::core::{Core, DropReason, Instant, Verdict};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

struct State {
    xdp: XdpSteering,
    snap: Snapshot,
}

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        let snap = lab::snapshot();
        let mut xdp = XdpSteering::load(None).expect("loading the XDP program (root?)");
        let mut reals = Vec::new();
        for (ip, port) in RIPS {
            reals.push(L4Key::v4(ip.octets(), port, PROTO_TCP));
            reals.push(L4Key::v4(ip.octets(), port, PROTO_UDP));
        }
        xdp.set_keys(
            &[
                L4Key::v4(VIP.octets(), 80, PROTO_TCP),
                L4Key::v4(VIP.octets(), 53, PROTO_UDP),
                L4Key::v4(VIP_DR.octets(), 80, PROTO_TCP),
            ],
            &reals,
            &[AddrKey::v4([192, 0, 2, 1]), AddrKey::v4([10, 10, 0, 1])],
        )
        .expect("steering keys");
        // lo (ifindex 1), one RX queue, no socket.
        xdp.set_iface(1, 0, 1).expect("IFACES");
        Mutex::new(State { xdp, snap })
    })
}

fuzz_target!(|frame: &[u8]| {
    if frame.len() < 14 || frame.len() > 3000 {
        return;
    }
    let st = state().lock().unwrap_or_else(|e| e.into_inner());
    let action = st.xdp.test_run(frame, 1, 0).expect("BPF_PROG_TEST_RUN");
    assert!(
        action == XDP_PASS || action == XDP_DROP,
        "XDP action {action} for {frame:02x?}"
    );
    let steered = action == XDP_DROP;
    let mut core = Core::new(Arc::new(Tables::new(1 << 10)));
    let mut f = frame.to_vec();
    let v = core.process(Instant(1_000_000_000), &st.snap, &mut f, 0);
    if matches!(v, Verdict::Tx(_)) {
        assert!(
            steered,
            "the core forwards a frame XDP passes to the kernel: {frame:02x?}"
        );
    }
    if steered {
        assert_ne!(
            v,
            Verdict::Drop(DropReason::NotIp),
            "XDP steers a frame the core says is not IP: {frame:02x?}"
        );
    }
});
