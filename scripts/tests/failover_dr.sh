#!/usr/bin/env bash
# Director failover with real keepalived (VRRPv3, advert_int 0.1, `keepalived -P`), LVS-DR:
# the DR lab plus d2 (the VIP left to keepalived), each director running xlvsd with sync
# both ways and keepalived with docs/keepalived/dr-pair.conf (notify
# `xlvsadm --vrrp-notify`; track `xlvsadm --check`). 100 rate-limited downloads run through
# the VIP; the master dies hard (everything it receives dropped, then keepalived and xlvsd
# SIGKILLed). Then:
#  - every download completes byte-exact, and the client's capture holds no RST;
#  - takeover time: from the kill to the first client frame the new master forwards to a
#    realserver (a capture on its switch port, frames from its MAC); goal < 1 s, allowed 1.5 s;
#  - keepalived's own part (the kill to the new master's MASTER notify) is printed beside.
# Needs root, keepalived, tshark, curl and target/release/{xlvsd,xlvsadm}.
# xlvs-test: alone
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/failover.sh
. "$HERE/../lib/failover.sh"
command -v keepalived >/dev/null || fail "keepalived not installed (scripts/setup.sh)"

test_init fd
lab_dr_up "$ID" 1 || fail "lab_dr_up"
D=$(lab_dir "$ID")
lab_add_dir2 "$ID" || fail "lab_add_dir2"
# keepalived holds the VIP.
ip -n "$LAB_DIR_NS" addr del "$LAB_VIP/32" dev eth0
lab_nginx "$ID" rs1 80 || fail "nginx rs1"
lab_nginx "$ID" rs2 80 || fail "nginx rs2"
write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -g -w 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -g -w 1"
SYNC=(--start-daemon master --start-daemon backup --mcast-interface eth0 --syncid 7)
start_xlvsd "$ID" --iface eth0 --rules "$D/rules" "${SYNC[@]}" --sync-peer "$LAB_D2_IP"
start_peer_xlvsd d2 --iface eth0 --rules "$D/rules" "${SYNC[@]}" --sync-peer "$LAB_DIR_IP"

fo_keepalived "$TESTLIB_ROOT/docs/keepalived/dr-pair.conf"
ip -n "$LAB_DIR_NS" -4 addr show dev eth0 | grep -q "$LAB_VIP/32" || fail "d1 has no VIP"
log "keepalived: d1 MASTER (holds the VIP), d2 BACKUP; the notify reached both xlvsd"
D2MAC=$(ip -n "$LAB_D2_NS" link show eth0 | awk '/link\/ether/ { print $2 }')
fo_captures p-d2 "tcp and ether src $D2MAC"
fo_downloads 1000000
sleep 2
fo_kill_dir eth0
fo_verdict
pass
