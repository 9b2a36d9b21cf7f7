#!/usr/bin/env bash
# Multi-queue NAT (2 rx queues per director interface), in both thread
# layouts: 400 new connections all answered, and `xlvsadm --workers` shows a
# worker per queue with traffic on every one of ext0/q0 ext0/q1 int0/q0
# int0/q1 (so replies also arrive on queues other than their request's).
# - --threads per-socket: four threads; every frame changes thread (inbox
#   hand-off and eventfd wakeups);
# - the default, --threads per-queue: two threads, xlvs-q0 running ext0/q0
#   and int0/q0, xlvs-q1 the q1s; the threads xlvsd really runs carry those
#   names.
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

# check_layout WANT_THREADS "THREAD: WORKERS"...: 400 requests, traffic on all
# four workers, and the Threads section and xlvsd's thread names as given.
check_layout() {
  local want=$1 w line rx spec t names
  shift
  log "400 requests, 8 in parallel"
  http_burst "$ID" "http://$LAB_VIP/" 400 8 "$D/burst" || fail "400 requests: timed out"
  xlvsd_alive "after 400 requests"
  check_burst "$D/burst" 400 "400 requests"
  log "rs1=$BURST_RS1 rs2=$BURST_RS2"

  W=$(xadm "$ID" --workers)
  log "workers:"
  printf '%s\n' "$W" | sed 's/^/#   /'
  for w in ext0/q0 ext0/q1 int0/q0 int0/q1; do
    line=$(printf '%s\n' "$W" | awk -v w="$w" '$1 == w' | sed -n 1p)
    [ -n "$line" ] || fail "xlvsadm --workers does not list $w:
$W"
    rx=$(printf '%s\n' "$line" | awk '{ print $2 }')
    [[ $rx =~ ^[0-9]+$ ]] || fail "xlvsadm --workers: RX of $w is '$rx', not a number:
$W"
    [ "$rx" -gt 0 ] || fail "worker $w received nothing (RX 0) after 400 flows; the traffic did not spread over both queues:
$W"
  done
  threads=$(printf '%s\n' "$W" | sed -n '/^Threads:/,/^Connections:/p' | grep -c '^  xlvs-')
  [ "$threads" = "$want" ] || fail "xlvsadm --workers lists $threads threads, want $want:
$W"
  names=$(cat /proc/"$XLVSD_PID"/task/*/comm)
  for spec in "$@"; do
    t=${spec%%:*}
    printf '%s\n' "$W" | has -E "^  $t +${spec#*: }\$" ||
      fail "xlvsadm --workers: want thread line '$spec':
$W"
    printf '%s\n' "$names" | has -x "$t" ||
      fail "xlvsd has no thread named $t; its threads: $(echo $names)"
  done
}

start_rr_xlvsd --threads per-socket
check_layout 4 "xlvs-ext0/q0: ext0/q0" "xlvs-ext0/q1: ext0/q1" \
  "xlvs-int0/q0: int0/q0" "xlvs-int0/q1: int0/q1"
stop_xlvsd_checked

RST0=$(ip netns exec "$LAB_DIR_NS" nstat -az TcpOutRsts | awk '$1 == "TcpOutRsts" { print $2 + 0 }')
start_rr_xlvsd
# A restart re-attaches XDP (no pin here): the VIP answers at once, and the director's own
# stack resets nothing. (An earlier version of start_xlvsd took the first run's "ready"
# line for this one's and returned while the new xlvsd was still starting: SYNs then met
# the director's stack, which looked like a window after the attach. There is none.)
lab_exec "$ID" cli curl -s --max-time 2 -o /dev/null "http://$LAB_VIP/" || fail "the VIP did not answer right after the restart"
rst=$(($(ip netns exec "$LAB_DIR_NS" nstat -az TcpOutRsts | awk '$1 == "TcpOutRsts" { print $2 + 0 }') - RST0))
[ "$rst" = 0 ] || fail "the director's stack sent $rst resets across the restart"
check_layout 2 "xlvs-q0: ext0/q0 int0/q0" "xlvs-q1: ext0/q1 int0/q1"

pass
