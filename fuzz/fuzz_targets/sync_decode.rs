//! The IPVS sync message decoder (v0 and v1) on arbitrary datagrams: an error or a message,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let syncid = data.first().copied().unwrap_or(0);
    let _ = xlvs_control::sync::decode(data, syncid);
});
