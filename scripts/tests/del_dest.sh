#!/usr/bin/env bash
# Deleting a dest live (NAT lab, rr over rs1/rs2): a rate-limited 50 MB
# download runs through the VIP; its dest (the one with ActiveConn >= 1) is
# deleted with `xlvsadm -d`; 20 new requests must all go to the other dest,
# and the running download must still complete intact (sha256).
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL del_dest.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init dd
web_lab_up nat 1
SUM=$(make_big "$ID" "$D/big.orig")

start_rr_xlvsd
SVC="TCP $LAB_VIP:80"

# ~10 s at 5 MB/s
log "starting a rate-limited 50 MB download"
lab_exec "$ID" cli timeout 90 curl -sS --max-time 80 --limit-rate 5M \
  -o "$D/big.got" "http://$LAB_VIP/big" </dev/null >/dev/null 2>"$D/dl.err" &
DL=$!
bg_track "$DL"

# Which dest serves it? Wait (bounded, 5 s) until exactly one dest has
# ActiveConn >= 1.
victim= other= a1= a2=
for ((i = 0; i < 25; i++)); do
  L=$(xadm "$ID" -L -n)
  a1=$(lvs_dest_field "$L" "$SVC" "$LAB_RS1_IP:80" ActiveConn)
  a2=$(lvs_dest_field "$L" "$SVC" "$LAB_RS2_IP:80" ActiveConn)
  if [[ $a1 =~ ^[0-9]+$ && $a2 =~ ^[0-9]+$ ]]; then
    if [ "$a1" -ge 1 ] && [ "$a2" -eq 0 ]; then victim=rs1; break; fi
    if [ "$a2" -ge 1 ] && [ "$a1" -eq 0 ]; then victim=rs2; break; fi
    [ "$a1" -ge 1 ] && [ "$a2" -ge 1 ] && fail "both dests show ActiveConn >= 1 with one download running; listing:
$L"
  fi
  sleep 0.2
done
[ -n "$victim" ] || fail "no dest shows ActiveConn >= 1 within 5 s of starting the download (rs1='$a1' rs2='$a2'); listing:
$L"
if [ "$victim" = rs1 ]; then VICTIM_IP=$LAB_RS1_IP other=rs2; else VICTIM_IP=$LAB_RS2_IP other=rs1; fi
log "download served by $victim ($VICTIM_IP) according to xlvsadm"

# Cross-check with the realserver's own sockets.
est=$(lab_exec "$ID" "$victim" ss -Htn state established '( sport = :80 )' | wc -l)
[ "$est" -ge 1 ] || fail "xlvsadm says $victim serves the download, but $victim has no established connection on :80"
kill -0 "$DL" 2>/dev/null || fail "download finished before the dest could be deleted (too fast for the test)"

xadm "$ID" -d -t "$LAB_VIP:80" -r "$VICTIM_IP:80" >/dev/null
L=$(xadm "$ID" -L -n)
[ -z "$(lvs_dest_field "$L" "$SVC" "$VICTIM_IP:80" Forward)" ] ||
  fail "$VICTIM_IP:80 still listed after xlvsadm -d; listing:
$L"
kill -0 "$DL" 2>/dev/null || fail "download finished before the new requests (too fast for the test)"

log "20 requests after deleting $victim"
http_burst "$ID" "http://$LAB_VIP/" 20 4 "$D/burst" || fail "20 requests: timed out"
check_burst "$D/burst" 20 "20 requests after deleting $victim"
n_other=$BURST_RS1
[ "$other" = rs2 ] && n_other=$BURST_RS2
[ "$n_other" -eq 20 ] || fail "after deleting $victim: rs1=$BURST_RS1 rs2=$BURST_RS2, want all 20 on $other"
still=$(kill -0 "$DL" 2>/dev/null && echo yes || echo no)
log "download still running after the 20 requests: $still"

rc=0
wait "$DL" || rc=$?
TEST_BG_PIDS=()
xlvsd_alive "after the download"
[ "$rc" -eq 0 ] || fail "download through the deleted dest $victim failed (curl/timeout rc=$rc): $(head -c 300 "$D/dl.err"); got $(stat -c %s "$D/big.got" 2>/dev/null || echo 0) bytes"
GOT=$(sha256sum "$D/big.got" | awk '{ print $1 }')
[ "$GOT" = "$SUM" ] || fail "sha256 of the download: got $GOT ($(stat -c %s "$D/big.got") bytes), want $SUM"

pass
