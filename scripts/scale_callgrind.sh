#!/usr/bin/env bash
# Instructions and simulated last-level cache misses per packet through Core::process at a
# table size, under callgrind's cache simulator (this VM has no hardware counters):
#
#   scripts/scale_callgrind.sh [--bin SCALE] MODE FLOWS [PACKETS]
#
# MODE nat|reply|dr|syn, as target/release/examples/scale takes it (build it with
# `cargo build --release -p xlvs-bench --examples`; --bin runs another build's, to compare
# versions side by side). The opening of FLOWS connections runs uninstrumented (the example
# waits for a file before its timed loops; callgrind is switched on first), so 10 M flows take
# a minute or two. Prints instructions per call of Core::process, and the one-at-a-time loop's
# (`single`) instructions and last-level misses per packet, frame building included (the
# cache starts cold, so PACKETS, default 200 000, should be well over FLOWS for small tables).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/examples/scale
if [ "${1-}" = --bin ]; then
  BIN=$2
  shift 2
fi
MODE=${1:?usage: $0 [--bin SCALE] MODE FLOWS [PACKETS]}
FLOWS=${2:?usage: $0 [--bin SCALE] MODE FLOWS [PACKETS]}
PACKETS=${3:-200000}
command -v valgrind >/dev/null || { echo "valgrind is not installed (scripts/setup.sh)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "no $BIN (cargo build --release -p xlvs-bench --examples)" >&2; exit 2; }
W=$(mktemp -d /tmp/xlvs-scale-cg.XXXXXX)
trap '[ -z "${VG-}" ] || kill "$VG" 2>/dev/null || true; rm -rf "$W"' EXIT
SCALE_WAIT_FOR=$W/go valgrind --tool=callgrind --cache-sim=yes --instr-atstart=no \
  --callgrind-out-file="$W/cg.out" "$BIN" "$MODE" "$FLOWS" "$PACKETS" >"$W/out" 2>"$W/err" &
VG=$!
# The opening, bounded: 10 M flows take about two minutes under valgrind.
for ((i = 0; i < 6000; i++)); do
  grep -q "waiting for" "$W/err" && break
  kill -0 "$VG" 2>/dev/null || { cat "$W/err" >&2; exit 1; }
  sleep 0.1
done
grep -q "waiting for" "$W/err" || { echo "the opening did not finish in 10 minutes" >&2; exit 1; }
callgrind_control -i on "$VG" >/dev/null
touch "$W/go"
wait "$VG"
VG=
# Inclusive Ir, DLmr, DLmw of `single` (the one-at-a-time loop, its frame building included)
# and of `Core::process` (called by both loops: PACKETS + PACKETS/32*32 times).
cost() {
  local line
  line=$(callgrind_annotate --inclusive=yes --show=Ir,DLmr,DLmw "$W/cg.out" 2>/dev/null |
    grep -m1 -E "$1" || true)
  [ -n "$line" ] || { echo "no inclusive cost for $1 in the profile" >&2; exit 1; }
  sed -E 's/\([^)]*\)//g; s/,//g' <<<"$line" | awk '{ print $1, $2, $3 }'
}
single=$(cost 'scale::single') || exit 1
process=$(cost 'core::Core::process( \[|$)') || exit 1
read -r ir dlmr dlmw <<<"$single"
read -r pir _ _ <<<"$process"
awk -v m="$MODE" -v f="$FLOWS" -v p="$PACKETS" -v ir="$ir" -v r="$dlmr" -v w="$dlmw" -v pir="$pir" 'BEGIN {
  calls = p + int(p / 32) * 32
  printf "%s flows %s: %.0f instructions/packet in Core::process (%.0f with the frame built), %.2f LL misses/packet (%.2f reads, %.2f writes)\n",
    m, f, pir / calls, ir / p, (r + w) / p, r / p, w / p }'
