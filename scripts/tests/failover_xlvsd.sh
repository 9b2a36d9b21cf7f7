#!/usr/bin/env bash
# xlvsd dies while keepalived lives (LVS-DR pair, docs/keepalived/dr-pair.conf, real
# keepalived -P): d1's xlvsd is SIGKILLed under load; its host, links and keepalived stay up
# and d1 keeps the VIP until keepalived's track script (`xlvsadm --check --watch 800`)
# fails. Meanwhile the XDP program, pinned (--pin-dir), outlives xlvsd and drops the VIP's
# frames instead of handing them to d1's stack, which holds the VIP and would reset every
# connection it does not know. Then:
#  - d1 goes FAULT and d2 MASTER; the kill to d2's first forwarded frame within 1.5 s (goal
#    1 s), printed with the kill to d1's FAULT and to d2's MASTER notify;
#  - every download completes byte-exact, wrk sees no socket error, and the client's
#    capture holds no RST from the VIP;
#  - d1's interface still carries XDP (the pinned link) after its xlvsd's death.
# Needs root, keepalived, tshark, curl, wrk and target/release/{xlvsd,xlvsadm}.
# xlvs-test: alone
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/failover.sh
. "$HERE/../lib/failover.sh"
command -v keepalived >/dev/null || fail "keepalived not installed (scripts/setup.sh)"

test_init fx
lab_dr_up "$ID" 1 || fail "lab_dr_up"
D=$(lab_dir "$ID")
lab_add_dir2 "$ID" || fail "lab_add_dir2"
ip -n "$LAB_DIR_NS" addr del "$LAB_VIP/32" dev eth0
lab_nginx "$ID" rs1 80 || fail "nginx rs1"
lab_nginx "$ID" rs2 80 || fail "nginx rs2"
write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -g -w 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -g -w 1"
SYNC=(--start-daemon master --start-daemon backup --mcast-interface eth0 --syncid 7)
start_xlvsd "$ID" --iface eth0 --rules "$D/rules" "${SYNC[@]}" --sync-peer "$LAB_D2_IP" "$(fo_pin d1)"
start_peer_xlvsd d2 --iface eth0 --rules "$D/rules" "${SYNC[@]}" --sync-peer "$LAB_DIR_IP" "$(fo_pin d2)"
fo_keepalived "$TESTLIB_ROOT/docs/keepalived/dr-pair.conf"
# Both stacks must stay silent: d1 keeps the VIP after its xlvsd dies.
export FO_STACKS="dir d2"
D2MAC=$(ip -n "$LAB_D2_NS" link show eth0 | awk '/link\/ether/ { print $2 }')
fo_captures p-d2 "tcp and ether src $D2MAC"
fo_downloads 800000
fo_wrk 8
sleep 2

log "d1's xlvsd dies (SIGKILL); its keepalived, host and links live on"
T0=$(date +%s%3N)
kill -KILL "$XLVSD_PID"
wait "$XLVSD_PID" 2>/dev/null || true
XLVSD_PID=
[ "${FO_NOPIN:-0}" = 1 ] || ip -n "$LAB_DIR_NS" link show eth0 | grep -q " xdp" || fail "XDP left d1's eth0 with its xlvsd"
end=$(($(date +%s) + 5))
st=
while [ "$(date +%s)" -lt "$end" ]; do
  read -r st since < <(fo_vrrp_state d2)
  [ "$st" = MASTER ] && break
  sleep 0.05
done
[ "$st" = MASTER ] || fail "d2 is $st 5 s after d1's xlvsd died
d1's keepalived: $(grep -Ev 'gratuitous' "$D/ka1.log" | tail -n 12)"
NOTIFY_MS=$(($(date +%s%3N) - since - T0))
fault=$(python3 - "$D/ka1.log" "$T0" <<'PY'
import re, sys, datetime
# keepalived -l -D logs "Sun Dec  6 12:33:21 2026: (VI_DR) Entering FAULT STATE" (seconds);
# its first line after the kill says when, to the second.
for line in open(sys.argv[1]):
    if "Entering FAULT STATE" in line:
        t = datetime.datetime.strptime(line.split(": ")[0], "%a %b %d %H:%M:%S %Y")
        if t.timestamp() * 1000 >= int(sys.argv[2]) - 1000:
            print("yes"); break
PY
)
[ "$fault" = yes ] || fail "d1's keepalived did not enter FAULT: $(grep -Ev 'gratuitous' "$D/ka1.log" | tail -n 8)"
log "d1's keepalived: FAULT (track script); d2: MASTER notify $NOTIFY_MS ms after the kill"
fo_wrk_verdict
fo_verdict
pass
