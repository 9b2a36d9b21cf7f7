#!/usr/bin/env bash
# Connection thresholds (NAT lab, rr; rs1 -x 2 -y 1, rs2 none): 4 idle
# connections held open (socat, SO_LINGER 0) split 2/2, which puts rs1 at
# its upper threshold: 20 new requests all go to rs2. The holders are
# killed (RST: their connections go to CLOSE, 10 s): rs1 stays overloaded
# while they are counted, and takes new connections again once they
# expired (0 < lower threshold 1): exactly two, as its finished requests
# (TIME_WAIT) count toward -x as well.
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL thresholds.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init th
web_lab_up nat 1
write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -m -w 1 -x 2 -y 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -m -w 1"
start_xlvsd "$ID" --iface ext0 --iface int0 --rules "$D/rules"
SVC="TCP $LAB_VIP:80"
S=$(xadm "$ID" -S -n)
grep -q -- "-r $LAB_RS1_IP:80 -m -w 1 -x 2 -y 1\$" <<<"$S" || fail "-S -n lacks the thresholds: $S"

# total DEST: ActiveConn + InActConn of DEST.
total() {
  local L a i
  L=$(xadm "$ID" -L -n)
  a=$(lvs_dest_field "$L" "$SVC" "$1:80" ActiveConn)
  i=$(lvs_dest_field "$L" "$SVC" "$1:80" InActConn)
  echo $((a + i))
}

# Holders: idle connections that end by themselves after 50 s. socat
# connects (SO_LINGER 0) and execs sleep on the socket (nofork: no other
# process holds it), so killing that pid resets the connection. `ip netns
# exec` (not the lab_exec function) so that $! is that very process.
HOLDERS=()
for ((h = 0; h < 4; h++)); do
  ip netns exec "$(lab_ns "$ID" cli)" socat "TCP:$LAB_VIP:80,linger=0" EXEC:"sleep 50",nofork </dev/null >/dev/null 2>>"$D/holders.err" &
  HOLDERS+=($!)
  bg_track $!
  # One at a time, so rr alternates: wait until the listing counts it.
  for ((i = 0; i < 50; i++)); do
    [ $(($(total "$LAB_RS1_IP") + $(total "$LAB_RS2_IP"))) -ge $((h + 1)) ] && break
    sleep 0.1
  done
done
t1=$(total "$LAB_RS1_IP") t2=$(total "$LAB_RS2_IP")
[ "$t1" = 2 ] && [ "$t2" = 2 ] || fail "4 holders: rs1=$t1 rs2=$t2 connections, want 2/2 (holder errors: $(head -c 300 "$D/holders.err"))"

log "rs1 at its upper threshold: 20 requests"
expect_all_on rs2 20 "20 requests with rs1 at -x 2"

log "killing the holders (RST)"
for p in "${HOLDERS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
for p in "${HOLDERS[@]}"; do wait "$p" 2>/dev/null || true; done
TEST_BG_PIDS=()
expect_all_on rs2 10 "10 requests while rs1's reset connections are still counted"

# CLOSE lasts 10 s; the table is swept every second.
for ((i = 0; i < 30; i++)); do
  [ "$(total "$LAB_RS1_IP")" = 0 ] && break
  sleep 0.5
done
[ "$(total "$LAB_RS1_IP")" = 0 ] || fail "rs1's reset connections still counted after 15 s; listing:
$(xadm "$ID" -L -n)"
http_burst "$ID" "http://$LAB_VIP/" 20 1 "$D/burst" || fail "20 requests: timed out"
check_burst "$D/burst" 20 "20 requests after the holders expired"
# rr gives rs1 every other request until it is back at -x 2: finished
# requests stay counted (TIME_WAIT, inactive), and IPVS compares
# active + inactive with the thresholds. So exactly 2 of 20.
[ "$BURST_RS1" -eq 2 ] || fail "rs1 below its lower threshold: got $BURST_RS1 of 20 requests (rs2=$BURST_RS2), want exactly 2 (then -x 2 again)"
pass
