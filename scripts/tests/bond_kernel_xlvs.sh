#!/usr/bin/env bash
# xlvsd on a real kernel bond: Debian's kernel under qemu (scripts/lib/kpeer.sh), bonding.ko's
# 802.3ad bond0 (layer3+4, lacp_rate fast) over virtio NICs, and xlvsd inside the guest
# started with just `--iface bond0`: it must find the members, the mode and the hash policy
# in sysfs, keep LACP negotiated with the switch (Open vSwitch's userspace LACP on the host
# side, scripts/lib/bond.sh), balance one-armed LVS-NAT, and follow the membership:
# - bond0 starts with eth0 alone: 100 requests, all answered, sent on eth0;
# - eth1 joins while xlvsd runs: xlvsd binds it (a spare socket) and attaches to it; once
#   LACP has it, 100 requests, all answered, both members transmitting;
# - eth1 leaves: 100 requests, all answered, eth1 sends no more.
# Functional only (TCG is slow). Needs root, qemu-system-x86, linux-image-amd64,
# busybox-static, openvswitch-switch, nginx. Prints PASS/FAIL bond_kernel_xlvs.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/kpeer.sh
. "$HERE/../lib/kpeer.sh"
# shellcheck source=../lib/bond.sh
. "$HERE/../lib/bond.sh"
command -v ovs-vswitchd >/dev/null || fail "openvswitch-switch not installed (scripts/setup.sh)"
[ -x "$XLVSD" ] && [ -x "$XLVSADM" ] || fail "build target/release/xlvsd and xlvsadm first"

test_init bg
lab_bond_guest_up "$ID" || fail "lab_bond_guest_up"
D=$(lab_dir "$ID")
lab_nginx "$ID" rs1 80 && lab_nginx "$ID" rs2 80 || fail "nginx"

cat >"$D/scenario.sh" <<SH
set -e
/sbin/ip link set bond0 type bond mode 802.3ad xmit_hash_policy layer3+4 lacp_rate fast miimon 100
/sbin/ip link set eth0 down; /sbin/ip link set eth0 master bond0
/sbin/ip link set bond0 up
$(bond_guest_xlvsd bond0)
wait_conns 100
ports ONE
/sbin/ip link set eth1 down; /sbin/ip link set eth1 master bond0
echo JOINED
wait_conns 200
ports TWO
/sbin/ip link set eth1 nomaster
sleep 1
echo LEFT
wait_conns 300
sleep 1
ports THREE
grep 'bond\|added\|XDP attached to eth1' /tmp/xlvsd.log | grep -v 'bond bond0:'
echo "aggregator \$(cat /sys/class/net/bond0/bonding/ad_aggregator): eth0 \$(cat /sys/class/net/eth0/bonding_slave/ad_aggregator_id)"
echo XLVS-END
SH

log "booting the guest (bond0 over eth0, eth1; xlvsd --iface bond0)"
bond_guest_boot kt0,kt1
sed -n '/LACP partner/,/XLVS-READY/p' "$D/console.log" | sed 's/^/#   guest: /'
grep -q "bond bond0: 802.3ad over eth0 (xmit_hash_policy layer3+4, from sysfs)" "$D/console.log" ||
  fail "xlvsd did not read the bond from sysfs"
grep -q "XDP attached to eth0" "$D/console.log" || fail "xlvsd did not attach to eth0"
for ((i = 0; i < 200; i++)); do bond_lacp_ok "$ID" sw lag 1 && break; sleep 0.1; done
bond_lacp_ok "$ID" sw lag 1 || fail "LACP not negotiated with the guest: $(ovs_appctl "$ID" sw bond/show lag)"
log "LACP negotiated between OVS and the guest's bond0 (eth0), xlvsd attached to it"

# burst N WHAT: 100 requests, all answered.
burst() {
  http_burst "$ID" "http://$BOND_VIP/" 100 4 "$D/burst$1" || fail "100 requests timed out"
  check_burst "$D/burst$1" 100 "100 requests $2"
  log "100 requests $2: rs1=$BURST_RS1 rs2=$BURST_RS2"
}
burst 1 "with eth0 alone"
bond_guest_until JOINED
for ((i = 0; i < 300; i++)); do bond_lacp_ok "$ID" sw && break; sleep 0.1; done
bond_lacp_ok "$ID" sw || fail "LACP did not take eth1: $(ovs_appctl "$ID" sw bond/show lag)"
log "eth1 joined bond0 and LACP"
sleep 1
burst 2 "after eth1 joined"
bond_guest_until LEFT
burst 3 "after eth1 left"
rc=0
wait "$GUEST" || rc=$?
[ "$rc" -eq 0 ] || fail "the guest failed (rc $rc): $(tail -n 30 "$D/console.log")"
tr -d '\r' <"$D/console.log" | sed -n '/^PORTS-ONE/,/^aggregator/p' | sed 's/^/#   guest: /'
# sent SECTION MEMBER: frames MEMBER had sent at the guest's PORTS-SECTION listing.
sent() {
  tr -d '\r' <"$D/console.log" | sed -n "/^PORTS-$1/,/^Connections/p" | awk -v m="$2" '$1 == m { print $5 }'
}
[ "$(sent ONE eth0)" -gt 100 ] || fail "eth0 sent $(sent ONE eth0) frames for the first 100 requests"
[ -z "$(sent ONE eth1)" ] || fail "eth1 had a port before it joined"
grep -q "bond0: eth1 joined the bond" "$D/console.log" || fail "xlvsd did not see eth1 join"
grep -q "XDP attached to eth1" "$D/console.log" || fail "xlvsd did not attach to eth1"
grep -q "(added)" "$D/console.log" || fail "no worker was added for eth1"
e1=$(sent TWO eth1)
[ "${e1:-0}" -gt 50 ] || fail "eth1 sent ${e1:-nothing} frames after it joined"
[ "$(($(sent TWO eth0) - $(sent ONE eth0)))" -gt 50 ] || fail "eth0 sent nothing after eth1 joined"
grep -q "bond0: eth1 left the bond" "$D/console.log" || fail "xlvsd did not see eth1 leave"
[ "$(sent THREE eth1)" = "$e1" ] || fail "eth1 still sent after it left ($e1 -> $(sent THREE eth1))"
log "eth1 joined: it sent $e1 frames for the second 100 requests; after it left, none"
pass
