#!/usr/bin/env bash
# Director failover with real keepalived (VRRPv3, advert_int 0.1, `keepalived -P`), LVS-NAT:
# the NAT director pair (lab_nat_pair_up, floating addresses left to keepalived), each
# director running xlvsd with sync both ways and keepalived with docs/keepalived/
# nat-pair.conf (a sync group moving the VIP and the realservers' gateway; notify
# `xlvsadm --vrrp-notify`; track `xlvsadm --check`). 100 rate-limited downloads run through
# the VIP; the master dies hard (everything it receives dropped, then keepalived and xlvsd
# SIGKILLed). Then:
#  - every download completes byte-exact, and the client's capture holds no RST;
#  - takeover time: from the kill to the first client frame the new master forwards to a
#    realserver (a capture on its inside port); goal < 1 s, allowed 1.5 s;
#  - keepalived's own part (the kill to the new master's MASTER notify) is printed beside;
#  - the master comes back while the downloads run (preemption on): its xlvsd pulls d2's
#    table, its track check holds keepalived back until that is done, it takes the VIP and
#    the gateway back, and the downloads carry on through it.
# Needs root, keepalived, tshark, curl and target/release/{xlvsd,xlvsadm}.
# xlvs-test: alone
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
command -v keepalived >/dev/null || fail "keepalived not installed (scripts/setup.sh)"

test_init fo
export LAB_PAIR_FLOATING=0
lab_nat_pair_up "$ID" || fail "lab_nat_pair_up"
D=$(lab_dir "$ID")
lab_nginx "$ID" rs1 80 || fail "nginx rs1"
lab_nginx "$ID" rs2 80 || fail "nginx rs2"
for r in rs1 rs2; do head -c 1500000 /dev/urandom >"$(lab_wwwdir "$ID" "$r")/mid"; done
SUM1=$(sha256sum "$(lab_wwwdir "$ID" rs1)/mid" | awk '{ print $1 }')
SUM2=$(sha256sum "$(lab_wwwdir "$ID" rs2)/mid" | awk '{ print $1 }')
write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -m -w 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -m -w 1"
SYNC=(--start-daemon master --start-daemon backup --mcast-interface int0 --syncid 7)
start_xlvsd "$ID" --iface ext0 --iface int0 --rules "$D/rules" "${SYNC[@]}" --sync-peer "$LAB_D2_INT_IP"
start_peer_xlvsd d2 --iface ext0 --iface int0 --rules "$D/rules" "${SYNC[@]}" --sync-peer "$LAB_DIR_INT_IP"

# keepalived with the documented configuration, our paths put in.
CONF=$TESTLIB_ROOT/docs/keepalived/nat-pair.conf
sed "s|/usr/sbin/xlvsadm|$XLVSADM --control $(xlvs_sock "$ID")|" "$CONF" >"$D/ka1.conf"
sed -e "s|/usr/sbin/xlvsadm|$XLVSADM --control $D/xlvsd-d2.sock|" -e 's/router_id xlvs-d1/router_id xlvs-d2/' \
  -e 's/priority 150/priority 100/' "$CONF" >"$D/ka2.conf"
ka() { # ROLE N
  ip netns exec "$(lab_ns "$ID" "$1")" keepalived -n -l -D -P -f "$D/ka$2.conf" -p "$D/ka$2.pid" \
    -r "$D/ka$2-vrrp.pid" </dev/null >"$D/ka$2.log" 2>&1 &
  bg_track $!
}
ka dir 1
ka d2 2
vrrp_state() { # ROLE
  local j
  if [ "$1" = d2 ]; then j=$(xadm_at d2 -L --daemon --json); else j=$(xadm "$ID" -L --daemon --json); fi
  printf '%s' "$j" | python3 -c 'import json,sys; v=json.load(sys.stdin)["vrrp"]; print(v["state"] if v else "none", v["since_ms"] if v else 0)'
}
end=$(($(date +%s) + 10))
while [ "$(date +%s)" -lt "$end" ]; do
  s1=$(vrrp_state dir) s2=$(vrrp_state d2)
  [[ $s1 == MASTER* && $s2 == BACKUP* ]] && break
  sleep 0.1
done
[[ $s1 == MASTER* && $s2 == BACKUP* ]] || fail "VRRP after 10 s: d1 '$s1', d2 '$s2'
d1's keepalived: $(grep -Ev 'gratuitous' "$D/ka1.log" | tail -n 12)
d2's keepalived: $(grep -Ev 'gratuitous' "$D/ka2.log" | tail -n 12)"
ip -n "$LAB_DIR_NS" -4 addr show dev ext0 | grep -q "$LAB_VIP/32" || fail "d1 has no VIP"
log "keepalived: d1 MASTER (holds the VIP and the gateway), d2 BACKUP; the notify reached both xlvsd"

# Captures: RSTs on the client side; frames d2 forwards to the realservers.
ip netns exec "$LAB_CLI_NS" timeout 40 tshark -i eth0 -f "tcp[tcpflags] & tcp-rst != 0" -w "$D/rst.pcap" >/dev/null 2>&1 &
RSTCAP=$!
bg_track $RSTCAP
ip netns exec "$LAB_SW_NS" timeout 40 tshark -i p-d2int -f "tcp and src host $LAB_CLIENT_IP" -c 1 \
  -w "$D/first.pcap" >/dev/null 2>&1 &
