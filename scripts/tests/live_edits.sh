#!/usr/bin/env bash
# Live edits under load (NAT lab, 1 queue, rr over rs1/rs2, xlvsd --metrics):
#  (a) wrk (8 keep-alive connections, 15 s) and a loop of 500 new connections
#      (curl) run while xlvsadm edits weights, switches schedulers, adds and
#      deletes a service, and deletes and re-adds a realserver: wrk reports no
#      socket error and no non-2xx answer, and every curl request is answered;
#  (b) under the load, `xlvsadm -L -n -c` lists the ESTABLISHED connections
#      in ipvsadm's layout, and `-L -n -c --json` parses;
#  (c) the Prometheus scrape passes `promtool check metrics`, counts the
#      service's connections and the worker's packets.
# Needs root, wrk, promtool and target/release/{xlvsd,xlvsadm}. Prints
# PASS/FAIL live_edits.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

command -v wrk >/dev/null || fail "wrk not installed (scripts/setup.sh)"
command -v promtool >/dev/null || fail "promtool not installed (scripts/setup.sh)"

test_init le
web_lab_up nat 1
METRICS=127.0.0.1:9917
start_rr_xlvsd --metrics "$METRICS"
V=$LAB_VIP R1=$LAB_RS1_IP R2=$LAB_RS2_IP

log "(a) wrk and new connections while editing"
lab_exec "$ID" cli timeout 60 wrk -t1 -c8 -d15s --timeout 5s "http://$V/" \
  >"$D/wrk.out" 2>&1 &
WRK=$!
bg_track "$WRK"
http_burst "$ID" "http://$V/" 500 1 "$D/burst" &
CURLS=$!
bg_track "$CURLS"
sleep 2

log "(b) connection listing under load"
C=$(xadm "$ID" -L -n -c)
H=$(printf '%s\n' "$C" | sed -n 1,2p)
[ "$H" = "IPVS connection entries
pro expire state       source             virtual            destination" ] \
  || fail "-L -n -c header: '$H'"
est=$(printf '%s\n' "$C" | awk -v v="$V:80" -v c="$LAB_CLIENT_IP:" '
  $1 == "TCP" && $2 ~ /^[0-9][0-9]:[0-9][0-9]$/ && $3 == "ESTABLISHED" &&
  index($4, c) == 1 && $5 == v && ($6 ~ /:80$/) { n++ } END { print n + 0 }')
[ "$est" -ge 8 ] || fail "-L -n -c lists $est ESTABLISHED connections to $V:80, want >= 8 (wrk's); listing:
$(printf '%s\n' "$C" | head -n 20)"
xadm "$ID" -L -n -c --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert any(c["state"] == "ESTABLISHED" for c in d["connections"]), d' \
  || fail "-L -n -c --json did not parse or had no ESTABLISHED connection"

edits=(
  "-e -t $V:80 -r $R1:80 -m -w 3"
  "-E -t $V:80 -s wrr"
  "-e -t $V:80 -r $R2:80 -m -w 0"
  "-e -t $V:80 -r $R2:80 -m -w 1"
  "-E -t $V:80 -s wlc"
  "-A -t $V:8080 -s rr"
  "-a -t $V:8080 -r $R1:80 -m"
  "-d -t $V:80 -r $R2:80"
  "-a -t $V:80 -r $R2:80 -m -w 2"
  "-E -t $V:80 -s sh"
  "-D -t $V:8080"
  "-E -t $V:80 -s mh"
  "-E -t $V:80 -s rr"
)
for e in "${edits[@]}"; do
  # shellcheck disable=SC2086
  xadm "$ID" $e >/dev/null
  sleep 0.6
done
kill -0 "$WRK" 2>/dev/null || fail "wrk ended before the edits did (too fast for the test)"

rc=0
wait "$WRK" || rc=$?
[ "$rc" -eq 0 ] || fail "wrk exited $rc: $(cat "$D/wrk.out")"
log "$(grep -E 'requests in|Socket errors|Non-2xx' "$D/wrk.out" | tr -s ' ')"
grep -q 'requests in' "$D/wrk.out" || fail "no wrk summary: $(cat "$D/wrk.out")"
if grep -qE 'Socket errors|Non-2xx' "$D/wrk.out"; then
  fail "wrk saw errors during the edits: $(cat "$D/wrk.out")"
fi
rc=0
wait "$CURLS" || rc=$?
TEST_BG_PIDS=()
[ "$rc" -eq 0 ] || fail "the curl loop timed out"
check_burst "$D/burst" 500 "500 new connections during the edits"
log "new connections: rs1=$BURST_RS1 rs2=$BURST_RS2"
xlvsd_alive "after the edits"

log "(c) metrics"
lab_exec "$ID" dir curl -sS --max-time 5 "http://$METRICS/metrics" >"$D/metrics" \
  || fail "scraping http://$METRICS/metrics failed"
promtool check metrics <"$D/metrics" >"$D/promtool.out" 2>&1 \
  || fail "promtool check metrics: $(cat "$D/promtool.out")"
conns=$(awk -v l="xlvs_service_connections_total{proto=\"TCP\",local_address=\"$V\",local_port=\"80\",local_mark=\"\"}" \
  '$1 == l { print $2 }' "$D/metrics")
[ "${conns:-0}" -ge 500 ] || fail "metrics: service connections ${conns:-none}, want >= 500; $(grep service_connections_total "$D/metrics")"
rx=$(awk '$1 ~ /^xlvs_worker_rx_packets_total\{/ { s += $2 } END { print s + 0 }' "$D/metrics")
[ "$rx" -gt 1000 ] || fail "metrics: worker rx packets $rx"
grep -q '^xlvs_xdp_packets_total{action="steered"} [1-9]' "$D/metrics" \
  || fail "metrics: no steered XDP packets: $(grep xdp_packets "$D/metrics")"
code=$(lab_exec "$ID" dir curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$METRICS/other")
[ "$code" = 404 ] || fail "GET /other answered $code, want 404"
pass
