#!/usr/bin/env bash
# Stacked bonds on a real kernel: Debian's kernel under qemu, bond0 = active-backup over
# bondA (802.3ad over eth0, eth1) and bondB (802.3ad over eth2, eth3), one aggregate per
# switch (scripts/lib/bond.sh: OVS LACP bonds lagA and lagB); xlvsd inside the guest with
# just `--iface bond0` reads the tree from sysfs and attaches to the four leaves.
# - 200 NAT requests: answered, sent on bondA's members only (the active aggregate);
# - bondA's two links die (qemu's set_link: carrier lost in the guest); the kernel makes
#   bondB active, xlvs follows (it logs bondB as bond0's active member);
# - 200 more requests: answered, sent on bondB's members, none on bondA's.
# Functional only (TCG). Needs what bond_kernel_xlvs needs, and socat. Prints PASS/FAIL.
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

test_init bs
lab_bond_guest_up "$ID" stacked || fail "lab_bond_guest_up"
D=$(lab_dir "$ID")
lab_nginx "$ID" rs1 80 && lab_nginx "$ID" rs2 80 || fail "nginx"

cat >"$D/scenario.sh" <<SH
set -e
for b in bondA bondB; do
  /sbin/ip link add \$b type bond mode 802.3ad xmit_hash_policy layer3+4 lacp_rate fast miimon 100
done
for m in eth0 eth1; do /sbin/ip link set \$m down; /sbin/ip link set \$m master bondA; done
for m in eth2 eth3; do /sbin/ip link set \$m down; /sbin/ip link set \$m master bondB; done
/sbin/ip link set bond0 type bond mode active-backup miimon 100
for b in bondA bondB; do /sbin/ip link set \$b down; /sbin/ip link set \$b master bond0; done
/sbin/ip link set bond0 up
$(bond_guest_xlvsd bondA bondB)
echo "active \$(cat /sys/class/net/bond0/bonding/active_slave)"
wait_conns 200
ports BEFORE
echo FAILOVER-WAIT
wait_conns 400
sleep 1
echo "active \$(cat /sys/class/net/bond0/bonding/active_slave)"
ports AFTER
cat /tmp/xlvsd.log | grep -v 'worker\\|XDP attached' | tail -n 8
echo XLVS-END
SH

log "booting the guest (bond0 = active-backup over bondA(eth0, eth1) and bondB(eth2, eth3))"
KPEER_MONITOR="$D/monitor.sock" bond_guest_boot kt0,kt1,kt2,kt3
tr -d '\r' <"$D/console.log" | grep "bond bond" | sed 's/^/#   guest: /'
for b in "bondA: 802.3ad over eth0, eth1" "bondB: 802.3ad over eth2, eth3" "bond0: active-backup over bondA, bondB"; do
  grep -q "bond $b" "$D/console.log" || fail "xlvsd did not read bond $b from sysfs"
done
for ((i = 0; i < 200; i++)); do
  bond_lacp_ok "$ID" sw lagA && bond_lacp_ok "$ID" sw lagB && break
  sleep 0.1
done
bond_lacp_ok "$ID" sw lagA && bond_lacp_ok "$ID" sw lagB || fail "LACP not negotiated on both aggregates"

# ports SECTION: "eth0 eth1 eth2 eth3" frames sent, from the guest's PORTS-SECTION listing.
ports() {
  tr -d '\r' <"$D/console.log" | sed -n "/^PORTS-$1/,/^Connections/p" |
    awk '$1 ~ /^eth[0-3]$/ { s[$1] = $5 } END { print s["eth0"], s["eth1"], s["eth2"], s["eth3"] }'
}
log "200 requests with bondA active"
http_burst "$ID" "http://$BOND_VIP/" 200 4 "$D/burst1" || fail "200 requests timed out"
check_burst "$D/burst1" 200 "200 requests through bondA"
bond_guest_until FAILOVER-WAIT
read -r a0 a1 b0 b1 < <(ports BEFORE)
log "sent per member with bondA active: eth0 $a0, eth1 $a1, eth2 $b0, eth3 $b1"
[ "$a0" -gt 50 ] && [ "$a1" -gt 50 ] && [ "$b0" -eq 0 ] && [ "$b1" -eq 0 ] ||
  fail "with bondA active, xlvs should send on eth0 and eth1 only"

log "bondA's links die"
for n in n0 n1; do
  printf 'set_link %s off\n' "$n" | socat - "UNIX-CONNECT:$D/monitor.sock" >/dev/null ||
    fail "qemu monitor"
done
# The switch forgets lagA once LACP times out there (3 s at the fast rate).
for ((i = 0; i < 100; i++)); do
  bond_lacp_ok "$ID" sw lagA || break
  sleep 0.1
done
sleep 1
log "200 requests after the failover"
http_burst "$ID" "http://$BOND_VIP/" 200 4 "$D/burst2" || fail "200 requests timed out"
check_burst "$D/burst2" 200 "200 requests through bondB"
rc=0
wait "$GUEST" || rc=$?
[ "$rc" -eq 0 ] || fail "the guest failed (rc $rc): $(tail -n 30 "$D/console.log")"
tr -d '\r' <"$D/console.log" | sed -n '/^active/p;/^PORTS-AFTER/,/^XLVS-END/p' | sed 's/^/#   guest: /'
grep -q "^active bondB" <(tr -d '\r' <"$D/console.log") || fail "the kernel did not make bondB active"
grep -q "bond0: active member bondB" "$D/console.log" || fail "xlvs did not follow bond0 to bondB"
read -r c0 c1 d0 d1 < <(ports AFTER)
log "sent per member after the failover: eth0 +$((c0 - a0)), eth1 +$((c1 - a1)), eth2 +$((d0 - b0)), eth3 +$((d1 - b1))"
[ "$((d0 - b0))" -gt 50 ] && [ "$((d1 - b1))" -gt 50 ] || fail "xlvs did not send on bondB's members"
[ "$((c0 - a0 + c1 - a1))" -le 5 ] || fail "xlvs kept sending on bondA's dead members"
pass
