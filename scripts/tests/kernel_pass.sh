#!/usr/bin/env bash
# Traffic that is not for a virtual service reaches the director's kernel
# while xlvsd runs (NAT lab, rr service on VIP:80): ping of the director and
# of the VIP, TCP to a director listener on 192.0.2.1:2222 and on the VIP
# at a non-service port (2223), ping of int0 from a realserver; HTTP through
# the VIP still works; `xlvsadm --xdp-stats` shows passed > 0, steered > 0.
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL kernel_pass.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init kp
lab_nat_up "$ID" 1 || fail "lab_nat_up"
D=$(lab_dir "$ID")
DIR_NS=$(lab_ns "$ID" dir)
lab_nginx "$ID" rs1 80 || fail "lab_nginx rs1"
lab_nginx "$ID" rs2 80 || fail "lab_nginx rs2"

# Director-local TCP listeners (killed by lab_down).
setsid -f ip netns exec "$DIR_NS" socat "TCP4-LISTEN:2222,bind=$LAB_DIR_IP,fork,reuseaddr" \
  "SYSTEM:echo director" </dev/null >>"$D/socat-2222.log" 2>&1 || fail "cannot start listener :2222"
setsid -f ip netns exec "$DIR_NS" socat "TCP4-LISTEN:2223,bind=$LAB_VIP,fork,reuseaddr" \
  "SYSTEM:echo vip" </dev/null >>"$D/socat-2223.log" 2>&1 || fail "cannot start listener :2223"
lab_wait_port "$ID" dir 2222 tcp || fail "listener :2222 not up"
lab_wait_port "$ID" dir 2223 tcp || fail "listener :2223 not up"

write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -m -w 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -m -w 1"
start_xlvsd "$ID" --iface ext0 --iface int0 --rules "$D/rules"

must() { # DESC CMD...
  local desc=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" -eq 0 ] || fail "$desc (rc=$rc): $(printf '%s' "$out" | tail -n 3 | tr '\n' '|')"
}

# tcp_get IP PORT: connect from the client, print what the server sends.
tcp_get() {
  lab_exec "$ID" cli timeout 10 socat -t 5 -T 8 - "TCP4:$1:$2,connect-timeout=5" </dev/null
}

must "client ping director $LAB_DIR_IP" lab_exec "$ID" cli timeout 15 ping -c3 -W2 "$LAB_DIR_IP"
must "client ping VIP $LAB_VIP" lab_exec "$ID" cli timeout 15 ping -c3 -W2 "$LAB_VIP"
must "rs1 ping director int0 $LAB_DIR_INT_IP" lab_exec "$ID" rs1 timeout 15 ping -c3 -W2 "$LAB_DIR_INT_IP"

rc=0
got=$(tcp_get "$LAB_DIR_IP" 2222 2>&1) || rc=$?
[ "$got" = director ] || fail "TCP to director $LAB_DIR_IP:2222: got $(printf %q "$got") (rc=$rc), want director"
rc=0
got=$(tcp_get "$LAB_VIP" 2223 2>&1) || rc=$?
[ "$got" = vip ] || fail "TCP to VIP non-service port $LAB_VIP:2223: got $(printf %q "$got") (rc=$rc), want vip"

http_burst "$ID" "http://$LAB_VIP/" 20 4 "$D/burst" || fail "20 requests: timed out"
check_burst "$D/burst" 20 "20 HTTP requests through the VIP"
[ "$BURST_RS1" -gt 0 ] && [ "$BURST_RS2" -gt 0 ] || fail "rr: rs1=$BURST_RS1 rs2=$BURST_RS2 of 20"
xlvsd_alive "after the checks"

S=$(xadm "$ID" --xdp-stats)
log "xdp-stats: $(printf '%s' "$S" | tr '\n' ' ')"
for k in steered passed; do
  v=$(printf '%s\n' "$S" | awk -v k="$k" '$1 == k && !n++ { print $2 }')
  [[ $v =~ ^[0-9]+$ ]] || fail "xlvsadm --xdp-stats has no numeric '$k' line:
$S"
  [ "$v" -gt 0 ] || fail "xlvsadm --xdp-stats: $k is 0, want > 0:
$S"
done

pass
