//! ipvsadm's grammar on arbitrary command lines (split at white space) and rules files.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let args: Vec<String> = text.split_whitespace().map(String::from).collect();
    let _ = xlvs_control::ipvsadm::parse(&args);
    let _ = xlvs_control::ipvsadm::parse_rules(&text);
});
