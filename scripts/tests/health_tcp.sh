#!/usr/bin/env bash
# Health checks from a keepalived.conf (NAT lab, three nginx realservers):
#  (a) `keepalived -t` accepts the file; xlvsd builds the services from it and
#      `-S -n` is what `ipvsadm -S -n` would list for them (written by hand);
#  (b) under load, stop one nginx: within delay_loop + retry x
#      delay_before_retry + (retry + 1) x connect_timeout (+ a margin) it is
#      out of rotation (gone from -L -n; at weight 0 in the service with
#      inhibit_on_failure), and no request started after that fails;
#      --health, its JSON and /metrics say why;
#  (c) start it again: back after one successful check, taking connections;
#  (d) a bad keepalived.conf: at start exit 1 naming file:line; at SIGHUP
#      nothing changes and the log names file:line.
# Needs root, keepalived, and target/release/{xlvsd,xlvsadm}.
# xlvs-test: alone
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init ht

web_lab_up nat 1
lab_add_rs3 "$ID" || fail "lab_add_rs3"
lab_nginx "$ID" rs3 80 || fail "lab_nginx rs3"
V=$LAB_VIP R1=$LAB_RS1_IP R2=$LAB_RS2_IP R3=$LAB_RS3_IP
DELAY=1 RETRY=1 DBR=1 CT=1
GOAL=$((DELAY + RETRY * DBR + (RETRY + 1) * CT))
MARGIN=2
CONF=$D/keepalived.conf
check() { # the TCP_CHECK block every realserver has
  printf '        TCP_CHECK {\n            connect_timeout %s\n            retry %s\n            delay_before_retry %s\n        }\n' \
    "$CT" "$RETRY" "$DBR"
}
{
  printf '! xlvs health test (%s)\n' "$ID"
  printf 'global_defs {\n    router_id xlvs_%s\n}\n' "$ID"
  printf 'vrrp_instance VI_1 {\n    state BACKUP\n    interface %s\n    virtual_router_id 51\n' "$LAB_DIR_EXT"
  printf '    priority 100\n    advert_int 1\n    virtual_ipaddress {\n        %s/32\n    }\n}\n' "$V"
  printf 'virtual_server %s 80 {\n    delay_loop %s\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n' "$V" "$DELAY"
  for r in "$R1" "$R2" "$R3"; do
    printf '    real_server %s 80 {\n        weight 1\n' "$r"
    check
    printf '    }\n'
  done
  printf '}\n'
  printf 'virtual_server %s 81 {\n    delay_loop %s\n    lb_algo wlc\n    lb_kind NAT\n    protocol TCP\n' "$V" "$DELAY"
  printf '    persistence_timeout 60\n'
  printf '    real_server %s 80 {\n        weight 3\n        inhibit_on_failure\n' "$R3"
  check
  printf '    }\n}\n'
} >"$CONF"

log "(a) keepalived -t and xlvsd read the same file"
out=$(lab_exec "$ID" dir timeout 20 keepalived -t -f "$CONF" 2>&1) || fail "keepalived -t rejects the file: $out"
METRICS=127.0.0.1:9$((RANDOM % 900 + 100))
start_xlvsd "$ID" --iface "$LAB_DIR_EXT" --iface "$LAB_DIR_INT" --keepalived-conf "$CONF" \
  --metrics "$METRICS"
