#!/usr/bin/env bash
# Connection sync, backup side, against a real Linux kernel master: Debian's 6.1 kernel
# under qemu (scripts/lib/kpeer.sh), its NIC on the NAT lab's realserver segment, runs
# kernel IPVS LVS-NAT with a client and a realserver in namespaces of its own, and
# `ipvsadm --start-daemon master --mcast-interface eth0 --syncid 7`. xlvsd on the lab's
# director runs `xlvsd --start-daemon backup --mcast-interface int0 --syncid 7`: its `-L -n -c`
# lists every connection the kernel's `ipvsadm -L -n -c` listed (client, virtual and
# realserver address and port, state). Then datagrams from a peer on the segment with the
# wrong syncid, truncated, or with a size field that lies change nothing and are counted by
# reason in /metrics.
# Needs root, qemu-system-x86, linux-image-amd64, busybox-static, ipvsadm.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/kpeer.sh
. "$HERE/../lib/kpeer.sh"

test_init sb
web_lab_up nat 1
METRICS=127.0.0.1:9$((RANDOM % 900 + 100))
# The backup from xlvsd's own options (as ipvsadm's).
start_rr_xlvsd --metrics "$METRICS" --start-daemon backup --mcast-interface "$LAB_DIR_INT" --syncid 7
# The guest's NIC: a tap on the realserver segment's bridge.
ip -n "$LAB_SW_NS" tuntap add dev kp0 mode tap
ip -n "$LAB_SW_NS" link set kp0 master br0
ip -n "$LAB_SW_NS" link set kp0 up

cat >"$D/scenario.sh" <<'SCENARIO'
ip=/sbin/ip
$ip link set eth0 up
$ip addr add 10.10.0.60/24 dev eth0
# A client and a realserver of the guest's own, and kernel IPVS LVS-NAT between them.
for n in c r; do
  $ip netns add $n
  $ip link add v$n type veth peer name eth0 netns $n
  $ip -n $n link set lo up
  $ip -n $n link set eth0 up
  $ip link set v$n up
done
$ip addr add 10.77.1.1/24 dev vc
$ip addr add 10.77.2.1/24 dev vr
$ip -n c addr add 10.77.1.2/24 dev eth0
$ip -n r addr add 10.77.2.2/24 dev eth0
$ip -n c route add default via 10.77.1.1
$ip -n r route add default via 10.77.2.1
$ip addr add 10.77.0.100/32 dev lo
echo 1 > /proc/sys/net/ipv4/ip_forward
ipvsadm -A -t 10.77.0.100:80 -s rr || exit 11
ipvsadm -a -t 10.77.0.100:80 -r 10.77.2.2:80 -m || exit 12
ipvsadm --start-daemon master --mcast-interface eth0 --syncid 7 || exit 13
mkdir -p /tmp/www && echo hi > /tmp/www/index.html
$ip netns exec r busybox httpd -p 80 -h /tmp/www
sleep 1
for i in 1 2 3 4 5 6; do
  $ip netns exec c busybox wget -q -O /dev/null http://10.77.0.100/ || exit 14
done
# The kernel sends a partial buffer after 2 s.
sleep 3
echo GUEST-CONNS-BEGIN
ipvsadm -L -n -c
echo GUEST-CONNS-END
SCENARIO

rc=0
kpeer_boot "$LAB_SW_NS" kp0 "$D/scenario.sh" "$D/console.log" 150 || rc=$?
C=$(tr -d '\r' <"$D/console.log")
[ "$rc" = 0 ] || fail "guest scenario failed: $(printf '%s\n' "$C" | grep -v '^\[' | tail -n 15)"
G=$(printf '%s\n' "$C" | sed -n '/GUEST-CONNS-BEGIN/,/GUEST-CONNS-END/p' | awk '$1 == "TCP"')
n=$(printf '%s\n' "$G" | grep -c . || true)
[ "$n" -ge 6 ] || fail "the kernel listed $n connections: $C"
sleep 0.5
X=$(xadm "$ID" -L -n -c)
log "kernel master: $n connections; xlvs backup lists $(printf '%s\n' "$X" | grep -c '^TCP' || true)"
# ipvsadm -L -n -c: pro expire state source virtual destination.
while read -r pro _ state src virt dst; do
  printf '%s\n' "$X" | awk -v s="$state" -v c="$src" -v v="$virt" -v d="$dst" '
    $1 == "TCP" && $3 == s && $4 == c && $5 == v && $6 == d { f = 1 } END { exit !f }' \
    || fail "xlvs backup lacks $pro $state $src $virt $dst:
$X"
done <<<"$G"
# Bad datagrams from rs1 (on the segment): the wrong syncid, 3 bytes, a lying size field.
# -L -n -c without its expire column (it counts down).
conns() { xadm "$ID" -L -n -c | awk '{ $2 = ""; print }'; }
before=$(conns)
lab_exec "$ID" rs1 python3 - <<'PY'
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.10.0.11"))
ip = socket.inet_aton
entry = struct.pack("!BBHIHHHHII4s4s4s", 0, 6, 36, 0, 1, 51000, 80, 80, 0, 900,
                    ip("10.77.1.2"), ip("10.77.0.100"), ip("10.77.2.2"))
hdr = lambda syncid, size: struct.pack("!BBHBbH", 0, syncid, size, 1, 1, 0)
s.sendto(hdr(3, 8 + len(entry)) + entry, ("224.0.0.81", 8848))   # wrong syncid
s.sendto(b"\x00\x07\x00", ("224.0.0.81", 8848))                  # short
s.sendto(hdr(7, 200) + entry, ("224.0.0.81", 8848))               # size field lies
PY
sleep 0.5
[ "$(conns)" = "$before" ] || fail "bad datagrams changed the table"
M=$(lab_exec "$ID" dir curl -sS --max-time 5 "http://$METRICS/metrics") || fail "metrics scrape"
for r in wrong_syncid short size_mismatch; do
  printf '%s\n' "$M" | has "^xlvs_sync_datagrams_rejected_total{reason=\"$r\"} 1$" \
    || fail "rejected datagrams ($r) not counted: $(printf '%s\n' "$M" | grep sync_)"
done
printf '%s\n' "$M" | has -E '^xlvs_sync_entries_total\{role="backup"\} [1-9]' || fail "no applied entries counted"
if command -v promtool >/dev/null; then
  printf '%s\n' "$M" | promtool check metrics >/dev/null 2>"$D/promtool.err" || fail "promtool: $(cat "$D/promtool.err")"
fi
S=$(xadm "$ID" -L --daemon)
[ "$S" = "backup sync daemon (mcast=$LAB_DIR_INT, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)" ] \
  || fail "-L --daemon: '$S'"
# A reload keeps the daemon (the rules file holds none).
sighup_and_wait "reload of $D/rules"
[ "$(xadm "$ID" -L --daemon)" = "$S" ] || fail "SIGHUP changed the daemons: $(xadm "$ID" -L --daemon)"
pass
