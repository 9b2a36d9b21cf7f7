#!/usr/bin/env bash
# A realserver that fails its health check while a download from it runs
# (NAT lab, keepalived.conf with MISC_CHECKs the test flips; its lvs_sync_daemon starts
# the sync daemons):
#  (a) by default (IPVS's expire_nodest_conn=0) the download carries on to
#      the end, intact, though the realserver left the table;
#  (b) with xlvsd --expire-nodest-conn its next packets are dropped and the
#      connection expires (gone from -L -c), so the download stops; new
#      connections go to the live realserver;
#  (c) a MISC_CHECK with `user nobody` runs as nobody; a TCP_CHECK leaves from
#      its `bindto` (the director's address: up; an address the director does
#      not have: down).
# (Not given to `keepalived -t`: keepalived 2.2.7's config test hangs on a
# script user other than root here.)
# Needs root and target/release/{xlvsd,xlvsadm}.
# Alone: case (b) times the download's stall.
# xlvs-test: alone
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init hn

web_lab_up nat 1
SUM=$(make_big "$ID" "$D/big")
V=$LAB_VIP
printf '#!/bin/sh\nexit "$(cat %s/code-"$1")"\n' "$D" >"$D/check.sh"
chmod 755 "$D/check.sh"
CONF=$D/keepalived.conf
{
  # keepalived's sync daemons, their sync id from the VRRP instance (xlvsd skips the
  # instance itself; keepalived -P runs it).
  printf 'global_defs {\n    lvs_sync_daemon %s VI_1\n}\n' "$LAB_DIR_INT"
  printf 'vrrp_instance VI_1 {\n    interface %s\n    virtual_router_id 61\n    priority 100\n    virtual_ipaddress {\n        10.10.0.100/24\n    }\n}\n' "$LAB_DIR_INT"
  printf 'virtual_server %s 80 {\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n' "$V"
  for r in rs1 rs2; do
    ip=$LAB_RS1_IP
    [ "$r" = rs2 ] && ip=$LAB_RS2_IP
    printf '    real_server %s 80 {\n        MISC_CHECK {\n            misc_path "%s/check.sh %s"\n        }\n    }\n' "$ip" "$D" "$r"
  done
  printf '}\n'
  printf 'virtual_server %s 86 {\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n' "$V"
  printf '    real_server %s 80 {\n        MISC_CHECK {\n            misc_path "%s/asuser.sh"\n            user nobody\n        }\n    }\n' "$LAB_RS1_IP" "$D"
  printf '    real_server %s 80 {\n        TCP_CHECK {\n            bindto %s\n            connect_timeout 1\n        }\n    }\n' "$LAB_RS2_IP" "$LAB_DIR_INT_IP"
  printf '}\n'
  printf 'virtual_server %s 87 {\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n' "$V"
  printf '    real_server %s 80 {\n        TCP_CHECK {\n            bindto 10.10.0.77\n            connect_timeout 1\n            retry 0\n        }\n    }\n' "$LAB_RS2_IP"
  printf '}\n'
} >"$CONF"
printf '#!/bin/sh\n[ "$(id -u)" = "$(id -u nobody)" ]\n' >"$D/asuser.sh"
chmod 755 "$D/asuser.sh"

# fail_victim: the realserver serving the download fails its check; wait
# until it left the table.
fail_victim() {
  local i L
  echo 1 >"$D/code-$VICTIM"
  for ((i = 0; i < 50; i++)); do
    L=$(xadm "$ID" -L -n)
    [ -z "$(lvs_dest_field "$L" "TCP $V:80" "$VICTIM_IP:80" Weight)" ] && return 0
    sleep 0.1
  done
  fail "$VICTIM still in the table 5 s after its check failed: $L"
}

log "(a) default: the download carries on"
echo 0 >"$D/code-rs1"
echo 0 >"$D/code-rs2"
start_xlvsd "$ID" --iface "$LAB_DIR_EXT" --iface "$LAB_DIR_INT" --keepalived-conf "$CONF"
L=$(xadm "$ID" -L --daemon)
[ "$L" = "master sync daemon (mcast=$LAB_DIR_INT, syncid=61, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)
backup sync daemon (mcast=$LAB_DIR_INT, syncid=61, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)" ] \
  || fail "lvs_sync_daemon's daemons: $L"
sleep 1.5 # first checks (warmup: up to delay_loop)
start_slow_download
fail_victim
sleep 1
download_running "right after its realserver left the table"
finish_slow_download
log "the download from $VICTIM completed intact after $VICTIM left the table"
stop_xlvsd_checked

log "(b) --expire-nodest-conn: the connection expires"
echo 0 >"$D/code-rs1"
echo 0 >"$D/code-rs2"
rm -f "$D/big.got"
start_xlvsd "$ID" --iface "$LAB_DIR_EXT" --iface "$LAB_DIR_INT" --keepalived-conf "$CONF" --expire-nodest-conn
sleep 1.5
start_slow_download
fail_victim
for ((i = 0; i < 50; i++)); do
  C=$(xadm "$ID" -L -n -c)
  printf '%s\n' "$C" | has "$VICTIM_IP:80" || break
  sleep 0.1
done
printf '%s\n' "$C" | has "$VICTIM_IP:80" && fail "the connection to $VICTIM is still listed: $C"
grep -q "expire_nodest_conn: 1 connection(s)" "$XLVSD_LOG" || fail "the expiry was not logged"
# No byte arrives any more: the connection is gone (the client would time out). Counted by
# the client's socket (bytes_received), not the file: curl (5 MB/s) goes on writing what its
# socket had buffered before the expiry, which autotuning can make megabytes.
rx() { lab_exec "$ID" cli ss -tniH dst "$V:80" | grep -o 'bytes_received:[0-9]*' | cut -d: -f2 | head -1; }
sleep 0.5
s1=$(rx)
sleep 2
s2=$(rx)
kill -0 "$DL" 2>/dev/null || fail "the download ended by itself"
kill "$DL" 2>/dev/null || true
wait "$DL" 2>/dev/null || true
TEST_BG_PIDS=()
[ -n "$s1" ] && [ "$s1" = "$s2" ] && [ "$s2" -lt 52428800 ] || fail "the download goes on (the client's socket received ${s1:-?} then ${s2:-?} bytes) though its connection expired
connections: $(xadm "$ID" -L -n -c)
table: $(xadm "$ID" -L -n --stats)
xdp: $(xadm "$ID" --xdp-stats | tr '\n' ' ')
client sockets: $(lab_exec "$ID" cli ss -tni 2>&1 | head -8)"
log "the download stalled at $s2 bytes received once its connection expired"
[ "$(lab_exec "$ID" cli curl -sS --max-time 3 "http://$V/")" = "$OTHER" ] || fail "a new connection does not go to $OTHER"

log "(c) script user and bindto"
H=$(xadm "$ID" -L -n --health)
printf '%s\n' "$H" | has -E "^TCP +$V:86 +$LAB_RS1_IP:80 +MISC_CHECK +UP " || fail "user nobody: the script did not run as nobody: $H"
printf '%s\n' "$H" | has -E "^TCP +$V:86 +$LAB_RS2_IP:80 +TCP_CHECK +UP " || fail "bindto $LAB_DIR_INT_IP: $H"
printf '%s\n' "$H" | has -E "^TCP +$V:87 +$LAB_RS2_IP:80 +TCP_CHECK +DOWN .*(address|Address)" \
  || fail "bindto an address the director does not have: want DOWN: $H"
pass