bg_track $!
sleep 1.5

log "100 downloads of 1.5 MB at 100 kB/s through the VIP"
mkdir -p "$D/dl"
urls=()
for i in $(seq 1 100); do urls+=(-o "$D/dl/$i" "http://$LAB_VIP/mid"); done
lab_exec "$ID" cli timeout 60 curl -sS --parallel --parallel-immediate --parallel-max 100 \
  --limit-rate 100k --max-time 50 "${urls[@]}" </dev/null >/dev/null 2>"$D/curl.err" &
DL=$!
bg_track $DL
n=0
for ((i = 0; i < 100; i++)); do
  n=$(xadm_at d2 -L -n -c | awk '$1 == "TCP" && $3 == "ESTABLISHED"' | wc -l)
  [ "$n" -ge 100 ] && break
  sleep 0.05
done
log "d2 holds $n established connections by sync"
sleep 2

log "d1 dies"
KA1=$(cat "$D/ka1.pid") KA1V=$(cat "$D/ka1-vrrp.pid")
t0=$(date +%s%3N)
lab_pair_kill_dir "$ID" || fail "lab_pair_kill_dir"
{ kill -KILL "$KA1V" "$KA1" "$XLVSD_PID" && wait "$XLVSD_PID"; } 2>/dev/null || true
XLVSD_PID=
# keepalived's own part: the kill to d2's MASTER notify.
end=$(($(date +%s) + 5))
st=
while [ "$(date +%s)" -lt "$end" ]; do
  read -r st since < <(vrrp_state d2)
  [ "$st" = MASTER ] && break
  sleep 0.05
done
[ "$st" = MASTER ] || fail "d2 is $st 5 s after the kill"
notify=$(($(date +%s%3N) - since - t0))

# The master comes back (preemption on, as in the documented file): its xlvsd pulls the
# table from d2; its track check fails until that is done, so keepalived lets it preempt
# only then; the downloads move back to it.
sleep 1.5
t_back=$(date +%s%3N)
for dev in ext0 int0; do ip netns exec "$LAB_DIR_NS" nft delete table netdev "dead_$dev"; done
# A restarted host no longer holds the addresses its killed keepalived left behind.
ip -n "$LAB_DIR_NS" addr del "$LAB_VIP/32" dev ext0 2>/dev/null || true
ip -n "$LAB_DIR_NS" addr del "$LAB_GW_IP/32" dev int0 2>/dev/null || true
mv "$XLVSD_LOG" "$D/xlvsd.before.log"
start_xlvsd "$ID" --iface ext0 --iface int0 --rules "$D/rules" "${SYNC[@]}" --sync-peer "$LAB_D2_INT_IP"
ka dir 1
end=$(($(date +%s) + 15))
s1=
while [ "$(date +%s)" -lt "$end" ]; do
  s1=$(vrrp_state dir)
  [[ $s1 == MASTER* ]] && break
  sleep 0.1
done
[[ $s1 == MASTER* ]] || fail "the returning master did not preempt: d1 '$s1', d2 '$(vrrp_state d2)'
d1's keepalived: $(grep -Ev 'gratuitous' "$D/ka1.log" | tail -n 12)"
J=$(xadm "$ID" -L --daemon --json)
read -r applied got < <(printf '%s' "$J" | python3 -c 'import json,sys; r=json.load(sys.stdin)["resync"]; print(r["applied_ms"], r["pull"]["received"])')
back=$(($(date +%s%3N) - ${s1#MASTER } - t_back))
log "d1 returned: resync of $got entries done $applied ms after its xlvsd started; MASTER again $back ms after its return"
[ "$got" -ge 100 ] || fail "the returning master pulled $got entries"
rc=0
wait "$DL" || rc=$?
TEST_BG_PIDS=("$PEER_PID")
[ "$rc" -eq 0 ] || fail "curl exit $rc: $(head -c 400 "$D/curl.err")"
bad=0
for i in $(seq 1 100); do
  s=$(sha256sum "$D/dl/$i" | awk '{ print $1 }')
  [ "$s" = "$SUM1" ] || [ "$s" = "$SUM2" ] || bad=$((bad + 1))
done
[ "$bad" = 0 ] || fail "$bad downloads arrived corrupted"
sleep 1
# `ip netns exec` execs timeout, which passes the signal on to tshark.
kill -INT "$RSTCAP" 2>/dev/null || true
wait "$RSTCAP" 2>/dev/null || true
rst=$(tshark -r "$D/rst.pcap" -Y "ip.src == $LAB_VIP" 2>/dev/null | wc -l)
[ "$rst" = 0 ] || fail "$rst RSTs from the VIP reached the client"
first=$(tshark -r "$D/first.pcap" -T fields -e frame.time_epoch 2>/dev/null | head -1)
[ -n "$first" ] || fail "no frame forwarded by d2"
take=$(python3 -c "print(round(float('$first') * 1000 - $t0))")
log "takeover: the new master forwarded its first frame $take ms after the kill (keepalived's MASTER notify: $notify ms); 100 downloads intact, 0 RSTs"
[ "$take" -le 1500 ] || fail "takeover took $take ms (goal < 1 s, allowed 1.5 s)"
pass
