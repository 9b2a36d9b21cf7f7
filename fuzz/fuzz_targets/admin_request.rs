//! The control socket's request decoder on arbitrary lines.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = xlvs_control::admin::Request::decode(data);
});
