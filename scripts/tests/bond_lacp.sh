#!/usr/bin/env bash
# A bonded director (scripts/lib/bond.sh): xlvsd on the two members of an LACP bond
# (--bond bond0=m0,m1, 802.3ad, layer3+4), Open vSwitch's userspace LACP on both sides.
# - LACP negotiates, and stays negotiated with xlvsd attached and after the load: xlvs
#   passes LACPDUs (XDP_PASS) to the aggregation;
# - LVS-NAT (one-armed, on bond0), then LVS-DR: 1,000 requests each, each a new
#   connection, all answered;
# - both members carry service traffic in both directions (xlvs's per-port counters and
#   the switch's per-port counters);
# - every flow's frames leave the director on one member, the one the kernel's layer3+4
#   transmit hash names: checked for every flow in a capture on the switch's ports against
#   a computation of the hash written here (independent of xlvs's).
# Needs root, openvswitch-switch, tshark, nginx. Prints PASS/FAIL bond_lacp.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/bond.sh
. "$HERE/../lib/bond.sh"
command -v ovs-vswitchd >/dev/null || fail "openvswitch-switch not installed (scripts/setup.sh)"

test_init bl
bond_test_lab
cat >"$D/rules" <<R
-A -t $BOND_VIP:80 -s rr
-a -t $BOND_VIP:80 -r $BOND_RS1_IP:80 -m
-a -t $BOND_VIP:80 -r $BOND_RS2_IP:80 -m
R
start_xlvsd "$ID" --bond bond0=m0,m1 --bond-mode 802.3ad --xmit-hash layer3+4 \
  --rules "$D/rules" --pin-dir none
grep -q "bond bond0: 802.3ad over m0, m1 (xmit_hash_policy layer3+4)" "$XLVSD_LOG" ||
  fail "xlvsd did not report the bond: $(head -5 "$XLVSD_LOG")"
for m in m0 m1; do
  ip -n "$LAB_DIR_NS" link show "$m" | has "xdp" || fail "no XDP on $m"
done

BMAC=$(ip -n "$LAB_DIR_NS" link show bond0 | awk '/link\/ether/ { print $2 }')
sw_counts() { # PORT: "rx tx" packets of the switch's port
  ip -n "$LAB_SW_NS" -s -j link show "$1" | python3 -c '
import json, sys
s = json.load(sys.stdin)[0]["stats64"]
print(s["rx"]["packets"], s["tx"]["packets"])'
}
xlvs_port() { # MEMBER: "state rx sent" from xlvsadm --workers
  xadm "$ID" --workers | sed -n '/^Ports:/,$p' | awk -v m="$1" '$1 == m { print $3, $4, $5 }'
}

