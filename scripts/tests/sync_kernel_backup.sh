#!/usr/bin/env bash
# Connection sync, master side, against a real Linux kernel backup: xlvsd on the NAT lab's
# director runs `--start-daemon master --mcast-interface int0 --syncid 9`; Debian's 6.1
# kernel under qemu (scripts/lib/kpeer.sh), its NIC on the realserver segment, runs
# `ipvsadm --start-daemon backup --mcast-interface eth0 --syncid 9` with the same virtual
# service. After connections through xlvs, the kernel's `ipvsadm -L -n -c` lists them with
# xlvs's realserver and state: first sync v1 (the default), then, xlvsd restarted with
# --sync-version 0, v0.
# Needs root, qemu-system-x86, linux-image-amd64, busybox-static, ipvsadm.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/kpeer.sh
. "$HERE/../lib/kpeer.sh"

test_init sk
web_lab_up nat 1
start_rr_xlvsd
xadm "$ID" --start-daemon master --mcast-interface "$LAB_DIR_INT" --syncid 9 >/dev/null
ip -n "$LAB_SW_NS" tuntap add dev kp0 mode tap
ip -n "$LAB_SW_NS" link set kp0 master br0
ip -n "$LAB_SW_NS" link set kp0 up

cat >"$D/scenario.sh" <<SCENARIO
/sbin/ip link set eth0 up
/sbin/ip addr add 10.10.0.61/24 dev eth0
ipvsadm -A -t $LAB_VIP:80 -s rr || exit 11
ipvsadm -a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -m || exit 12
ipvsadm -a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -m || exit 12
ipvsadm --start-daemon backup --mcast-interface eth0 --syncid 9 || exit 13
echo GUEST-BACKUP-READY
# The host makes its connections now; xlvs sends a partial buffer after 2 s.
sleep 12
echo GUEST-CONNS-BEGIN
ipvsadm -L -n -c
echo GUEST-CONNS-END
SCENARIO

kpeer_boot "$LAB_SW_NS" kp0 "$D/scenario.sh" "$D/console.log" 150 &
KP=$!
bg_track $KP
for ((i = 0; i < 1200; i++)); do
  grep -q GUEST-BACKUP-READY "$D/console.log" 2>/dev/null && break
  kill -0 "$KP" 2>/dev/null || break
  sleep 0.1
done
grep -q GUEST-BACKUP-READY "$D/console.log" || fail "the guest's backup never started: $(tail -n 20 "$D/console.log")"
ports=()
for i in $(seq 1 6); do
  p=$((42000 + i))
  lab_exec "$ID" cli curl -sS --max-time 3 --local-port "$p" -o /dev/null "http://$LAB_VIP/" || fail "curl $i"
  ports+=("$p")
done
X=$(xadm "$ID" -L -n -c)
# Then sync_version 0, the kernel's old format, to the same kernel backup.
stop_xlvsd_checked
mv "$XLVSD_LOG" "$D/xlvsd.v1.log"
start_rr_xlvsd --start-daemon master --mcast-interface "$LAB_DIR_INT" --syncid 9 --sync-version 0
for i in $(seq 1 4); do
  p=$((42100 + i))
  lab_exec "$ID" cli curl -sS --max-time 3 --local-port "$p" -o /dev/null "http://$LAB_VIP/" || fail "curl (v0) $i"
  ports+=("$p")
done
X="$X
$(xadm "$ID" -L -n -c)"
grep -q "GUEST-CONNS-BEGIN" "$D/console.log" && fail "the guest listed its connections before the v0 phase ended (slow host)"
rc=0
wait "$KP" || rc=$?
TEST_BG_PIDS=()
C=$(tr -d '\r' <"$D/console.log")
[ "$rc" = 0 ] || fail "guest scenario failed: $(printf '%s\n' "$C" | grep -v '^\[' | tail -n 15)"
G=$(printf '%s\n' "$C" | sed -n '/GUEST-CONNS-BEGIN/,/GUEST-CONNS-END/p' | awk '$1 == "TCP"')
log "xlvs master: $(printf '%s\n' "$X" | grep -c '^TCP' || true) connections; the kernel backup lists $(printf '%s\n' "$G" | grep -c . || true)"
for p in "${ports[@]}"; do
  # xlvs's realserver for this client port, and the kernel backup's.
  ours=$(printf '%s\n' "$X" | awk -v c="$LAB_CLIENT_IP:$p" '$1 == "TCP" && $4 == c && !n++ { print $6 }')
  theirs=$(printf '%s\n' "$G" | awk -v c="$LAB_CLIENT_IP:$p" '$1 == "TCP" && $4 == c && !n++ { print $6 " " $5 }')
  [ -n "$theirs" ] || fail "the kernel backup lacks client port $p:
$G"
  [ "${theirs%% *}" = "${ours:-${theirs%% *}}" ] || fail "port $p: xlvs chose $ours, the kernel backup has ${theirs%% *}"
  [ "${theirs#* }" = "$LAB_VIP:80" ] || fail "port $p: virtual ${theirs#* }"
done
pass
