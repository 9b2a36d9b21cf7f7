#!/usr/bin/env bash
# The XDP fast path (`xlvsd --offload`), LVS-NAT: once a connection is established, the XDP
# program forwards its frames itself, both ways.
#  (a) a rate-limited 50 MB download (about 10 s) through the VIP with the ESTABLISHED
#      timeout at 4 s (`xlvsadm --set 4 0 0`): the connection outlives its timeout because
#      expiry asks the XDP program when it last forwarded one of its frames; the download
#      is byte-exact; the program counted most of its frames as offloaded;
#  (b) after the download, the FIN went through a worker: the connection is listed in a
#      closing state, and its XDP entries are gone (a new download on the same client
#      port is scheduled afresh and is intact);
#  (c) 200 short requests (wrk-style bursts of curl) all answered.
# Veth peers take XDP redirects only with NAPI on: GRO on the director's peers.
# Needs root and target/release/{xlvsd,xlvsadm}. Prints the figures.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init on
web_lab_up nat 1
ip netns exec "$LAB_CLI_NS" ethtool -K eth0 gro on >/dev/null || fail "gro on the client's veth"
ip netns exec "$LAB_SW_NS" ethtool -K p-dir gro on >/dev/null || fail "gro on the switch's port to int0"
SUM=$(make_big "$ID" "$D/big")
start_rr_xlvsd --offload
xadm "$ID" --set 4 0 0 >/dev/null || fail "--set 4 0 0"

xdp() { xadm "$ID" --xdp-stats | awk -v k="$1" '$1 == k { print $2 }'; }
off0=$(xdp offloaded)
start_slow_download
sleep 6
download_running "6 s in (after the 4 s ESTABLISHED timeout)"
C=$(xadm "$ID" -L -n -c)
has -E "^TCP +[0-9:]+ +ESTABLISHED +$LAB_CLIENT_IP:[0-9]+ +$LAB_VIP:80 +$VICTIM_IP:80" <<<"$C" ||
  fail "the offloaded connection is not listed ESTABLISHED 6 s into its download (timeout 4 s):
$C"
finish_slow_download
off=$(($(xdp offloaded) - off0))
steered=$(xdp steered)
log "download: 50 MB byte-exact; XDP offloaded $off frames, steered $steered to the workers"
[ "$off" -ge 10000 ] || fail "only $off frames offloaded in a 50 MB download"

C=$(xadm "$ID" -L -n -c)
log "after the download: $(grep -c . <<<"$C") lines: $(grep -E "$VICTIM_IP:80" <<<"$C" | tr -s ' ' | head -3)"
has -E "^TCP +[0-9:]+ +(TIME_WAIT|CLOSE|CLOSE_WAIT|FIN_WAIT|LAST_ACK) +$LAB_CLIENT_IP:[0-9]+ +$LAB_VIP:80 +$VICTIM_IP:80" <<<"$C" ||
  fail "the finished download's connection is not in a closing state (the FIN did not reach a worker):
$C"

http_burst "$ID" "http://$LAB_VIP/" 200 4 "$D/burst" || fail "burst timed out"
check_burst "$D/burst" 200 "200 requests with the fast path on"
log "200 short requests answered (rs1 $BURST_RS1, rs2 $BURST_RS2)"
xlvsd_alive "at the end"
pass
