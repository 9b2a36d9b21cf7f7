#!/usr/bin/env bash
# Configuration drift between two directors (DR lab plus d2): d2's table lacks rs2. The
# connections d1 sends to rs2 reach d2 by sync but cannot bind there: d2 reports them by
# service and realserver in `-L --daemon --json` ("unbound"), in /metrics
# (xlvs_sync_unbound_connections) and in its log; those to rs1 bind.
# Needs root, curl, python3 and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init sd
web_lab_up dr 1
lab_add_dir2 "$ID" || fail "lab_add_dir2"
write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -g -w 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -g -w 1"
write_rules "$D/rules2" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -g -w 1"
P=$((RANDOM % 800 + 100))
M2=127.0.0.1:8$P
SYNC=(--mcast-interface eth0 --syncid 2)
start_xlvsd "$ID" --iface eth0 --rules "$D/rules" --start-daemon master "${SYNC[@]}"
start_peer_xlvsd d2 --iface eth0 --rules "$D/rules2" --metrics "$M2" --start-daemon backup "${SYNC[@]}"
for i in $(seq 1 10); do
  lab_exec "$ID" cli curl -sS --max-time 3 --local-port $((61500 + i)) -o /dev/null "http://$LAB_VIP/" || fail "curl $i"
done
to_rs2=$(xadm "$ID" -L -n -c | awk -v d="$LAB_RS2_IP:80" '$1 == "TCP" && $6 == d' | wc -l)
[ "$to_rs2" -ge 1 ] || fail "d1 sent nothing to rs2"
want="TCP $LAB_VIP:80|$LAB_RS2_IP:80|$to_rs2"
got=
for ((i = 0; i < 40; i++)); do
  got=$(xadm_at d2 -L --daemon --json | python3 -c 'import json,sys; print(" ".join("%s|%s|%d" % (u["service"], u["realserver"], u["connections"]) for u in json.load(sys.stdin)["unbound"]))')
  [ "$got" = "$want" ] && break
  sleep 0.05
done
[ "$got" = "$want" ] || fail "d2's unbound: '$got', want '$want'"
MET=$(lab_exec "$ID" d2 curl -sS --max-time 5 "http://$M2/metrics") || fail "metrics"
printf '%s\n' "$MET" | has "^xlvs_sync_unbound_connections{service=\"TCP $LAB_VIP:80\",realserver=\"$LAB_RS2_IP:80\"} $to_rs2$" \
  || fail "metrics: $(printf '%s\n' "$MET" | grep unbound)"
grep -q "config drift: $to_rs2 connection" "$(lab_dir "$ID")/xlvsd-d2.log" || fail "no drift in d2's log"
log "d2 reports $to_rs2 connection(s) to $LAB_RS2_IP:80, which its table lacks"
pass
