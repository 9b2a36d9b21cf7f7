#!/usr/bin/env bash
# Idle CPU of xlvsd: the NAT lab with 2 RX queues per interface (4 workers), the rr
# rules, no traffic; xlvsd's user + system CPU time over SECONDS (default 30) from
# the threads' /proc schedstat (nanoseconds on a CPU), as a percentage of one core, and
# their wakeups per second (voluntary context switches). XLVSD/XLVSADM choose the binaries,
# so two builds are compared side by side:
#   XLVSD=old/xlvsd XLVSADM=old/xlvsadm scripts/idle_cpu.sh 30
#   scripts/idle_cpu.sh 30
# Prints "idle_cpu: X.XXX% of one core, W wakeups/s over N s (4 workers, BINARY)".
# Needs root.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SECS=${1:-30}
TEST_NAME=idle_cpu
# shellcheck source=lib/testlib.sh
. "$HERE/lib/testlib.sh"

test_init ic
web_lab_up nat 2
start_rr_xlvsd
workers=$(xadm "$ID" --workers | awk '/\/q[0-9]/ && NF == 5' | wc -l)
# Let start-up settle (next-hop probes, the first housekeeping rounds).
sleep 2
# Every thread's CPU nanoseconds and voluntary context switches, summed.
ns() { cat /proc/"$XLVSD_PID"/task/*/schedstat | awk '{ s += $1 } END { printf "%d", s }'; }
sw() { cat /proc/"$XLVSD_PID"/task/*/status | awk '/^voluntary_ctxt_switches/ { s += $2 } END { print s }'; }
a=$(ns) c=$(sw)
sleep "$SECS"
b=$(ns) d=$(sw)
awk -v n=$((b - a)) -v w=$((d - c)) -v s="$SECS" -v k="$workers" -v bin="$XLVSD" 'BEGIN {
  printf "idle_cpu: %.3f%% of one core, %.0f wakeups/s over %d s (%d workers, %s)\n",
    100 * n / 1e9 / s, w / s, s, k, bin }'
pass
