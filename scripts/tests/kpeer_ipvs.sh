#!/usr/bin/env bash
# A real kernel IPVS peer boots: Debian's kernel under qemu (scripts/lib/kpeer.sh), its NIC
# bridged into a test namespace, loads ip_vs, configures a service with ipvsadm, starts a
# sync master daemon, and reaches the host over the bridge. The peer later tests (connection
# sync, failover) build on. Prints the boot time.
# Needs root, qemu-system-x86, linux-image-amd64, busybox-static, ipvsadm.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/kpeer.sh
. "$HERE/../lib/kpeer.sh"

test_init kp
NS=xl-$ID-kp
D=$LAB_TMP_ROOT/xlvs-lab-$ID
mkdir -p "$D"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge stp_state 0
ip -n "$NS" addr add 10.30.0.1/24 dev br0
ip -n "$NS" link set br0 up
ip -n "$NS" tuntap add dev kp0 mode tap
ip -n "$NS" link set kp0 master br0

cat >"$D/scenario.sh" <<'SCENARIO'
/sbin/ip addr add 10.30.0.2/24 dev eth0
/sbin/ip link set eth0 up
ipvsadm -A -t 10.30.0.100:80 -s rr || exit 11
ipvsadm -a -t 10.30.0.100:80 -r 10.30.0.11:80 -m -w 2 || exit 12
ipvsadm --start-daemon master --mcast-interface eth0 --syncid 7 || exit 13
ipvsadm -L -n
ipvsadm -L --daemon
ping -c 1 -W 10 10.30.0.1 >/dev/null || exit 14
echo PEER-PING-OK
SCENARIO

t0=$(date +%s%N)
base=$(kpeer_base) || fail "building the guest's initramfs"
t1=$(date +%s%N)
log "initramfs $base ($(((t1 - t0) / 1000000)) ms, cached after the first build)"
rc=0
kpeer_boot "$NS" kp0 "$D/scenario.sh" "$D/console.log" 120 || rc=$?
t2=$(date +%s%N)
log "guest booted, ran its scenario and powered off in $(((t2 - t1) / 1000000)) ms"
C=$(tr -d '\r' <"$D/console.log")
[ "$rc" = 0 ] || fail "guest scenario failed (rc=$rc): $(tail -n 20 "$D/console.log")"
grep -q 'KPEER-READY' <<<"$C" || fail "the guest never loaded its modules: $C"
grep -Eq '^TCP  10\.30\.0\.100:80 rr' <<<"$C" || fail "kernel IPVS did not list the service: $C"
grep -Eq '^  -> 10\.30\.0\.11:80 +Masq +2 ' <<<"$C" || fail "kernel IPVS did not list the realserver: $C"
grep -q 'master sync daemon (mcast=eth0, syncid=7' <<<"$C" || fail "no sync master daemon: $C"
grep -q '^PEER-PING-OK' <<<"$C" || fail "the guest did not reach the host over the bridge: $C"
_TEST_DONE=1
echo "PASS $TEST_NAME"