want="-A -t $V:80 -s rr
-a -t $V:80 -r $R1:80 -m -w 1
-a -t $V:80 -r $R2:80 -m -w 1
-a -t $V:80 -r $R3:80 -m -w 1
-A -t $V:81 -s wlc -p 60
-a -t $V:81 -r $R3:80 -m -w 3"
got=$(xadm "$ID" -S -n)
[ "$got" = "$want" ] || fail "-S -n:
$got
want (ipvsadm -S -n of keepalived's table):
$want"

# Every realserver answers (they start up; the first checks come within
# warmup = delay_loop).
seen=
for ((i = 0; i < 60; i++)); do
  seen+=" $(lab_exec "$ID" cli curl -sS --max-time 2 "http://$V/" 2>/dev/null || true)"
  [[ "$seen" == *rs1* && "$seen" == *rs2* && "$seen" == *rs3* ]] && break
done
[[ "$seen" == *rs1* && "$seen" == *rs2* && "$seen" == *rs3* ]] || fail "not all realservers answer: $seen"

log "(b) stop rs3's nginx under load"
# Load: wrk through the VIP; a probe loop of separate curls records when each
# request started and whether it succeeded.
lab_exec "$ID" cli wrk -t1 -c8 -d20s --timeout 2s "http://$V/" >"$D/wrk.out" 2>&1 &
bg_track $!
(
  end=$(($(date +%s) + 20))
  while [ "$(date +%s)" -lt "$end" ]; do
    t=$(date +%s%N)
    if body=$(lab_exec "$ID" cli curl -sS --max-time 2 "http://$V/" 2>/dev/null); then
      echo "$t ok $body"
    else
      echo "$t err"
    fi
    sleep 0.05
  done
) >"$D/probe.log" &
PROBE_PID=$!
bg_track $PROBE_PID
sleep 2
t0=$(date +%s%N)
lab_nginx_stop "$ID" rs3 80 || fail "stopping rs3's nginx"
gone=
for ((i = 0; i < (GOAL + MARGIN) * 20 + 20; i++)); do
  L=$(xadm "$ID" -L -n)
  if [ -z "$(lvs_dest_field "$L" "TCP $V:80" "$R3:80" Weight)" ]; then
    gone=$(date +%s%N)
    break
  fi
  sleep 0.05
done
[ -n "$gone" ] || fail "rs3 still in rotation after $((GOAL + MARGIN + 1)) s: $L"
took_ms=$(((gone - t0) / 1000000))
log "rs3 out of rotation $took_ms ms after its nginx stopped (goal ${GOAL} s + margin ${MARGIN} s)"
[ "$took_ms" -le $(((GOAL + MARGIN) * 1000)) ] || fail "detection took $took_ms ms > $((GOAL + MARGIN)) s"
# The :81 service's checker of rs3 runs in its own phase: the same bound from the stop.
for ((i = 0; i < 200; i++)); do
  L=$(xadm "$ID" -L -n)
  w=$(lvs_dest_field "$L" "TCP $V:81" "$R3:80" Weight)
  [ "$w" = 0 ] && break
  [ $(($(date +%s%N) - t0)) -gt $(((GOAL + MARGIN) * 1000000000)) ] && break
  sleep 0.05
done
[ "$w" = 0 ] || fail "inhibit_on_failure: rs3 under :81 weight '$w' $(((GOAL + MARGIN))) s after the stop, want 0:
$L"
H=$(xadm "$ID" -L -n --health)
log "health:"
printf '%s\n' "$H" | sed 's/^/#   /'
printf '%s\n' "$H" | has -E "^TCP +$V:80 +$R3:80 +TCP_CHECK +DOWN .*refused" \
  || fail "--health does not show rs3 DOWN (refused): $H"
printf '%s\n' "$H" | has -E "^TCP +$V:80 +$R1:80 +TCP_CHECK +UP " || fail "--health rs1 not UP: $H"
J=$(xadm "$ID" -L -n --health --json)
printf '%s' "$J" | python3 -c '
import json, sys
d = json.load(sys.stdin)
down = [c for c in d["checks"] if c["state"] == "DOWN"]
assert {(c["realserver"]["address"], c["service"]["port"]) for c in down} == {(sys.argv[1], 80), (sys.argv[1], 81)}, down
assert all(c["reason"] == "refused" and c["checker"] == "TCP_CHECK" for c in down), down
' "$R3" || fail "--health --json: $J"
M=$(lab_exec "$ID" dir curl -sS --max-time 5 "http://$METRICS/metrics") || fail "metrics scrape"
printf '%s\n' "$M" | has "^xlvs_realserver_up{.*remote_address=\"$R3\".*} 0$" \
  || fail "metrics: rs3 not down: $(printf '%s\n' "$M" | grep realserver_up)"
printf '%s\n' "$M" | has "^xlvs_realserver_up{.*remote_address=\"$R1\".*} 1$" || fail "metrics: rs1 not up"
printf '%s\n' "$M" | has -E '^xlvs_health_check_failures_total\{checker="TCP_CHECK",reason="refused"\} [1-9]' \
  || fail "metrics: no refused failures counted: $(printf '%s\n' "$M" | grep failures)"
printf '%s\n' "$M" | has '^xlvs_health_check_duration_seconds_count{checker="TCP_CHECK"}' \
  || fail "metrics: no duration histogram"
if command -v promtool >/dev/null; then
  printf '%s\n' "$M" | promtool check metrics >/dev/null 2>"$D/promtool.err" || fail "promtool: $(cat "$D/promtool.err")"
fi
grep -q "removing realserver $R3:80" "$XLVSD_LOG" || fail "the removal was not logged"
grep -q "TCP_CHECK of $R3:80 .*fails: refused" "$XLVSD_LOG" || fail "the failure's reason was not logged"

log "(c) start it again"
sleep 2
lab_nginx "$ID" rs3 80 || fail "restarting rs3's nginx"
t1=$(date +%s%N)
back=
for ((i = 0; i < (DELAY + MARGIN) * 20 + 20; i++)); do
  L=$(xadm "$ID" -L -n)
  if [ -n "$(lvs_dest_field "$L" "TCP $V:80" "$R3:80" Weight)" ]; then
    back=$(date +%s%N)
    break
  fi
  sleep 0.05
done
[ -n "$back" ] || fail "rs3 not back after $((DELAY + MARGIN + 1)) s: $L"
log "rs3 back $(((back - t1) / 1000000)) ms after its nginx started (goal ${DELAY} s + margin ${MARGIN} s)"
for ((i = 0; i < 200; i++)); do
  L=$(xadm "$ID" -L -n)
  [ "$(lvs_dest_field "$L" "TCP $V:81" "$R3:80" Weight)" = 3 ] && break
  [ $(($(date +%s%N) - t1)) -gt $(((DELAY + MARGIN) * 1000000000)) ] && break
  sleep 0.05
done
[ "$(lvs_dest_field "$L" "TCP $V:81" "$R3:80" Weight)" = 3 ] || fail "rs3 under :81 not back at weight 3: $L"
seen=
for ((i = 0; i < 12; i++)); do
  seen+=" $(lab_exec "$ID" cli curl -sS --max-time 2 "http://$V/" 2>/dev/null || true)"
done
[[ "$seen" == *rs3* ]] || fail "rs3 takes no new connection after its return: $seen"
wait "$PROBE_PID" 2>/dev/null || true
# Requests started after the removal (plus one second for connections the
# scheduler had already given rs3) must all have succeeded.
bad=$(awk -v g="$gone" '$1 > g + 1000000000 && $2 != "ok" && n++ < 5' "$D/probe.log")
ok_after=$(awk -v g="$gone" '$1 > g + 1000000000 && $2 == "ok"' "$D/probe.log" | wc -l)
[ -z "$bad" ] || fail "requests failed after rs3 left rotation: $bad"
[ "$ok_after" -ge 20 ] || fail "too few probe requests after the removal: $ok_after"
before_fail=$(awk -v g="$gone" '$1 <= g && $2 != "ok"' "$D/probe.log" | wc -l)
log "probe requests: $ok_after ok after the removal, $before_fail failed before it"
log "wrk: $(grep -E 'requests in|Socket errors|Non-2xx' "$D/wrk.out" | tr -s ' ' | tr '\n' ';' || true)"

log "(d) a bad keepalived.conf"
before=$(xadm "$ID" -S -n)
printf 'virtual_server %s 82 {\n    lb_algo rr\n    lb_kind TUN\n}\n' "$V" >>"$CONF"
line=$(($(wc -l <"$CONF") - 1))
sighup_and_wait "reload failed, nothing changed: $CONF:$line:"
[ "$(xadm "$ID" -S -n)" = "$before" ] || fail "a failed reload changed the table"
rc=0
err=$(ip netns exec "$(lab_ns "$ID" dir)" timeout 10 "$XLVSD" --iface "$LAB_DIR_EXT" \
  --control "$D/other.sock" --keepalived-conf "$CONF" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "xlvsd with a bad keepalived.conf: exit $rc, want 1: $err"
[[ "$err" == *"$CONF:$line:"*TUN* ]] || fail "xlvsd with a bad keepalived.conf: '$err' names no file:line"
pass
