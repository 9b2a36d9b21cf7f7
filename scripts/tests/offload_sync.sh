#!/usr/bin/env bash
# The XDP fast path on a sync master (DR lab plus a second director d2): d1 runs
# `xlvsd --offload` with a sync master (syncid 9) and an ESTABLISHED timeout of 4 s
# (`--set 4 0 0`), d2 a sync backup. A rate-limited 50 MB download through d1's VIP (about
# 10 s): d1's XDP program forwards the client's frames itself and counts them as IPVS's sync
# rule does (threshold 3, period 50), handing the 53rd, 103rd... to a worker, which reports
# the connection. Each report refreshes d2's entry (a v1 entry lives the master's timeout,
# 4 s, from its message), so 6 s into the download d2 still lists the connection ESTABLISHED,
# expiring within 4 s; without the hand-over its entry would have gone 4 s after the
# handshake. The download is byte-exact; the program forwarded the flow's frames but a few,
# and handed workers about one in 50.
# Needs root and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init osy
web_lab_up dr 1
lab_add_dir2 "$ID" || fail "lab_add_dir2"
# A veth takes XDP redirects only with NAPI on (scripts/lib/offload.sh).
ip netns exec "$LAB_SW_NS" ethtool -K p-dir gro on >/dev/null || fail "gro on the switch's port to d1"
write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -g -w 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -g -w 1"
SUM=$(make_big "$ID" "$D/big")
start_xlvsd "$ID" --iface eth0 --rules "$D/rules" --offload \
  --start-daemon master --mcast-interface eth0 --syncid 9
start_peer_xlvsd d2 --iface eth0 --rules "$D/rules" \
  --start-daemon backup --mcast-interface eth0 --syncid 9
xadm "$ID" --set 4 0 0 >/dev/null || fail "--set 4 0 0"

off0=$(xdp_stat "$ID" offloaded)
h0=$(xdp_stat "$ID" sync_handed)
st0=$(xdp_stat "$ID" steered)
start_slow_download
row() { awk -v c="$LAB_CLIENT_IP" -v v="$LAB_VIP:80" -v d="$VICTIM_IP:80" \
  '$1 == "TCP" && index($4, c ":") == 1 && $5 == v && $6 == d'; }
L2=$(xadm_at d2 -L -n -c | row)
has ESTABLISHED <<<"$L2" || fail "d2 does not list the download's connection at its start: '$L2'"
sleep 6
download_running "6 s in (1.5 times the 4 s timeout)"
L2=$(xadm_at d2 -L -n -c | row)
has ESTABLISHED <<<"$L2" || fail "6 s into the download (master timeout 4 s) d2 no longer lists its connection ESTABLISHED: '$L2'
d1: $(xadm "$ID" --xdp-stats | tr '\n' ' ')"
# The expire column, mm:ss: within the master's 4 s of d2's last message.
left=$(awk '{ split($2, t, ":"); print t[1] * 60 + t[2] }' <<<"$L2")
[ "$left" -le 4 ] || fail "d2's entry expires in $left s, more than the master's 4 s: '$L2'"
h_mid=$(($(xdp_stat "$ID" sync_handed) - h0))
[ "$h_mid" -ge 2 ] || fail "the program handed $h_mid frames to the workers for the sync rule in 6 s"
log "6 s into the download d2 lists it ESTABLISHED, expiring in $left s; d1's program handed $h_mid frames for the sync rule so far"
finish_slow_download
bg_track "$PEER_PID"
off=$(($(xdp_stat "$ID" offloaded) - off0))
h=$(($(xdp_stat "$ID" sync_handed) - h0))
steered=$(($(xdp_stat "$ID" steered) - st0))
log "50 MB byte-exact through an offloaded connection on a sync master: the program forwarded $off of the client's frames, handed $h to the workers for the sync rule; $steered went to workers in all"
[ "$off" -ge 200 ] || fail "only $off frames offloaded in a 50 MB download (want >= 200)"
# About one in 50 of the frames the program saw.
lo=$(((off + h) / 50 - 2)) hi=$(((off + h) / 50 + 2))
[ "$h" -ge "$lo" ] && [ "$h" -le "$hi" ] ||
  fail "handed $h of $((off + h)) frames for the sync rule, want one in 50 ($lo..$hi)"
# The handshake, the FIN, the handed ones and a few that raced the entry's creation.
[ "$steered" -le $((h + 50)) ] || fail "$steered frames of the download went to the workers (want <= $((h + 50)))"
stop_peer_xlvsd
xlvsd_alive "at the end"
pass
