#!/usr/bin/env bash
# Cost of health checking: 1000 realservers (10.11.0.0/22, all on rs1's nginx,
# reached through rs1) at delay_loop 1 s, for TCP_CHECK and HTTP_GET, against
# the same 1000-realserver table without checks, side by side in one run:
# xlvsd's CPU (all threads, /proc schedstat) over SECONDS (default 20) as a
# percentage of one core, the health thread's share, checks per second, and
# the resident memory (VmRSS) after the run; and first the floor under a TCP
# checker: the same 1000 connections a second made by a bare loop
# (bench/examples/connect_floor), whose CPU is the kernel's part of any
# checker's in this lab (both ends' TCP, veth and bridge processing run in
# the connecting thread here).
#   scripts/bench_health.sh [SECONDS]
# (PERF_OUT=FILE also records 5 s of `perf record -g` per case, in FILE.CASE;
# NAPI=threaded moves the lab's receive processing into NAPI threads, see below.)
# Prints one line per case: "bench_health: CASE cpu=X% health_thread=Y%
# checks/s=Z rss=N MiB (1000 realservers, delay_loop 1 s)". Needs root.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SECS=${1:-20}
N=1000
TEST_NAME=bench_health
# shellcheck source=lib/testlib.sh
. "$HERE/lib/testlib.sh"

test_init bh
lab_nat_up "$ID" 1 || fail "lab_nat_up"
D=$(lab_dir "$ID")
LAB_NGINX_WORKERS=2 lab_nginx "$ID" rs1 80 || fail "nginx rs1"
# 1000 addresses on rs1, routed to it from the director.
ip -n "$LAB_RS1_NS" -b - <<<"$(for ((i = 0; i < N; i++)); do
  printf 'addr add 10.11.%d.%d/32 dev eth0\n' $((i / 250)) $((i % 250 + 1))
done)" || fail "addresses on rs1"
ip -n "$LAB_DIR_NS" route add 10.11.0.0/22 via "$LAB_RS1_IP" dev int0 || fail "route"
ip netns exec "$LAB_RS1_NS" sysctl -qw net.core.somaxconn=4096
# NAPI=threaded: receive processing of every veth in the lab runs in its NAPI thread, as a
# NIC's runs in its interrupt's softirq, instead of in the thread that sent the packet (a
# veth default: there the realserver's and the bridge's work would be charged to the checker).
if [ "${NAPI:-}" = threaded ]; then
  for ns in "$LAB_DIR_NS" "$LAB_SW_NS" "$LAB_RS1_NS" "$LAB_RS2_NS" "$LAB_CLI_NS"; do
    for dev in $(ip -n "$ns" -o link show type veth | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
      ip netns exec "$ns" ethtool -K "$dev" gro on >/dev/null 2>&1 || true
      ip netns exec "$ns" sh -c "echo 1 > /sys/class/net/$dev/threaded" 2>/dev/null || true
    done
  done
fi

addrs() { for ((i = 0; i < N; i++)); do printf '10.11.%d.%d\n' $((i / 250)) $((i % 250 + 1)); done; }
conf() { # CHECKER
  printf 'virtual_server %s 80 {\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n' "$LAB_VIP"
  addrs | while read -r a; do
    case $1 in
      none) printf '    real_server %s 80 {\n    }\n' "$a" ;;
      tcp) printf '    real_server %s 80 {\n        TCP_CHECK {\n            connect_timeout 2\n        }\n    }\n' "$a" ;;
      http) printf '    real_server %s 80 {\n        HTTP_GET {\n            url {\n                path /\n            }\n            connect_timeout 2\n        }\n    }\n' "$a" ;;
    esac
  done
  printf '}\n'
}

cpu_ns() { cat /proc/"$XLVSD_PID"/task/*/schedstat | awk '{ s += $1 } END { printf "%d", s }'; }
health_ns() {
  local t
  for t in /proc/"$XLVSD_PID"/task/*; do
    [ "$(cat "$t/comm")" = xlvs-health ] && awk '{ print $1 }' "$t/schedstat"
  done | awk '{ s += $1 } END { printf "%d", s }'
}
checks() { # failures + successes seen in the metrics' histogram
  lab_exec "$ID" dir curl -sS --max-time 5 "http://$METRICS/metrics" |
    awk '/^xlvs_health_check_duration_seconds_count/ { s += $2 } END { printf "%d", s }'
}

# The floor: the kernel's cost of the same connections and nothing else.
FLOOR=$HERE/../target/release/examples/connect_floor
if [ -x "$FLOOR" ]; then
  addrs >"$D/addrs"
  lab_exec "$ID" dir "$FLOOR" "$D/addrs" "$N" "$SECS" | sed 's/^/bench_health: /'
fi
for c in none tcp http; do
  conf "$c" >"$D/$c.conf"
  METRICS=127.0.0.1:9$((RANDOM % 900 + 100))
  start_xlvsd "$ID" --iface "$LAB_DIR_EXT" --iface "$LAB_DIR_INT" --keepalived-conf "$D/$c.conf" \
    --metrics "$METRICS"
  sleep 3 # warmup spreads the first checks over delay_loop; next hops settle
  if [ "$c" != none ]; then
    up=$(xadm "$ID" -L -n --health | grep -c ' UP ' || true)
    [ "$up" = "$N" ] || fail "$c: $up of $N checkers up"
  fi
  if [ -n "${PERF_OUT:-}" ] && [ "$c" != none ]; then
    perf record -q -g -o "$PERF_OUT.$c" -p "$XLVSD_PID" -- sleep 5 >/dev/null 2>&1 || true
  fi
  a=$(cpu_ns) h=$(health_ns) k=$(checks)
  sleep "$SECS"
  b=$(cpu_ns) h2=$(health_ns) k2=$(checks)
  rss=$(awk '/^VmRSS/ { print int($2 / 1024) }' /proc/"$XLVSD_PID"/status)
  awk -v n=$((b - a)) -v h=$((h2 - h)) -v k=$((k2 - k)) -v s="$SECS" -v c="$c" -v r="$rss" -v N="$N" 'BEGIN {
    printf "bench_health: %-4s cpu=%.2f%% health_thread=%.2f%% checks/s=%.0f rss=%d MiB (%d realservers, delay_loop 1 s, %d s)\n",
      c, 100 * n / 1e9 / s, 100 * h / 1e9 / s, k / s, r, N, s }'
  if [ "$c" != none ]; then
    down=$(xadm "$ID" -L -n --health | grep -c ' DOWN ' || true)
    [ "$down" = 0 ] || fail "$c: $down checkers went down during the run"
  fi
  stop_xlvsd_checked
done
_TEST_DONE=1
echo "PASS $TEST_NAME"
