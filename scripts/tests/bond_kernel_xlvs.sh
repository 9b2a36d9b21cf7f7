#!/usr/bin/env bash
# xlvsd on a real kernel bond: Debian's kernel under qemu (scripts/lib/kpeer.sh), bonding.ko's
# 802.3ad bond0 (layer3+4, lacp_rate fast) over two virtio NICs, and xlvsd inside the guest
# started with just `--iface bond0`: it must find the members, the mode and the hash policy
# in sysfs, attach to eth0 and eth1, keep LACP negotiated with the switch (Open vSwitch's
# userspace LACP on the host side, scripts/lib/bond.sh) and balance one-armed LVS-NAT:
# 200 requests from the client, all answered, both members transmitting. Functional only
# (TCG is slow). Needs root, qemu-system-x86, linux-image-amd64, busybox-static,
# openvswitch-switch, nginx. Prints PASS/FAIL bond_kernel_xlvs.
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
for m in eth0 eth1; do /sbin/ip link set \$m down; /sbin/ip link set \$m master bond0; done
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
# Until the host's 200 requests are in (bounded: 3 minutes), then 2 s for its checks.
i=0
while [ \$i -lt 1800 ]; do
  n=\$($XLVSADM --control /run/xlvsd.sock -L -n --stats | awk '\$1 == "TCP" { print \$3 }')
  [ "\${n:-0}" -ge 200 ] && break
  sleep 0.1; i=\$((i + 1))
done
sleep 2
$XLVSADM --control /run/xlvsd.sock -L -n --stats
$XLVSADM --control /run/xlvsd.sock --workers
echo "aggregator \$(cat /sys/class/net/bond0/bonding/ad_aggregator): eth0 \$(cat /sys/class/net/eth0/bonding_slave/ad_aggregator_id), eth1 \$(cat /sys/class/net/eth1/bonding_slave/ad_aggregator_id)"
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
grep -q "bond bond0: 802.3ad over eth0, eth1 (xmit_hash_policy layer3+4, from sysfs)" "$D/console.log" ||
  fail "xlvsd did not read the bond from sysfs"
grep -q "XDP attached to eth0" "$D/console.log" && grep -q "XDP attached to eth1" "$D/console.log" ||
  fail "xlvsd did not attach to both members"
for ((i = 0; i < 200; i++)); do bond_lacp_ok "$ID" sw && break; sleep 0.1; done
bond_lacp_ok "$ID" sw || fail "LACP not negotiated with the guest: $(ovs_appctl "$ID" sw bond/show lag)"
log "LACP negotiated between OVS and the guest's bond0, xlvsd attached to its members"

log "200 requests through the VIP, 4 at a time"
http_burst "$ID" "http://$BOND_VIP/" 200 4 "$D/burst" || fail "200 requests timed out"
check_burst "$D/burst" 200 "200 requests through the guest's bond"
log "200 answered: rs1=$BURST_RS1 rs2=$BURST_RS2"
bond_lacp_ok "$ID" sw || fail "LACP lost after the requests: $(ovs_appctl "$ID" sw bond/show lag)"
rc=0
wait "$GUEST" || rc=$?
[ "$rc" -eq 0 ] || fail "the guest failed (rc $rc): $(tail -n 30 "$D/console.log")"
sed -n '/XLVS-READY/,/XLVS-END/p' "$D/console.log" | sed -n '/^Ports:/,/^aggregator/p' | sed 's/^/#   guest: /'
for m in eth0 eth1; do
  sent=$(sed -n '/^Ports:/,$p' "$D/console.log" | tr -d '\r' | awk -v m="$m" '$1 == m { print $5; exit }')
  [ "${sent:-0}" -gt 50 ] || fail "member $m sent ${sent:-nothing} frames"
done
read -r agg a0 a1 < <(tr -d '\r' <"$D/console.log" | awk '/^aggregator/ { gsub(/[:,]/, ""); print $2, $4, $6 }')
[ "$agg" = "$a0" ] && [ "$agg" = "$a1" ] || fail "the guest's members are not both in the active aggregator ($agg: $a0, $a1)"
pass
