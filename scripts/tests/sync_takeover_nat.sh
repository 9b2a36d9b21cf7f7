#!/usr/bin/env bash
# LVS-NAT takeover by a sync backup (the NAT director pair, lab_nat_pair_up): a rate-limited
# 50 MB download runs through d1 (dir); d2 learned the connection by sync (its client's MAC
# unknown to d2's kernel: the client never talked to d2). d1 dies (xlvsd killed, every
# frame arriving dropped, its links up); the VIP and the realservers' gateway move to d2, the realservers forget d1 at
# once, the client 1 s later. The download goes on through d2 and arrives intact: the
# realserver's replies that reach d2 before any client frame leave by the route towards the
# client that d2 resolved when it learned the connection (no no_client_hop drop), and d2
# forwards the client's packets to the same realserver.
# Needs root, curl and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init tn
lab_nat_pair_up "$ID" || fail "lab_nat_pair_up"
D=$(lab_dir "$ID")
lab_nginx "$ID" rs1 80 || fail "nginx rs1"
lab_nginx "$ID" rs2 80 || fail "nginx rs2"
SUM=$(make_big "$ID" "$D/big")
write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -m -w 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -m -w 1"
SYNC=(--start-daemon master --start-daemon backup --mcast-interface int0 --syncid 3)
start_xlvsd "$ID" --iface ext0 --iface int0 --rules "$D/rules" "${SYNC[@]}" --sync-peer "$LAB_D2_INT_IP"
start_peer_xlvsd d2 --iface ext0 --iface int0 --rules "$D/rules" "${SYNC[@]}" --sync-peer "$LAB_DIR_INT_IP"

start_slow_download
# d2 holds the connection, with d1's realserver.
want=$(xadm "$ID" -L -n -c | awk '$1 == "TCP" && $3 == "ESTABLISHED" { print $4, $6 }')
got=
for ((i = 0; i < 40; i++)); do
  got=$(xadm_at d2 -L -n -c | awk '$1 == "TCP" && $3 == "ESTABLISHED" { print $4, $6 }')
  [ -n "$want" ] && [ "$got" = "$want" ] && break
  sleep 0.05
done
[ -n "$want" ] && [ "$got" = "$want" ] || fail "d2 lists '$got', d1 '$want'"
if ip netns exec "$LAB_D2_NS" ip neigh show 192.0.2.2 | has lladdr; then
  log "d2's kernel resolved the client's MAC when it learned the connection"
fi
sleep 1
download_running "before the takeover"
log "takeover: d1 dies, the VIP and the gateway move to d2"
# A dead host: nothing it receives is answered (its kernel would reset the connections to a
# VIP it still holds), then its xlvsd is gone too. The client learns the VIP's new MAC 1 s
# after the realservers learn the gateway's: the realserver's packets reach d2 first, and
# only the route towards the client can take them.
lab_pair_kill_dir "$ID" || fail "lab_pair_kill_dir"
kill -KILL "$XLVSD_PID" 2>/dev/null || true
wait "$XLVSD_PID" 2>/dev/null || true
XLVSD_PID=
lab_pair_move_to_d2 "$ID" 1 || fail "lab_pair_move_to_d2"
t0=$(date +%s%3N)
rc=0
wait "$DL" || rc=$?
TEST_BG_PIDS=("$PEER_PID")
[ "$rc" -eq 0 ] || fail "the download failed after the takeover (curl rc=$rc): $(head -c 300 "$D/dl.err"); got $(stat -c %s "$D/big.got" 2>/dev/null || echo 0) bytes
d2: $(xadm_at d2 --workers)"
[ "$(sha256sum "$D/big.got" | awk '{ print $1 }')" = "$SUM" ] || fail "the download arrived corrupted"
log "the download finished intact through d2, $(($(date +%s%3N) - t0)) ms after the takeover"
W=$(xadm_at d2 --workers)
printf '%s\n' "$W" | has "no_client_hop" && fail "d2 dropped replies for want of the client's hop:
$W"
tx=$(printf '%s\n' "$W" | awk 'NR > 1 && $1 ~ /\// { s += $3 } END { print s + 0 }')
[ "$tx" -gt 1000 ] || fail "d2 forwarded only $tx frames:
$W"
log "d2 forwarded $tx frames after the takeover, none dropped for a missing client hop"
pass
