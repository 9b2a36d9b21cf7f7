#!/usr/bin/env bash
# Runs every xlvs test: installs what is needed, builds, runs the unit and property tests of the
# workspace, then the end-to-end tests in network namespaces (scripts/tests/). Ends with
# "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: run as root (network namespaces, XDP, AF_XDP)" >&2
  exit 1
fi

echo "== setup"
bash scripts/setup.sh

echo "== build"
cargo build --release --locked 2>&1 | grep -v '^warning: xlvs-control@' | grep -v '^\s*Compiling' || true
[ -x target/release/xlvsd ] || { echo "build failed" >&2; exit 1; }

echo "== format"
if ! cargo fmt --all -- --check; then
  echo "cargo fmt would change files"
  echo "0 passed, 1 failed"
  exit 1
fi

echo "== clippy"
rc=0
cargo clippy --release --locked --all-targets --all-features -- -D warnings >/tmp/xlvs-clippy.log 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
  grep -v '^warning: xlvs-control@' /tmp/xlvs-clippy.log | grep -E -A12 '^(error|warning)' | head -80
  echo "cargo clippy found problems"
  echo "0 passed, 1 failed"
  exit 1
fi

echo "== unit and property tests"
cargo test --release --locked --workspace --exclude xlvs-ebpf --all-features 2>&1 \
  | grep -v '^warning: xlvs-control@' | tee /tmp/xlvs-unit.log | grep -E '^(test result|error|failures:|---- )' || true
if grep -qE '^test result: FAILED|^error' /tmp/xlvs-unit.log || ! grep -q '^test result: ok' /tmp/xlvs-unit.log; then
  echo "unit tests failed:" >&2
  grep -A30 '^failures:' /tmp/xlvs-unit.log >&2 || tail -40 /tmp/xlvs-unit.log >&2
  echo "0 passed, 1 failed"
  exit 1
fi

echo "== fuzz targets (build; scripts/tests/fuzz.sh runs them)"
if ! (cd fuzz && cargo +nightly fuzz build -O >/tmp/xlvs-fuzz-build.log 2>&1); then
  tail -30 /tmp/xlvs-fuzz-build.log
  echo "fuzz build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

echo "== end-to-end tests (network namespaces)"
bash scripts/tests/run.sh --no-build