# round WHAT: 1000 requests (each a new connection) through the bond, then: LACP still
# negotiated, both members carried service traffic both ways (xlvs's and the switch's
# counters, over this round), every flow the director sent on one member, the one the
# layer3+4 hash names (members in the bond's order m0, m1, seen on the switch as pS0, pS1).
round() {
  local what=$1 m state rx sent rx0 sent0 v cap
  declare -A xrx xsent
  for m in m0 m1; do read -r state xrx[$m] xsent[$m] < <(xlvs_port "$m"); done
  read -r s0rx0 s0tx0 < <(sw_counts pS0)
  read -r s1rx0 s1tx0 < <(sw_counts pS1)
  # (A capture filter before the first -i applies to every interface.)
  ip netns exec "$LAB_SW_NS" timeout 120 tshark -f "tcp and ether src $BMAC" -i pS0 -i pS1 -s 96 \
    -w "$D/members-$what.pcap" >/dev/null 2>&1 &
  cap=$!
  bg_track $cap
  sleep 1.5
  log "$what: 1000 requests, each a new connection, 8 at a time"
  http_burst "$ID" "http://$BOND_VIP/" 1000 8 "$D/burst-$what" || fail "$what: 1000 requests timed out"
  check_burst "$D/burst-$what" 1000 "$what: 1000 requests through the bond"
  log "$what: 1000 answered: rs1=$BURST_RS1 rs2=$BURST_RS2"
  xlvsd_alive "after the requests"
  bond_lacp_ok "$ID" sw && bond_lacp_ok "$ID" dir ||
    fail "LACP no longer negotiated after the load: $(ovs_appctl "$ID" sw bond/show lag)"
  sleep 1
  kill "$cap" 2>/dev/null || true
  wait "$cap" 2>/dev/null || true
  for m in m0 m1; do
    read -r state rx sent < <(xlvs_port "$m")
    [ "$state" = up ] || fail "xlvs reports $m '$state'"
    rx=$((rx - xrx[$m])) sent=$((sent - xsent[$m]))
    log "$what: xlvs on $m: received $rx, sent $sent"
    [ "$rx" -ge 500 ] && [ "$sent" -ge 500 ] ||
      fail "$what: member $m carried too little service traffic: RX $rx, sent $sent"
  done
  read -r s0rx s0tx < <(sw_counts pS0)
  read -r s1rx s1tx < <(sw_counts pS1)
  log "$what: switch ports (frames from / to the director): pS0 $((s0rx - s0rx0)) / $((s0tx - s0tx0)), pS1 $((s1rx - s1rx0)) / $((s1tx - s1tx0))"
  for v in $((s0rx - s0rx0)) $((s0tx - s0tx0)) $((s1rx - s1rx0)) $((s1tx - s1tx0)); do
    [ "$v" -ge 500 ] || fail "$what: a switch port carried under 500 frames one way"
  done
  tshark -r "$D/members-$what.pcap" -T fields -e frame.interface_name -e ip.src -e ip.dst \
    -e tcp.srcport -e tcp.dstport 2>/dev/null >"$D/flows-$what.txt"
  python3 - "$D/flows-$what.txt" "$TESTLIB_ROOT/scripts/lib" "$what" <<'PY' || fail "$what: the transmit hash check failed (above)"
import sys

sys.path.insert(0, sys.argv[2])
from bondhash import layer34 as l34

flows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 5:
        continue
    iface, src, dst, sp, dp = f
    flows.setdefault((src, dst, int(sp), int(dp)), set()).add(iface)
split = [k for k, v in flows.items() if len(v) != 1]
wrong = []
per = {"pS0": 0, "pS1": 0}
for k, v in flows.items():
    if len(v) != 1:
        continue
    got = next(iter(v))
    per[got] += 1
    want = ["pS0", "pS1"][l34(*k) % 2]
    if got != want:
        wrong.append((k, got, want))
print(f"# {sys.argv[3]}: {len(flows)} flows from the director: {per['pS0']} on m0, {per['pS1']} on m1; "
      f"{len(split)} on both members, {len(wrong)} on the member the hash does not name")
if len(flows) < 900 or split or wrong or min(per.values()) < 300:
    for k in split[:5]:
        print("# split:", k, flows[k])
    for w in wrong[:5]:
        print("# wrong:", w)
    sys.exit(1)
PY
}

round NAT
xadm "$ID" --workers | sed -n '/^Ports:/,/^Connections/p' | sed 's/^/#   /'

# LVS-DR through the same bond: the realservers hold the VIP on lo (arp_ignore=1,
# arp_announce=2) and answer the client straight over the switch (an on-link route to its
# subnet); the director sends the client's frames on to them, MACs rewritten.
for r in rs1 rs2; do
  ns=$(lab_ns "$ID" "$r")
  ip -n "$ns" addr add "$BOND_VIP/32" dev lo
  ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  ip -n "$ns" route add 10.40.0.0/24 dev eth0
done
xadm "$ID" -C >/dev/null
xadm "$ID" -A -t "$BOND_VIP:80" -s rr >/dev/null
for rip in "$BOND_RS1_IP" "$BOND_RS2_IP"; do xadm "$ID" -a -t "$BOND_VIP:80" -r "$rip:80" -g >/dev/null; done
round DR
passed=$(xdp_stat "$ID" passed)
log "the XDP program passed $passed frames to the kernel (LACPDUs, ARP)"
pass
