#!/usr/bin/env bash
# Weight-0 drain (NAT lab, wlc over rs1/rs2): a rate-limited 50 MB download
# runs through the VIP; its dest is set to weight 0 (`xlvsadm -e -w 0`,
# quiescent). It stays listed with weight 0 and its ActiveConn; 30 new
# requests must all go to the other dest; the running download completes
# intact. Then weight 1 again: new requests reach it again.
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL drain.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init dn
web_lab_up nat 1
SUM=$(make_big "$ID" "$D/big.orig")
start_rr_xlvsd
xadm "$ID" -E -t "$LAB_VIP:80" -s wlc >/dev/null
SVC="TCP $LAB_VIP:80"
start_slow_download
download_running "before the dest could be quiesced"

xadm "$ID" -e -t "$LAB_VIP:80" -r "$VICTIM_IP:80" -m -w 0 >/dev/null
L=$(xadm "$ID" -L -n)
w=$(lvs_dest_field "$L" "$SVC" "$VICTIM_IP:80" Weight)
a=$(lvs_dest_field "$L" "$SVC" "$VICTIM_IP:80" ActiveConn)
[ "$w" = 0 ] && [ "${a:-0}" -ge 1 ] || fail "after -w 0: $VICTIM_IP:80 Weight='$w' ActiveConn='$a', want 0 and >= 1; listing:
$L"
download_running "before the new requests"

log "30 requests with $VICTIM quiescent"
expect_all_on "$OTHER" 30 "30 requests with $VICTIM at weight 0"
download_running "during the drain (the check above proved nothing)"
finish_slow_download

xadm "$ID" -e -t "$LAB_VIP:80" -r "$VICTIM_IP:80" -m -w 1 >/dev/null
http_burst "$ID" "http://$LAB_VIP/" 20 1 "$D/burst" || fail "20 requests: timed out"
check_burst "$D/burst" 20 "20 requests after weight 1"
n=$BURST_RS1
[ "$VICTIM" = rs2 ] && n=$BURST_RS2
[ "$n" -ge 1 ] || fail "back at weight 1, $VICTIM got none of 20 requests (rs1=$BURST_RS1 rs2=$BURST_RS2)"
pass
