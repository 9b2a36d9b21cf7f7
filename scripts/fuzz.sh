#!/usr/bin/env bash
# Fuzzes xlvs's input decoders with libFuzzer (cargo-fuzz, nightly, AddressSanitizer):
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Targets (fuzz/fuzz_targets/): core_process (the forwarding core on arbitrary frames, its
# checksums checked after each rewrite), sync_decode (IPVS sync v0/v1 datagrams), ipvsadm
# (command lines and rules files), keepalived_conf, admin_request (the control socket's
# requests), restart_state (the table an orderly stop saves), xdp_steer (the XDP program run
# by the kernel, BPF_PROG_TEST_RUN, against the core's view: needs root), xdp_offload (the
# XDP fast path's rewrite and sync hand-over on arbitrary segments: needs root). Each runs SECONDS
# (default 20) from the seeds in fuzz/seeds/TARGET (real sync datagrams from
# ../shared/reference/captures, lab frames, the shipped keepalived.conf files, requests
# xlvsadm sends, a saved table) in a corpus of its own under $FUZZ_WORK (default a temp dir, kept:
# point it at a directory to grow a corpus across runs). A crash leaves its input in
# fuzz/artifacts/TARGET/ (turn it into a regression test) and fails the run. Prints one line
# per target: executions, seconds, crashes. FUZZ_NO_BUILD=1 skips the build. FUZZ_RUNS=N
# ends each target after N executions instead (SECONDS is then only an upper bound): the long
# runs behind docs/RELIABILITY.md's figures, which a busy machine slows but does not shorten.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SECS=${1:-20}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(core_process sync_decode ipvsadm keepalived_conf admin_request restart_state xdp_steer xdp_offload)
WORK=${FUZZ_WORK:-$(mktemp -d /tmp/xlvs-fuzz.XXXXXX)}
cd fuzz
if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
  cargo +nightly fuzz build -O >/tmp/xlvs-fuzz-build.log 2>&1 ||
    { tail -30 /tmp/xlvs-fuzz-build.log; echo "fuzz build failed" >&2; exit 1; }
fi
bad=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$WORK/$t" "artifacts/$t"
  cp -n seeds/"$t"/* "$WORK/$t/" 2>/dev/null || true
  log="$WORK/$t.log"
  rc=0
  limit=()
  [ -z "${FUZZ_RUNS:-}" ] || limit=(-runs="$FUZZ_RUNS")
  t0=$(date +%s)
  # -timeout: an input slower than 10 s is a hang, reported like a crash. The outer limit
  # leaves room for cargo to rebuild the target if the sources changed since the build.
  timeout $((SECS + 900)) cargo +nightly fuzz run -O "$t" "$WORK/$t" -- \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" "${limit[@]}" >"$log" 2>&1 || rc=$?
  took=$(($(date +%s) - t0))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$rc" -ne 0 ]; then
    bad=$((bad + 1))
    echo "$t: CRASH after ${runs:-?} executions (exit $rc); input in fuzz/artifacts/$t/:"
    grep -E -m5 "panicked|ERROR|SUMMARY|deadly signal|Test unit written" "$log" | sed 's/^/  /' || true
  else
    echo "$t: ${runs:-?} executions in ${took} s, 0 crashes"
  fi
done
[ "$bad" = 0 ]
