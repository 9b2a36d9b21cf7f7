#!/usr/bin/env bash
# Connection sync, master side (NAT lab): `xlvsadm --start-daemon master --mcast-interface
# int0 --syncid 5` sends IPVS sync v1 to 224.0.0.81:8848; tshark's ipvs dissector, listening
# on a realserver's port of the segment, decodes entries for the connections the test made
# through the VIP (client, virtual and realserver address and port, state ESTABLISHED or
# later, the state's timeout, syncid 5). -L --daemon shows the daemon as ipvsadm does;
# --stop-daemon stops it. Then with --sync-version 0, tshark decodes the kernel's v0 layout.
# Needs root, tshark and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init sm
web_lab_up nat 1
METRICS=127.0.0.1:9$((RANDOM % 900 + 100))
start_rr_xlvsd --metrics "$METRICS"
xadm "$ID" --start-daemon master --mcast-interface "$LAB_DIR_INT" --syncid 5 >/dev/null
L=$(xadm "$ID" -L --daemon)
[ "$L" = "master sync daemon (mcast=$LAB_DIR_INT, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)" ] \
  || fail "-L --daemon: '$L'"
xlvsadm_rc "$ID" 255 "Daemon has already run" --start-daemon master --mcast-interface "$LAB_DIR_INT"

# tshark on rs1's side of the segment hears the group (the bridge floods it).
lab_exec "$ID" rs1 timeout 12 tshark -i eth0 -f "udp port 8848" -w "$D/sync.pcap" >/dev/null 2>&1 &
TS=$!
bg_track $TS
capture_started "$D/sync.pcap"
ports=()
for i in $(seq 1 6); do
  p=$((41000 + i))
  lab_exec "$ID" cli curl -sS --max-time 3 --local-port "$p" -o /dev/null "http://$LAB_VIP/" || fail "curl $i"
  ports+=("$p")
done
wait "$TS" 2>/dev/null || true
TEST_BG_PIDS=()
out=$(tshark -r "$D/sync.pcap" -V 2>/dev/null)
[ -n "$out" ] || fail "no sync datagram heard"
n=$(printf '%s\n' "$out" | grep -c "Client Port:" || true)
log "tshark decoded $n entries"
for p in "${ports[@]}"; do
  printf '%s\n' "$out" | has "Client Port: $p$" || fail "no entry for client port $p: $(printf '%s\n' "$out" | grep -E 'Client Port|State' | head -20)"
done
printf '%s\n' "$out" | has "Synchronization ID: 5$" || fail "syncid 5 not in: $(printf '%s\n' "$out" | grep -i sync | head)"
if printf '%s\n' "$out" | has "Synchronization ID: [^5]"; then fail "another syncid sent"; fi
printf '%s\n' "$out" | has "Virtual Address: $LAB_VIP$" || fail "virtual address"
printf '%s\n' "$out" | has "Client Address: $LAB_CLIENT_IP$" || fail "client address"
printf '%s\n' "$out" | has -E "Destination Address: ($LAB_RS1_IP|$LAB_RS2_IP)$" || fail "realserver address"
printf '%s\n' "$out" | has "Timeout: 900$" || fail "no ESTABLISHED entry with 900 s"
# TCP states synced: ESTABLISHED (1, 900 s) or later (FIN_WAIT 4, TIME_WAIT 5, CLOSE 6, CLOSE_WAIT 7).
bad=$(printf '%s\n' "$out" | grep -E "State: .*\(0x000[^14567]\)" | head -3 || true)
[ -z "$bad" ] || fail "states the kernel does not sync: $bad"
M=$(lab_exec "$ID" dir curl -sS --max-time 5 "http://$METRICS/metrics") || fail "metrics scrape"
printf '%s\n' "$M" | has -E '^xlvs_sync_datagrams_total\{role="master"\} [1-9]' || fail "no datagrams counted: $(printf '%s\n' "$M" | grep sync_)"
printf '%s\n' "$M" | has -E '^xlvs_sync_entries_total\{role="master"\} [1-9]' || fail "no entries counted"
printf '%s\n' "$M" | has '^xlvs_sync_events_dropped_total{role="master"} 0$' || fail "events dropped"
xadm "$ID" --stop-daemon master >/dev/null
[ -z "$(xadm "$ID" -L --daemon)" ] || fail "-L --daemon after --stop-daemon"
xlvsadm_rc "$ID" 255 "No daemon is running" --stop-daemon master

log "sync_version 0: the kernel's old format, decoded by tshark too"
stop_xlvsd_checked
mv "$XLVSD_LOG" "$D/xlvsd.v1.log"
start_rr_xlvsd --start-daemon master --mcast-interface "$LAB_DIR_INT" --syncid 5 --sync-version 0
lab_exec "$ID" rs1 timeout 8 tshark -i eth0 -f "udp port 8848" -w "$D/sync0.pcap" >/dev/null 2>&1 &
TS=$!
bg_track $TS
capture_started "$D/sync0.pcap"
for i in 1 2 3; do
  lab_exec "$ID" cli curl -sS --max-time 3 --local-port $((41100 + i)) -o /dev/null "http://$LAB_VIP/" || fail "curl v0 $i"
done
wait "$TS" 2>/dev/null || true
TEST_BG_PIDS=()
out=$(tshark -r "$D/sync0.pcap" -V 2>/dev/null)
for i in 1 2 3; do
  printf '%s\n' "$out" | has "Client Port: $((41100 + i))$" || fail "v0: no entry for client port $((41100 + i)): $(printf '%s\n' "$out" | grep -E 'Client Port|Count' | head)"
done
printf '%s\n' "$out" | has "Connection Count: [1-9]" || fail "v0: no connection count"
printf '%s\n' "$out" | has "Timeout:" && fail "v0 datagrams carry no timeout, tshark shows one"
pass
