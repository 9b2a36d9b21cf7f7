#!/usr/bin/env bash
# A bonded director (scripts/lib/bond.sh): xlvsd on the two members of an LACP bond
# (--bond bond0=m0,m1, 802.3ad, layer3+4), Open vSwitch's userspace LACP on both sides.
# - LACP negotiates, and stays negotiated with xlvsd attached and after the load: xlvs
#   passes LACPDUs (XDP_PASS) to the aggregation;
# - LVS-NAT (one-armed, on bond0): 1,000 requests, each a new connection, all answered;
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
lab_bond_up "$ID" || fail "lab_bond_up"
D=$(lab_dir "$ID")
bond_wait_lacp "$ID" 20 || fail "LACP did not negotiate: $(ovs_appctl "$ID" sw bond/show lag)"
log "LACP negotiated between the switch and the director's aggregation (members m0, m1)"
lab_nginx "$ID" rs1 80 && lab_nginx "$ID" rs2 80 || fail "nginx"
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
  ip -n "$LAB_DIR_NS" link show "$m" | grep -q "xdp" || fail "no XDP on $m"
done

BMAC=$(ip -n "$LAB_DIR_NS" link show bond0 | awk '/link\/ether/ { print $2 }')
# (A capture filter before the first -i applies to every interface.)
ip netns exec "$LAB_SW_NS" timeout 120 tshark -f "tcp and ether src $BMAC" -i pS0 -i pS1 -s 96 \
  -w "$D/members.pcap" >/dev/null 2>&1 &
CAP=$!
bg_track $CAP
sleep 1.5
sw_counts() { # PORT: "rx tx" packets of the switch's port
  ip -n "$LAB_SW_NS" -s -j link show "$1" | python3 -c '
import json, sys
s = json.load(sys.stdin)[0]["stats64"]
print(s["rx"]["packets"], s["tx"]["packets"])'
}
read -r s0rx0 s0tx0 < <(sw_counts pS0)
read -r s1rx0 s1tx0 < <(sw_counts pS1)

log "1000 requests, each a new connection, 8 at a time"
http_burst "$ID" "http://$BOND_VIP/" 1000 8 "$D/burst" || fail "1000 requests timed out"
check_burst "$D/burst" 1000 "1000 requests through the bond"
log "1000 answered: rs1=$BURST_RS1 rs2=$BURST_RS2"
xlvsd_alive "after the requests"
bond_lacp_ok "$ID" sw && bond_lacp_ok "$ID" dir ||
  fail "LACP no longer negotiated after the load: $(ovs_appctl "$ID" sw bond/show lag)"
sleep 1
kill "$CAP" 2>/dev/null || true
wait "$CAP" 2>/dev/null || true

W=$(xadm "$ID" --workers)
printf '%s\n' "$W" | sed -n '/^Ports:/,/^Connections/p' | sed 's/^/#   /'
for m in m0 m1; do
  read -r state rx sent < <(printf '%s\n' "$W" | sed -n '/^Ports:/,$p' | awk -v m="$m" '$1 == m { print $3, $4, $5 }')
  [ "$state" = up ] || fail "xlvs reports $m '$state'"
  [ "${rx:-0}" -ge 1000 ] && [ "${sent:-0}" -ge 1000 ] ||
    fail "member $m carried too little service traffic: RX ${rx:-?}, sent ${sent:-?}"
done
read -r s0rx s0tx < <(sw_counts pS0)
read -r s1rx s1tx < <(sw_counts pS1)
log "switch ports (frames from / to the director): pS0 $((s0rx - s0rx0)) / $((s0tx - s0tx0)), pS1 $((s1rx - s1rx0)) / $((s1tx - s1tx0))"
for v in $((s0rx - s0rx0)) $((s0tx - s0tx0)) $((s1rx - s1rx0)) $((s1tx - s1tx0)); do
  [ "$v" -ge 1000 ] || fail "a switch port carried under 1000 frames one way"
done

# Every flow on one member, the one layer3+4 names: members in the bond's order m0, m1,
# seen on the switch as pS0, pS1.
tshark -r "$D/members.pcap" -T fields -e frame.interface_name -e ip.src -e ip.dst \
  -e tcp.srcport -e tcp.dstport 2>/dev/null >"$D/flows.txt"
python3 - "$D/flows.txt" "$TESTLIB_ROOT/scripts/lib" <<'PY' || fail "the transmit hash check failed (above)"
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
print(f"# {len(flows)} flows from the director: {per['pS0']} on m0, {per['pS1']} on m1; "
      f"{len(split)} on both members, {len(wrong)} on the member the hash does not name")
if len(flows) < 1500 or split or wrong or min(per.values()) < 300:
    for k in split[:5]:
        print("# split:", k, flows[k])
    for w in wrong[:5]:
        print("# wrong:", w)
    sys.exit(1)
PY
passed=$(xadm "$ID" --xdp-stats | awk '$1 == "passed" { print $2 }')
log "the XDP program passed $passed frames to the kernel (LACPDUs, ARP)"
pass
