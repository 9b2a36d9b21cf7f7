//! Builds the XDP program (`ebpf/`, package `xlvs-ebpf`) for bpfel-unknown-none with the nightly
//! toolchain and bpf-linker, and leaves the object in OUT_DIR for `include_bytes_aligned!`.
fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("control/ has a parent")
        .join("ebpf");
    let root = root.to_str().expect("utf-8 path");
    println!("cargo:rerun-if-changed={root}/common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "xlvs-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}
