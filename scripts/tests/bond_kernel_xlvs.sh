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
/sbin/ip addr add $BOND_GW/24 dev bond0
/sbin/ip addr add $BOND_DIP/24 dev bond0
/sbin/ip addr add $BOND_VIP/32 dev bond0
mkdir -p /run /etc/xlvs
cat >/etc/xlvs/rules <<R
-A -t $BOND_VIP:80 -s rr
-a -t $BOND_VIP:80 -r $BOND_RS1_IP:80 -m
-a -t $BOND_VIP:80 -r $BOND_RS2_IP:80 -m
R
i=0
while [ \$i -lt 600 ] && [ "\$(cat /sys/class/net/bond0/bonding/ad_partner_mac)" = 00:00:00:00:00:00 ]; do
  sleep 0.1; i=\$((i + 1))
done
echo "LACP partner \$(cat /sys/class/net/bond0/bonding/ad_partner_mac)"
$XLVSD --iface bond0 --rules /etc/xlvs/rules --pin-dir none --control /run/xlvsd.sock >/tmp/xlvsd.log 2>&1 &
i=0
while [ \$i -lt 1200 ] && ! grep -q 'xlvsd: ready' /tmp/xlvsd.log; do sleep 0.1; i=\$((i + 1)); done
cat /tmp/xlvsd.log
grep -q 'xlvsd: ready' /tmp/xlvsd.log
echo XLVS-READY
# wait_conns N: until the service has had N connections (bounded: 3 minutes).
wait_conns() {
  i=0
  while [ \$i -lt 1800 ]; do
    n=\$($XLVSADM --control /run/xlvsd.sock -L -n --stats | awk '\$1 == "TCP" { print \$3 }')
    [ "\${n:-0}" -ge \$1 ] && return 0
    sleep 0.1; i=\$((i + 1))
  done
  return 1
}
ports() { echo "PORTS-\$1"; $XLVSADM --control /run/xlvsd.sock --workers | sed -n '/^Ports:/,/^Connections/p'; }
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

# virtio_net takes XDP only without the host's checksum and segmentation offloads, and an
# 802.3ad member must report full duplex (else it never aggregates, nor sends a LACPDU).
log "booting the guest (bond0 over eth0, eth1; xlvsd --iface bond0)"
KPEER_MODULES="virtio_pci virtio_net bonding" KPEER_BINS="$XLVSD $XLVSADM" KPEER_MEM=1024 \
  KPEER_NIC_OPTS="guest_csum=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off,speed=10000,duplex=full" \
  kpeer_boot "$LAB_SW_NS" kt0,kt1 "$D/scenario.sh" "$D/console.log" 250 &
GUEST=$!
bg_track $GUEST
for ((i = 0; i < 3000; i++)); do
  grep -q XLVS-READY "$D/console.log" 2>/dev/null && break
  kill -0 "$GUEST" 2>/dev/null || break
  sleep 0.1
done
grep -q XLVS-READY "$D/console.log" || fail "xlvsd did not get ready in the guest: $(tail -n 25 "$D/console.log")"
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
# until MARK: waits (bounded) for the guest's console to show MARK.
until_mark() {
  for ((i = 0; i < 600; i++)); do
    grep -q "^$1" <(tr -d '\r' <"$D/console.log") && return 0
    sleep 0.1
  done
  fail "the guest did not get to $1: $(tail -n 20 "$D/console.log")"
}
burst 1 "with eth0 alone"
until_mark JOINED
for ((i = 0; i < 300; i++)); do bond_lacp_ok "$ID" sw && break; sleep 0.1; done
bond_lacp_ok "$ID" sw || fail "LACP did not take eth1: $(ovs_appctl "$ID" sw bond/show lag)"
log "eth1 joined bond0 and LACP"
sleep 1
burst 2 "after eth1 joined"
until_mark LEFT
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
