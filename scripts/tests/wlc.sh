#!/usr/bin/env bash
# wlc scheduling with a dest added live (NAT lab, 1 queue):
# service -s wlc with only rs1; 5 idle connections held open to rs1
# (ActiveConn 5); rs2 added with `xlvsadm -a`; then 50 new sequential
# requests must ALL go to rs2 (rs1's overhead 5*256 stays above rs2's).
# The closed 50 then count on rs2 as inactive, exactly (ActiveConn 0, InActConn 50).
# WLC_XLVSD_ARGS adds xlvsd arguments (wlc_threads.sh: a thread per socket, whose workers
# defer their count changes). Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

HOLDERS=5

test_init wl
lab_nat_up "$ID" 1 || fail "lab_nat_up"
D=$(lab_dir "$ID")
lab_nginx "$ID" rs1 80 || fail "lab_nginx rs1"
lab_nginx "$ID" rs2 80 || fail "lab_nginx rs2"

write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s wlc" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -m -w 1"
# shellcheck disable=SC2206 # word splitting wanted: extra arguments
EXTRA=(${WLC_XLVSD_ARGS:-})
start_xlvsd "$ID" --iface ext0 --iface int0 --rules "$D/rules" "${EXTRA[@]}"
SVC="TCP $LAB_VIP:80"

# Idle holders: connect, send nothing. nginx keeps such a connection for
# client_header_timeout (60 s); the holders give up after 50 s.
log "opening $HOLDERS idle connections"
for ((i = 0; i < HOLDERS; i++)); do
  lab_exec "$ID" cli timeout 55 bash -c "exec 3<>/dev/tcp/$LAB_VIP/80 || exit 1; sleep 50" \
    </dev/null >/dev/null 2>>"$D/holders.err" &
  bg_track $!
done

# ActiveConn of rs1 must reach HOLDERS (bounded: 10 s).
ac=
for ((i = 0; i < 50; i++)); do
  L=$(xadm "$ID" -L -n)
  ac=$(lvs_dest_field "$L" "$SVC" "$LAB_RS1_IP:80" ActiveConn)
  [ "$ac" = "$HOLDERS" ] && break
  sleep 0.2
done
if [ "$ac" != "$HOLDERS" ]; then
  est=$(lab_exec "$ID" rs1 ss -Htn state established '( sport = :80 )' | wc -l)
  fail "rs1 ActiveConn is '$ac' after 10 s, want $HOLDERS (rs1 sees $est established conns on :80; holder errors: $(head -c 300 "$D/holders.err")); listing:
$L"
fi
log "rs1 ActiveConn=$ac"

# Add rs2 live.
xadm "$ID" -a -t "$LAB_VIP:80" -r "$LAB_RS2_IP:80" -m -w 1 >/dev/null
L=$(xadm "$ID" -L -n)
f=$(lvs_dest_field "$L" "$SVC" "$LAB_RS2_IP:80" Forward)
[ "$f" = Masq ] || fail "after xlvsadm -a, rs2 not listed as Masq (Forward='$f'); listing:
$L"

# 50 sequential new connections: all to rs2.
log "50 sequential requests"
http_burst "$ID" "http://$LAB_VIP/" 50 1 "$D/burst" || fail "50 requests: timed out"
xlvsd_alive "after 50 requests"
check_burst "$D/burst" 50 "50 requests after adding rs2"
L=$(xadm "$ID" -L -n)
[ "$BURST_RS2" -eq 50 ] || fail "wlc: rs1=$BURST_RS1 rs2=$BURST_RS2 of 50, want all on rs2 (rs1 holds $HOLDERS active); listing:
$L"
# The holders must still be there, otherwise the check above proved nothing.
ac=$(lvs_dest_field "$L" "$SVC" "$LAB_RS1_IP:80" ActiveConn)
[ "$ac" = "$HOLDERS" ] || fail "rs1 ActiveConn dropped to '$ac' during the test; listing:
$L"
# The 50 closed connections are listed as inactive on rs2 (TIME_WAIT, CLOSE...), once the
# last FINs went through (bounded: 5 s).
for ((i = 0; i < 25; i++)); do
  L=$(xadm "$ID" -L -n)
  a2=$(lvs_dest_field "$L" "$SVC" "$LAB_RS2_IP:80" ActiveConn)
  i2=$(lvs_dest_field "$L" "$SVC" "$LAB_RS2_IP:80" InActConn)
  [ "$a2" = 0 ] && [ "$i2" = 50 ] && break
  sleep 0.2
done
[ "$a2" = 0 ] && [ "$i2" = 50 ] || fail "rs2 lists ActiveConn '$a2' InActConn '$i2' after 50 closed connections, want 0 and 50; listing:
$L"
log "rs2 after the 50: ActiveConn $a2, InActConn $i2"

for p in "${TEST_BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${TEST_BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
TEST_BG_PIDS=()
pass
