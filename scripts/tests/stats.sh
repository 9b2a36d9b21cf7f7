#!/usr/bin/env bash
# Statistics as ipvsadm shows them (NAT lab, 1 queue, rr over rs1/rs2):
#  (a) 200 requests, each a new TCP connection: `xlvsadm -L -n --stats --exact`
#      counts exactly 200 connections on the service, split as the answers
#      were; per connection at least 5 packets in (SYN, ACK, request, FIN,
#      ACK) and 3 out (SYN-ACK, answer, FIN); OutBytes at least the bytes
#      curl received;
#  (b) `--rate` (after two estimator periods) shows connections per second;
#  (c) `-Z` zeroes the service and its realservers; new traffic counts again.
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL stats.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

N=200

# stats_row LISTING NAME: the five numbers of a service ("TCP  VIP:80") or
# realserver ("-> RIP:80") line, space-separated.
stats_row() {
  printf '%s\n' "$1" | awk -v name="$2" '
    ($1 " " $2) == name || ("-> " $2) == name { print $(NF-4), $(NF-3), $(NF-2), $(NF-1), $NF; exit }'
}

test_init st
web_lab_up nat 1
start_rr_xlvsd
SVC="TCP $LAB_VIP:80"

log "(a) $N requests"
lab_exec "$ID" cli timeout 120 bash -c '
  for i in $(seq "$2"); do
    curl -g -sS --max-time 10 -w "%{size_download}\n" -o /dev/null "$1" || echo ERR
  done' _ "http://$LAB_VIP/" "$N" >"$D/sizes" 2>"$D/sizes.err" || fail "requests timed out"
grep -q ERR "$D/sizes" && fail "a request failed: $(head -n 3 "$D/sizes.err")"
BODY=$(awk '{ s += $1 } END { print s }' "$D/sizes")
L=$(xadm "$ID" -L -n --stats --exact)
log "$L"
read -r conns inpkts outpkts inbytes outbytes <<<"$(stats_row "$L" "$SVC")"
[ "${conns:-}" = "$N" ] || fail "service Conns=${conns:-none}, want $N; listing:
$L"
[ "$inpkts" -ge $((5 * N)) ] || fail "service InPkts=$inpkts, want >= $((5 * N))"
[ "$outpkts" -ge $((3 * N)) ] || fail "service OutPkts=$outpkts, want >= $((3 * N))"
[ "$outbytes" -ge "$BODY" ] || fail "service OutBytes=$outbytes < $BODY bytes received"
[ "$inbytes" -ge $((60 * N)) ] || fail "service InBytes=$inbytes, want >= $((60 * N))"
read -r c1 _ <<<"$(stats_row "$L" "-> $LAB_RS1_IP:80")"
read -r c2 _ <<<"$(stats_row "$L" "-> $LAB_RS2_IP:80")"
[ $((c1 + c2)) -eq "$N" ] && [ "$c1" -eq $((N / 2)) ] \
  || fail "realserver Conns rs1=$c1 rs2=$c2, want $((N / 2)) each (rr)"
# Without --exact, ipvsadm's widths: the header and a 9-column number.
H=$(xadm "$ID" -L -n --stats | sed -n 2p)
[ "$H" = "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes" ] \
  || fail "--stats header: '$H'"

log "(b) rates"
lab_exec "$ID" cli timeout 60 bash -c '
  for i in $(seq 100); do curl -g -sS --max-time 10 -o /dev/null "$1" || exit 1; done' \
  _ "http://$LAB_VIP/" 2>"$D/rate.err" || fail "rate requests failed: $(head -n 3 "$D/rate.err")"
sleep 4.5
R=$(xadm "$ID" -L -n --rate)
log "$R"
read -r cps inpps _ <<<"$(stats_row "$R" "$SVC")"
[ "${cps:-0}" -gt 0 ] && [ "${inpps:-0}" -gt 0 ] || fail "--rate CPS=${cps:-none} InPPS=${inpps:-none}; listing:
$R"

log "(c) -Z"
xadm "$ID" -Z >/dev/null
L=$(xadm "$ID" -L -n --stats --exact)
[ "$(stats_row "$L" "$SVC")" = "0 0 0 0 0" ] || fail "after -Z: $L"
[ "$(stats_row "$L" "-> $LAB_RS1_IP:80")" = "0 0 0 0 0" ] || fail "after -Z: $L"
lab_exec "$ID" cli curl -g -sS --max-time 10 -o /dev/null "http://$LAB_VIP/" || fail "request after -Z"
L=$(xadm "$ID" -L -n --stats --exact)
read -r conns _ <<<"$(stats_row "$L" "$SVC")"
[ "$conns" = 1 ] || fail "after -Z and one request: Conns=$conns; listing:
$L"
pass
