#!/usr/bin/env bash
# Connection sync over an IPv6 multicast group, with IPv4 and IPv6 entries (the DR lab with
# IPv6, plus d2): d1 runs `--start-daemon master --mcast-group ff02::8848`, d2 the backup on
# the same group, each the other's --sync-peer by its IPv6 address. Connections through d1's
# IPv4 VIP and through its IPv6 VIP are listed by d2 with the same realservers; a datagram
# from a stranger's IPv6 address is counted as not allowed.
# Needs root, curl, python3 and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init s6
export LAB_IPV6=1
web_lab_up dr 1
lab_add_dir2 "$ID" || fail "lab_add_dir2"
write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -g -w 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -g -w 1" \
  "-A -t [$LAB_VIP6]:80 -s rr" \
  "-a -t [$LAB_VIP6]:80 -r [$LAB_RS1_IP6]:80 -g -w 1" \
  "-a -t [$LAB_VIP6]:80 -r [$LAB_RS2_IP6]:80 -g -w 1"
P=$((RANDOM % 800 + 100))
M2=127.0.0.1:8$P
G=(--mcast-interface eth0 --mcast-group ff02::8848 --syncid 4)
start_xlvsd "$ID" --iface eth0 --rules "$D/rules" --start-daemon master "${G[@]}" --sync-peer fd00:20::3
start_peer_xlvsd d2 --iface eth0 --rules "$D/rules" --metrics "$M2" --start-daemon backup "${G[@]}" \
  --sync-peer fd00:20::1
L=$(xadm "$ID" -L --daemon)
[ "$L" = "master sync daemon (mcast=eth0, syncid=4, maxlen=1452, group=ff02::8848, port=8848, ttl=1)" ] \
  || fail "-L --daemon: $L"
for i in 1 2 3 4; do
  lab_exec "$ID" cli curl -sS --max-time 3 --local-port $((45000 + i)) -o /dev/null "http://$LAB_VIP/" || fail "curl $i"
  lab_exec "$ID" cli curl -sS --max-time 3 --local-port $((45100 + i)) -o /dev/null "http://[$LAB_VIP6]/" || fail "curl -6 $i"
done
pairs() { awk '$1 == "TCP" { print $4, $6 }' | sort; }
want=$(xadm "$ID" -L -n -c | pairs)
[ "$(printf '%s\n' "$want" | grep -c .)" -ge 8 ] || fail "d1 lists: $want"
got=
for ((i = 0; i < 40; i++)); do
  got=$(xadm_at d2 -L -n -c | pairs)
  [ "$got" = "$want" ] && break
  sleep 0.05
done
[ "$got" = "$want" ] || fail "d2 lists
$got
d1 lists
$want
d2's sync metrics: $(lab_exec "$ID" d2 curl -sS --max-time 5 "http://$M2/metrics" | grep -E '^xlvs_(sync|resync)')"
printf '%s\n' "$got" | has "^\[$LAB_CLIENT_IP6\]:45101 " || fail "no IPv6 entry on d2: $got"
# A stranger on the segment (rs1's IPv6 address) sends to the group.
lab_exec "$ID" rs1 python3 - <<'PY'
import socket, struct
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex("eth0"))
ip = socket.inet_aton
entry = struct.pack("!BBHIHHHHII4s4s4s", 0, 6, 36, 0, 1, 51000, 80, 80, 0, 900,
                    ip("10.77.1.2"), ip("10.20.0.100"), ip("10.20.0.11"))
s.sendto(struct.pack("!BBHBbH", 0, 4, 8 + len(entry), 1, 1, 0) + entry, ("ff02::8848", 8848, 0, socket.if_nametoindex("eth0")))
PY
sleep 0.3
xadm_at d2 -L -n -c | has 10.77.1.2 && fail "the stranger's entry reached d2"
MET=$(lab_exec "$ID" d2 curl -sS --max-time 5 "http://$M2/metrics") || fail "d2 metrics"
printf '%s\n' "$MET" | has -E '^xlvs_sync_datagrams_rejected_total\{reason="not_allowed"\} 1$' \
  || fail "not counted: $(printf '%s\n' "$MET" | grep sync_)"
log "d2 lists d1's $(printf '%s\n' "$want" | grep -c .) IPv4 and IPv6 connections, synced over ff02::8848"
pass
