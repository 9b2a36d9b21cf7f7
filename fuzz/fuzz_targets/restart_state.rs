//! The table an orderly stop saves (`--state-dir`), read back by the next xlvsd, on arbitrary
//! bytes: an error or entries, never a panic; every entry it gives has time left.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xlvs_dataplane::core::Instant;
use xlvs_dataplane::core::inject::Spec;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = xlvs_control::restart::codec::decode(data, Instant(1 << 62)) {
        for s in &r.specs {
            let t = match s {
                Spec::Conn(c) => c.timeout,
                Spec::Template(t) => t.timeout,
            };
            assert!(!t.is_zero(), "an entry without time left");
        }
    }
});
