#!/usr/bin/env bash
# fwmark services (NAT lab, 1 queue, nginx on rs1/rs2 at :80 and :8080): the
# fwmark group 1 holds VIP:80 and VIP:8080; service `-f 1` is persistent with
# realservers of port 0:
#  (a) requests to both ports are answered (the realserver gets the port the
#      client asked for), all by one realserver: one persistence template,
#      keyed by the mark, covers both ports;
#  (b) -L -n shows "FWM  1 rr persistent 60" and the realservers at :0;
#      -L -n -c lists the template as ipvsadm does (protocol IP, virtual
#      0.0.0.1:0);
#  (c) without persistence (-E), rr spreads new connections over both.
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL fwmark.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init fm
web_lab_up nat 1
lab_nginx "$ID" rs1 8080 || fail "lab_nginx rs1 8080"
lab_nginx "$ID" rs2 8080 || fail "lab_nginx rs2 8080"
V=$LAB_VIP
write_rules "$D/rules" \
  "--add-mark -f 1 -t $V:80" \
  "--add-mark -f 1 -t $V:8080" \
  "-A -f 1 -s rr -p 60" \
  "-a -f 1 -r $LAB_RS1_IP:0 -m -w 1" \
  "-a -f 1 -r $LAB_RS2_IP:0 -m -w 1"
start_xlvsd "$ID" --iface "$LAB_DIR_EXT" --iface "$LAB_DIR_INT" --rules "$D/rules"
[ "$(xadm "$ID" -S -n)" = "$(cat "$D/rules")" ] || fail "-S differs from the rules: $(xadm "$ID" -S -n)"

log "(a) 20 requests to :80 and 20 to :8080"
http_burst "$ID" "http://$V:80/" 20 2 "$D/b80" || fail "requests to :80 timed out"
check_burst "$D/b80" 20 "20 requests to :80"
first=rs1
[ "$BURST_RS2" -gt 0 ] && first=rs2
[ "$BURST_RS1" = 20 ] || [ "$BURST_RS2" = 20 ] \
  || fail "persistent fwmark service split :80 requests rs1=$BURST_RS1 rs2=$BURST_RS2"
http_burst "$ID" "http://$V:8080/" 20 2 "$D/b8080" || fail "requests to :8080 timed out"
check_burst "$D/b8080" 20 "20 requests to :8080"
got=$BURST_RS1
[ "$first" = rs2 ] && got=$BURST_RS2
[ "$got" = 20 ] || fail ":8080 requests went rs1=$BURST_RS1 rs2=$BURST_RS2, want all 20 on $first (one template for the mark)"

log "(b) listings"
L=$(xadm "$ID" -L -n)
printf '%s\n' "$L" | has -x "FWM  1 rr persistent 60" || fail "-L -n:
$L"
[ "$(lvs_dest_field "$L" "FWM 1" "$LAB_RS1_IP:0" Forward)" = Masq ] || fail "-L -n realserver line:
$L"
C=$(xadm "$ID" -L -n -c)
RS_RE="($LAB_RS1_IP|$LAB_RS2_IP)"
n=$(printf '%s\n' "$C" | grep -cE "^IP  [0-9]{2}:[0-9]{2}  NONE +$LAB_CLIENT_IP:0 +0\.0\.0\.1:0 +$RS_RE:0\$" || true)
[ "$n" = 1 ] || fail "want one fwmark template in -L -n -c, found $n:
$C"
n=$(printf '%s\n' "$C" | grep -cE "^TCP .* $V:8080 " || true)
[ "$n" -ge 1 ] || fail "no connection to $V:8080 in -L -n -c:
$C"

log "(c) not persistent: rr over both"
xadm "$ID" -E -f 1 -s rr >/dev/null
http_burst "$ID" "http://$V:8080/" 20 1 "$D/b2" || fail "requests timed out"
check_burst "$D/b2" 20 "20 requests, not persistent"
[ "$BURST_RS1" = 10 ] && [ "$BURST_RS2" = 10 ] || fail "rr split rs1=$BURST_RS1 rs2=$BURST_RS2, want 10/10"
pass
