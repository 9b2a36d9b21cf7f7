#!/usr/bin/env bash
# scripts/pktgen.sh --dry-run (this kernel has no pktgen): the knobs become the
# pktgen commands operators expect (random source ports, IMIX weights without
# the FCS, one TX queue per thread, a packet rate), and bad arguments are
# refused with exit 2.
# Prints PASS/FAIL pktgen_dry.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
PG="$HERE/../pktgen.sh"

test_init pg
out=$("$PG" --dry-run -i eth9 -d 192.0.2.100:8080 -m 02:00:00:00:00:e0 \
  -s 198.18.0.1-198.18.0.254 -p 2000-3000 -z imix -t 2 -r 500000) || fail "dry run failed: $out"
for want in \
  "kpktgend_1: add_device eth9@1" \
  "eth9@1: queue_map_min 1" \
  "eth9@0: imix_weights 60,7 566,4 1514,1" \
  "eth9@0: dst 192.0.2.100" \
  "eth9@0: udp_dst_min 8080" \
  "eth9@0: src_max 198.18.0.254" \
  "eth9@0: udp_src_min 2000" \
  "eth9@0: flag UDPSRC_RND" \
  "eth9@1: ratep 500000"; do
  grep -qxF "$want" <<<"$out" || fail "dry run lacks '$want':
$out"
done
out=$("$PG" --dry-run -i eth9 -d 192.0.2.100 -m 02:00:00:00:00:e0) || fail "defaults: $out"
grep -qxF "eth9@0: pkt_size 60" <<<"$out" || fail "64-byte frames are pkt_size 60: $out"
grep -qxF "eth9@0: udp_dst_min 80" <<<"$out" || fail "default port 80: $out"
for bad in "-z 63" "-p 9-2" "-d 192.0.2.300" "-t 0" "-x"; do
  rc=0
  # shellcheck disable=SC2086
  "$PG" --dry-run -i eth9 -d 192.0.2.100 -m 02:00:00:00:00:e0 $bad >/dev/null 2>&1 || rc=$?
  [ "$rc" = 2 ] || fail "'$bad' gave exit $rc, want 2"
done
pass
