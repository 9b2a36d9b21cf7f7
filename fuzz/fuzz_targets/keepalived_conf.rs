//! The keepalived.conf reader on arbitrary text (includes of files that do not exist are
//! errors, not panics).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ =
        xlvs_control::keepalived::parse_str(&text, std::path::Path::new("/nonexistent/fuzz.conf"));
});
