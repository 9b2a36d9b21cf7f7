#!/usr/bin/env bash
# DR (direct routing) of HTTP through xlvsd (1 queue, rr over rs1/rs2):
#  (a) 1000 requests, each a new TCP connection: all answered, 450..550 each;
#  (b) a 50 MB download through the VIP arrives intact (sha256);
#  (c) `xlvsadm -L -n` lists both dests as Route.
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL dr_http.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init dh
lab_dr_up "$ID" 1 || fail "lab_dr_up"
D=$(lab_dir "$ID")
lab_nginx "$ID" rs1 80 || fail "lab_nginx rs1"
lab_nginx "$ID" rs2 80 || fail "lab_nginx rs2"
SUM=$(make_big "$ID" "$D/big.orig")

write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -g -w 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -g -w 1"
start_xlvsd "$ID" --iface eth0 --rules "$D/rules"

# (a) 1000 new connections
log "(a) 1000 requests, 8 in parallel"
http_burst "$ID" "http://$LAB_VIP/" 1000 8 "$D/burst" || fail "1000 requests: timed out after 300 s"
xlvsd_alive "after 1000 requests"
check_burst "$D/burst" 1000 "1000 requests"
log "rs1=$BURST_RS1 rs2=$BURST_RS2"
for c in "$BURST_RS1" "$BURST_RS2"; do
  if [ "$c" -lt 450 ] || [ "$c" -gt 550 ]; then
    fail "rr split outside 450..550: rs1=$BURST_RS1 rs2=$BURST_RS2"
  fi
done

# (b) 50 MB download
log "(b) 50 MB download through the VIP"
rc=0
lab_exec "$ID" cli timeout 120 curl -sS --max-time 110 -o "$D/big.got" "http://$LAB_VIP/big" 2>"$D/big.err" || rc=$?
xlvsd_alive "after the 50 MB download"
[ "$rc" -eq 0 ] || fail "download of /big failed (rc=$rc): $(head -c 300 "$D/big.err")"
GOT=$(sha256sum "$D/big.got" | awk '{ print $1 }')
[ "$GOT" = "$SUM" ] || fail "sha256 of /big: got $GOT ($(stat -c %s "$D/big.got") bytes), want $SUM"

# (c) listing
L=$(xadm "$ID" -L -n)
for rs in "$LAB_RS1_IP" "$LAB_RS2_IP"; do
  f=$(lvs_dest_field "$L" "TCP $LAB_VIP:80" "$rs:80" Forward)
  [ "$f" = Route ] || fail "xlvsadm -L -n: dest $rs:80 Forward='$f', want Route; listing:
$L"
done

pass
