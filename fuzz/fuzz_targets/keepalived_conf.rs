//! The keepalived.conf reader on arbitrary text. Includes resolve inside a small tree of
//! their own (`xlvs_control::keepalived::FUZZ_ROOT`, filled here once: a file the seeds'
//! `include` lines and relative paths can find, a directory to glob), so that a generated
//! `include /*/*/*` costs a few directory reads, not a walk of the machine's filesystem.
#![no_main]

use std::path::Path;
use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use xlvs_control::keepalived::FUZZ_ROOT;

static TREE: Once = Once::new();

fn tree() {
    let root = Path::new(FUZZ_ROOT);
    let files = [
        (
            "etc/keepalived/conf.d/web.conf",
            "virtual_server 192.0.2.100 80 {\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n  real_server 10.10.0.11 80 {\n    weight 1\n    TCP_CHECK {\n      connect_timeout 3\n    }\n  }\n}\n",
        ),
        (
            "etc/keepalived/conf.d/vrrp.conf",
            "vrrp_instance VI_1 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority 100\n  virtual_ipaddress {\n    192.0.2.100\n  }\n}\n",
        ),
        (
            "nonexistent/local.conf",
            "global_defs {\n  router_id fuzz\n}\n",
        ),
    ];
    for (path, text) in files {
        let p = root.join(path);
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(&p, text);
    }
}

fuzz_target!(|data: &[u8]| {
    TREE.call_once(tree);
    let text = String::from_utf8_lossy(data);
    let _ = xlvs_control::keepalived::parse_str(&text, Path::new("/nonexistent/fuzz.conf"));
});
