#!/usr/bin/env bash
# Multi-queue NAT (2 rx queues per director interface): 400 new connections
# all answered, and `xlvsadm --workers` shows a worker per queue with
# traffic on every one of ext0/q0 ext0/q1 int0/q0 int0/q1 (so replies also
# arrive on queues other than their request's).
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL multiqueue.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init mq
web_lab_up nat 2

for dev in ext0 int0; do
  nq=$(lab_exec "$ID" dir sh -c "ls -d /sys/class/net/$dev/queues/rx-* | wc -l")
  [ "$nq" = 2 ] || fail "director $dev has $nq rx queues, want 2: $(ip -n "$(lab_ns "$ID" dir)" -d link show dev "$dev" | grep -o 'num[rt]xqueues [0-9]*' | tr '\n' ' ')"
done

start_rr_xlvsd

log "400 requests, 8 in parallel"
http_burst "$ID" "http://$LAB_VIP/" 400 8 "$D/burst" || fail "400 requests: timed out"
xlvsd_alive "after 400 requests"
check_burst "$D/burst" 400 "400 requests"
log "rs1=$BURST_RS1 rs2=$BURST_RS2"

W=$(xadm "$ID" --workers)
log "workers:"
printf '%s\n' "$W" | sed 's/^/#   /'
for w in ext0/q0 ext0/q1 int0/q0 int0/q1; do
  line=$(printf '%s\n' "$W" | awk -v w="$w" '$1 == w' | head -n 1)
  [ -n "$line" ] || fail "xlvsadm --workers does not list $w:
$W"
  rx=$(printf '%s\n' "$line" | awk '{ print $2 }')
  [[ $rx =~ ^[0-9]+$ ]] || fail "xlvsadm --workers: RX of $w is '$rx', not a number:
$W"
  [ "$rx" -gt 0 ] || fail "worker $w received nothing (RX 0) after 400 flows; the traffic did not spread over both queues:
$W"
done

pass
