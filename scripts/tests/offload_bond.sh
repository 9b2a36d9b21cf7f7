#!/usr/bin/env bash
# xlvs-test: alone
# The XDP fast path on a bond: a member dies under load and returns while the program
# forwards the flows (scripts/lib/bond.sh lab, LVS-NAT on bond0 over m0, m1, `xlvsd
# --offload`; GRO on on the switch's ports, so the director's veths take XDP redirects).
# 20 steady UDP flows (a datagram every 5 ms each, client to VIP:9000, NAT to the
# realservers): from its second datagram the program forwards each flow itself, on the
# member the bond's transmit hash picks, as the workers would. m1's link goes down, then
# comes back.
# - the program forwarded nearly all the datagrams, also while m1 was down;
# - the switch time: every flow the director sent on m1 in the second before its link died
#   reaches m0, its first frame there within 150 ms (goal < 100 ms) of the link going down
#   (the control thread gives the program the bond's usable members, `EGRESS`; before, an
#   offloaded flow kept going to the dead member until its connection ended);
# - after m1 returns, the program sends on it again.
# Runs alone (it measures a deadline). Prints PASS/FAIL offload_bond.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/bond.sh
. "$HERE/../lib/bond.sh"
command -v ovs-vswitchd >/dev/null || fail "openvswitch-switch not installed (scripts/setup.sh)"

test_init ob
bond_test_lab
write_rules "$D/rules" "-A -u $BOND_VIP:9000 -s rr" \
  "-a -u $BOND_VIP:9000 -r $BOND_RS1_IP:9000 -m" "-a -u $BOND_VIP:9000 -r $BOND_RS2_IP:9000 -m"
bond_udp_sinks 40
# A veth takes XDP redirects only with NAPI on its peer (GRO, or an XDP program).
for p in pS0 pS1; do
  ip netns exec "$LAB_SW_NS" ethtool -K "$p" gro on >/dev/null || fail "gro on $p"
done
start_xlvsd "$ID" --bond bond0=m0,m1 --rules "$D/rules" --pin-dir none --offload
has "XDP fast path on" <"$XLVSD_LOG" || fail "xlvsd did not turn the fast path on: $(tail -n 5 "$XLVSD_LOG")"

bond_capture 40
sleep 1.5
bond_udp_flows 2400
sleep 3
# 12 000 datagrams in 3 s; a sender slow to start (python in a namespace, the switch's
# userspace datapath setting up its flows) catches up on its schedule: up to 2 s more.
off0=$(xdp_stat "$ID" offloaded)
for _ in 1 2 3 4 5 6 7 8; do
  [ "$off0" -gt 4000 ] && break
  sleep 0.25
  off0=$(xdp_stat "$ID" offloaded)
done
[ "$off0" -gt 4000 ] || fail "the program forwarded only $off0 datagrams in the first 5 s"

log "m1 loses its link"
T0=$(date +%s%3N)
ip -n "$LAB_DIR_NS" link set m1 down
sleep 2.5
off1=$(xdp_stat "$ID" offloaded)
grep -q "bond0: member m1 lost carrier" "$XLVSD_LOG" || fail "xlvsd did not log m1's loss"

log "m1 comes back"
T1=$(date +%s%3N)
ip -n "$LAB_DIR_NS" link set m1 up
bond_wait_lacp "$ID" 15 || fail "LACP did not take m1 back: $(ovs_appctl "$ID" sw bond/show lag)"
wait "$UDP" || fail "the UDP sender failed: $(head -c 300 "$D/udp.err")"
sleep 0.5
off2=$(xdp_stat "$ID" offloaded)
bond_frames

read -r n med max on1 < <(bond_switch_time 17)
[ "$on1" -ge 3 ] || fail "only $on1 UDP flows were on m1 before its link died"
[ "$n" = "$on1" ] ||
  fail "$((on1 - n)) of the $on1 UDP flows on m1 never reached m0 after m1's link died (the fast path kept sending them to the dead member?)"
# What the program forwarded while m1 was down (2.5 s, 20 flows at 200/s: 10 000 sent).
down=$((off1 - off0))
[ "$down" -gt 8000 ] || fail "the program forwarded only $down datagrams in the 2.5 s m1 was down"
# m1 carries the fast path's frames again once LACP has it back.
again=$(awk -v t1="$T1" '$1 == "pS1" && $3 == 17 && $2 * 1000 > t1 { n++ } END { print n + 0 }' "$D/frames.txt")
[ "$again" -gt 100 ] || fail "m1 carried $again UDP frames since its return"
total=$((20 * 2400))
log "the program forwarded $off2 of the $total datagrams (all but each flow's first, and what reached workers); $down while m1 was down; $again on m1 after its return"
log "switch time with the fast path: the $n UDP flows on m1 moved to m0, first frame on m0 after the link went down: median $med ms, max $max ms (goal < 100 ms)"
[ "$max" -le 150 ] || fail "a UDP flow took $max ms to reach m0 (goal < 100 ms, allowed 150)"
pass
