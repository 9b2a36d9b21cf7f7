#!/usr/bin/env bash
# xlvsd restarted under load without a peer loses no connection (LVS-NAT lab, XDP pinned on
# the lab's bpffs):
#  - 20 downloads at 100 kB/s and wrk (8 keep-alive connections, a request every 20 ms)
#    run through the VIP; xlvsd gets SIGTERM (as from `systemctl restart`): it saves its
#    table to --state-dir and leaves the pinned program dropping the VIP's frames; the
#    interfaces keep XDP; a new xlvsd reads the table back before its program swap;
#  - every download completes byte-exact, wrk sees no socket error and no non-2xx, no RST
#    from the VIP reaches the client and the director's stack sends none; the figures:
#    stop to ready, entries saved and restored, the gap the clients saw;
#  - the hold ends: after a stop with --restart-hold 400 and no new xlvsd, the VIP's frames
#    are dropped (a connect times out) within the hold and go to the kernel after it (the
#    director's stack refuses the connection).
# Needs root, curl, wrk, tshark and target/release/{xlvsd,xlvsadm}.
# xlvs-test: alone
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/failover.sh
. "$HERE/../lib/failover.sh"

test_init rs
web_lab_up nat 1
PIN=$(lab_bpffs "$ID") || fail "lab_bpffs"
ARGS=(--pin-dir "$PIN/x" --state-dir "$D/state")
start_rr_xlvsd "${ARGS[@]}"

fo_client_captures
sleep 1.5
RST0=$(fo_out_rsts dir)

fo_mid_downloads 20 800000
fo_wrk 8
sleep 2
n=$(xadm "$ID" -L -n -c | awk '$1 == "TCP" && $3 == "ESTABLISHED"' | wc -l)
[ "$n" -ge 28 ] || fail "$n established connections before the restart, want the 20 downloads and wrk's 8"

log "restart: SIGTERM, then a new xlvsd"
T0=$(date +%s%3N)
_stop_xlvsd || fail "xlvsd did not stop cleanly on SIGTERM: $XLVSD_STOP_MSG"
T1=$(date +%s%3N)
for dev in "$LAB_DIR_EXT" "$LAB_DIR_INT"; do
  ip -n "$LAB_DIR_NS" link show dev "$dev" | has " xdp" || fail "XDP left $dev at the stop"
done
saved=$(sed -n 's/.* \([0-9]*\) connection table entries saved to .*/\1/p' "$XLVSD_LOG" | tail -1)
[ -n "$saved" ] && [ "$saved" -ge 28 ] || fail "the stop saved '${saved:-nothing}': $(xlvsd_log_tail 5)"
start_rr_xlvsd "${ARGS[@]}"
T2=$(date +%s%3N)
back=$(sed -n 's/.*: \([0-9]*\) entries back in \([0-9]*\) ms, \([0-9]*\) not inserted.*/\1 \2 \3/p' "$XLVSD_LOG" | tail -1)
read -r inserted took notin <<<"$back"
[ "${inserted:-0}" = "$saved" ] && [ "${notin:-1}" = 0 ] ||
  fail "saved $saved entries, the new xlvsd inserted '${inserted:-?}' (${notin:-?} not): $(xlvsd_log_tail 8)"
n=$(xadm "$ID" -L -n -c | awk '$1 == "TCP" && $3 == "ESTABLISHED"' | wc -l)
[ "$n" -ge 28 ] || fail "$n established connections right after the restart"

fo_mid_intact 20
fo_wrk_verdict
TEST_BG_PIDS=()
sleep 1
kill -INT "$RSTCAP" "$CLICAP" 2>/dev/null || true
wait "$RSTCAP" "$CLICAP" 2>/dev/null || true
rst=$(tshark -r "$D/rst.pcap" -Y "ip.src == $LAB_VIP" 2>/dev/null | wc -l)
[ "$rst" = 0 ] || fail "$rst RSTs from the VIP reached the client"
rst=$(($(fo_out_rsts dir) - RST0))
[ "$rst" = 0 ] || fail "the director's own TCP stack sent $rst resets"
log "restart: SIGTERM to exit $((T1 - T0)) ms, to the new xlvsd ready $((T2 - T0)) ms; $saved entries saved, $inserted back in $took ms; the gap the clients saw: $(fo_client_gap); 20 downloads intact, wrk clean, 0 RSTs"

# The hold ends: no new xlvsd, and the host behaves as without a director.
stop_xlvsd_checked
start_rr_xlvsd "${ARGS[@]}" --restart-hold 400
_stop_xlvsd || fail "xlvsd did not stop cleanly: $XLVSD_STOP_MSG"
T3=$(date +%s%3N)
rc=0
out=$(lab_exec "$ID" cli curl -sS --connect-timeout 0.2 -o /dev/null "http://$LAB_VIP/small" 2>&1) || rc=$?
# curl: 28 a timeout (the SYN dropped), 7 refused (the director's stack answered a RST).
[ "$rc" = 28 ] || fail "within the hold the VIP's SYN should be dropped (curl 28, a timeout), got $rc: $out"
now=$(date +%s%3N)
[ $((now - T3)) -lt 400 ] || fail "the check within the hold ended $((now - T3)) ms after the stop (hold 400 ms)"
sleep 0.5
rc=0
out=$(lab_exec "$ID" cli curl -sS --connect-timeout 1 -o /dev/null "http://$LAB_VIP/small" 2>&1) || rc=$?
[ "$rc" = 7 ] || fail "after the hold the director's stack should refuse the VIP's connection (curl 7), got $rc: $out"
log "hold of 400 ms: the VIP's SYN dropped within it, refused by the director's stack after it"
# The program is still pinned; the lab's bpffs goes with lab_down. A fresh xlvsd takes it over.
start_rr_xlvsd "${ARGS[@]}" --restart-hold 0
grep -q "took over the link left pinned" "$XLVSD_LOG" || fail "the fresh xlvsd did not take over the pinned link"
lab_exec "$ID" cli curl -sS --max-time 5 -o /dev/null "http://$LAB_VIP/small" || fail "no answer through the VIP after the hold"
pass
