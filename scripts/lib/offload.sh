# shellcheck shell=bash
# The XDP fast path (`xlvsd --offload`) end to end, for scripts/tests/offload_{nat,dr}.sh.
# Source it after testlib.sh.
#
#   offload_run MODE [6]
#                      MODE nat or dr: the web lab, xlvsd with --offload (nat) or by default
#                      (dr, the fast path on by default). First, with GRO off on the
#                      switch's port to the director, xlvsd refuses the fast path (that port
#                      takes no XDP redirects: the kernel's xdp_features) and forwards
#                      through the workers. Then GRO on on the director's veth peers (a veth
#                      takes XDP redirects only with NAPI on), xlvsd again, and:
#  (a) a rate-limited 50 MB download (about 10 s) through the VIP with the ESTABLISHED
#      timeout at 4 s (`xlvsadm --set 4 0 0`): the connection outlives its timeout because
#      expiry asks the XDP program when it last forwarded one of its frames; the download is
#      byte-exact; the program forwarded all but a few dozen of its frames itself (NAT: the data
#      and the ACKs; DR: the client's ACKs, the data goes straight back);
#  (b) 7.5 s in, the frames the program forwarded so far are in the realserver's counters
#      (`--stats --exact`, counted live: NAT, at least 10 MB out; DR, 50 of the client's
#      ACKs in); after the download the FIN went through a worker: the connection is listed
#      in a closing state, and within 3 s (the next count) the counters have it all (NAT,
#      at least the 50 MB out; DR, the client's ACKs in);
#  (c) 200 short requests, all answered;
#  (d) UDP: 100 datagrams from one client socket to an echo service on VIP:9000, each
#      answered by one realserver with its payload intact (checksums rewritten by the
#      program); from the second on the program forwards them (and, NAT, the replies);
#      after `-d` of its realserver the flow goes on through the program, after `-D` of
#      the service none of its next 5 datagrams is forwarded (its entries were taken back:
#      the program looks entries up before the steering maps).
# With 6, all of it over IPv6 (the lab's IPv6 VIP, client and realservers).
offload_run() {
  local mode=$1 family=${2:-4} min
  [ "$family" = 6 ] && export LAB_IPV6=1
  web_lab_up "$mode" 1
  if [ "$family" = 6 ]; then
    use_ipv6
    LAB_CLIENT_IP="[$LAB_CLIENT_IP6]"
  fi
  # The addresses as they stand in xlvsadm's listings, quoted for grep -E.
  local cip_re vip_re
  cip_re=$(ere_quote "$LAB_CLIENT_IP")
  vip_re=$(ere_quote "$LAB_VIP")
  # Where an egress port takes no XDP redirects (a veth whose peer has no NAPI: GRO off),
  # xlvsd does not turn the fast path on (the frames it sent there would be dropped), says
  # why, and forwards through the workers.
  ip netns exec "$LAB_SW_NS" ethtool -K p-dir gro off >/dev/null || fail "gro off on the switch's port to the director"
  # LVS-NAT asks for the fast path (--offload); LVS-DR takes the default: on where the
  # kernel says every port takes XDP redirects.
  local ask=()
  [ "$mode" = nat ] && ask=(--offload)
  start_rr_xlvsd "${ask[@]}"
  has "XDP fast path off: .* takes no XDP redirects" <"$XLVSD_LOG" ||
    fail "xlvsd turned the fast path on with a port that takes no XDP redirects: $(tail -n 5 "$XLVSD_LOG")"
  http_burst "$ID" "http://$LAB_VIP/" 20 4 "$D/burst0" || fail "burst timed out (fast path refused)"
  check_burst "$D/burst0" 20 "20 requests with the fast path refused"
  [ "$(xdp_stat "$ID" offloaded)" = 0 ] || fail "frames offloaded though xlvsd said the fast path was off"
  log "with the switch port's GRO off xlvsd refused the fast path: $(grep -o 'XDP fast path off: [^(]*' "$XLVSD_LOG" | head -n 1)"
  stop_xlvsd_checked
  mv "$XLVSD_LOG" "$D/xlvsd.refused.log"
  if [ "$mode" = nat ]; then
    ip netns exec "$LAB_CLI_NS" ethtool -K eth0 gro on >/dev/null || fail "gro on the client's veth"
    min=20000
  else
    min=200
  fi
  ip netns exec "$LAB_SW_NS" ethtool -K p-dir gro on >/dev/null || fail "gro on the switch's port to the director"
  SUM=$(make_big "$ID" "$D/big")
  start_rr_xlvsd "${ask[@]}"
  has "XDP fast path on" <"$XLVSD_LOG" || fail "the fast path is off ($mode, ${ask[*]:-by default}): $(tail -n 5 "$XLVSD_LOG")"
  xadm "$ID" --set 4 0 0 >/dev/null || fail "--set 4 0 0"

  local off0 st0 off steered C
  off0=$(xdp_stat "$ID" offloaded)
  st0=$(xdp_stat "$ID" steered)
  start_slow_download
  sleep 6
  download_running "6 s in (after the 4 s ESTABLISHED timeout)"
  C=$(xadm "$ID" -L -n -c)
  has -E "^TCP +[0-9:]+ +ESTABLISHED +$cip_re:[0-9]+ +$vip_re:80 +$(ere_quote "$VICTIM_IP"):80" <<<"$C" ||
    fail "the offloaded connection is not listed ESTABLISHED 6 s into its download (timeout 4 s):
$C"
  # Live counters: what the program forwards reaches --stats within a second or so (the
  # control thread reads its entries once a second), long before the connection closes.
  local mid midv
  sleep 1.5
  mid=$(xadm "$ID" -L -n --stats --exact)
  if [ "$mode" = nat ]; then
    midv=$(lvs_dest_field "$mid" "TCP $LAB_VIP:80" "$VICTIM_IP:80" OutBytes)
    log "$VICTIM's OutBytes 7.5 s into the download: $midv"
    [ "${midv:-0}" -ge 10485760 ] || fail "$VICTIM's OutBytes $midv 7.5 s into a 5 MB/s download through the fast path (want >= 10 MB, counted live):
$mid"
    # Each frame once: never more than the whole download and its headers.
    [ "$midv" -le 57671680 ] || fail "$VICTIM's OutBytes $midv 7.5 s into a 50 MB download (counted twice?):
$mid"
  else
    midv=$(lvs_dest_field "$mid" "TCP $LAB_VIP:80" "$VICTIM_IP:80" InPkts)
    log "$VICTIM's InPkts 7.5 s into the download: $midv"
    [ "${midv:-0}" -ge 50 ] || fail "$VICTIM's InPkts $midv 7.5 s into the download through the fast path (want >= 50, counted live):
$mid"
  fi
  finish_slow_download
  off=$(($(xdp_stat "$ID" offloaded) - off0))
  steered=$(($(xdp_stat "$ID" steered) - st0))
  log "$mode: 50 MB byte-exact through an offloaded connection; the XDP program forwarded $off of its frames itself, $steered went to the workers"
  [ "$off" -ge "$min" ] || fail "only $off frames offloaded in a 50 MB download (want >= $min)"
  # The handshake, the FIN and its ACK, and a few that raced the entry's creation.
  [ "$steered" -le 50 ] || fail "$steered frames of the download went to the workers (want <= 50)"

  C=$(xadm "$ID" -L -n -c)
  has -E "^TCP +[0-9:]+ +(TIME_WAIT|CLOSE|CLOSE_WAIT|FIN_WAIT|LAST_ACK) +$cip_re:[0-9]+ +$vip_re:80 +$(ere_quote "$VICTIM_IP"):80" <<<"$C" ||
    fail "the finished download's connection is not in a closing state (the FIN did not reach a worker):
$C
$(xadm "$ID" --workers)"
  local st inp outb
  # The entries' last figures are counted at the control thread's next pass (once a second).
  local i
  for ((i = 0; i < 30; i++)); do
    st=$(xadm "$ID" -L -n --stats --exact)
    inp=$(lvs_dest_field "$st" "TCP $LAB_VIP:80" "$VICTIM_IP:80" InPkts)
    outb=$(lvs_dest_field "$st" "TCP $LAB_VIP:80" "$VICTIM_IP:80" OutBytes)
    if [ "$mode" = nat ]; then
      [ "${outb:-0}" -ge 52428800 ] && break
    else
      [ "${inp:-0}" -ge "$off" ] && break
    fi
    sleep 0.1
  done
  log "$VICTIM's counters after the download ($((i * 100)) ms later): InPkts $inp, OutBytes $outb"
  # At least what went through, and each frame once: the 50 MB with their headers (54.4 MB
  # measured, 55 MB allowed); the frames the program forwarded plus those the workers did.
  if [ "$mode" = nat ]; then
    [ "${outb:-0}" -ge 52428800 ] || fail "$VICTIM's OutBytes $outb after a 50 MB download through the fast path:
$st"
    [ "$outb" -le 57671680 ] || fail "$VICTIM's OutBytes $outb after a 50 MB download (counted twice?):
$st"
  else
    [ "${inp:-0}" -ge "$off" ] || fail "$VICTIM's InPkts $inp, the program forwarded $off:
$st"
    [ "$inp" -le $((off + steered + 20)) ] || fail "$VICTIM's InPkts $inp, the program forwarded $off and the workers $steered (counted twice?):
$st"
  fi
  http_burst "$ID" "http://$LAB_VIP/" 200 4 "$D/burst" || fail "burst timed out"
  check_burst "$D/burst" 200 "200 requests with the fast path on"
  log "200 short requests answered (rs1 $BURST_RS1, rs2 $BURST_RS2)"

  lab_udp_echo "$ID" rs1 9000 || fail "udp echo rs1"
  lab_udp_echo "$ID" rs2 9000 || fail "udp echo rs2"
  local fwd=-m
  [ "$mode" = dr ] && fwd=-g
  xadm "$ID" -A -u "$LAB_VIP:9000" -s rr || fail "-A -u"
  xadm "$ID" -a -u "$LAB_VIP:9000" -r "$LAB_RS1_IP:9000" "$fwd" || fail "-a -u rs1"
  off0=$(xdp_stat "$ID" offloaded)
  local out
  # The VIP without the brackets of its IPv6 form.
  local vip=${LAB_VIP#[}
  vip=${vip%]}
  # udp_pings N TIMEOUT: N datagrams from one client socket (port 45000, the same flow
  # each time), each waiting TIMEOUT s for its answer; prints how many came back intact.
  udp_pings() {
    lab_exec "$ID" cli python3 - "$vip" "$1" "$2" <<'PY'
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", 45000))
s.settimeout(float(sys.argv[3]))
ok = 0
for i in range(int(sys.argv[2])):
    msg = b"ping-%03d" % i
    s.sendto(msg, (sys.argv[1], 9000))
    try:
        d, _ = s.recvfrom(2048)
    except (socket.timeout, ConnectionRefusedError):
        continue
    ok += d == b"rs1:" + msg
print(ok)
PY
  }
  out=$(udp_pings 100 2) || fail "the UDP client failed: $out"
  off=$(($(xdp_stat "$ID" offloaded) - off0))
  log "UDP: $out of 100 datagrams answered intact; the program forwarded $off frames of the flow itself"
  [ "$out" = 100 ] || fail "UDP: $out of 100 datagrams answered intact"
  [ "$off" -ge 90 ] || fail "UDP: the program forwarded only $off frames of the flow"
  # Its realserver deleted, the flow goes on (a deleted realserver's connections finish),
  # still by the program.
  xadm "$ID" -d -u "$LAB_VIP:9000" -r "$LAB_RS1_IP:9000" || fail "-d -u rs1"
  off0=$(xdp_stat "$ID" offloaded)
  out=$(udp_pings 3 2) || fail "the UDP client failed: $out"
  off=$(($(xdp_stat "$ID" offloaded) - off0))
  log "UDP after -d of its realserver: $out of 3 datagrams answered, the program forwarded $off"
  [ "$out" = 3 ] && [ "$off" -ge 3 ] || fail "the flow of a deleted realserver: $out of 3 answered, $off by the program"
  # Deleting the service takes the flow back from the program, which would otherwise
  # forward it from its entry alone: its datagrams meet the steering again, which no
  # longer takes them (the director's kernel answers them, or not).
  xadm "$ID" -D -u "$LAB_VIP:9000" || fail "-D -u"
  has "connection(s) of deleted services stay with the workers" <"$XLVSD_LOG" ||
    fail "deleting the UDP service kept no connection with the workers: $(tail -n 5 "$XLVSD_LOG")"
  sleep 0.2
  off0=$(xdp_stat "$ID" offloaded)
  out=$(udp_pings 5 0.3) || fail "the UDP client failed: $out"
  off=$(($(xdp_stat "$ID" offloaded) - off0))
  log "UDP after -D: $out of 5 datagrams answered, the program forwarded $off"
  [ "$out" = 0 ] && [ "$off" = 0 ] || fail "the deleted UDP service's flow still forwarded: $out answered, $off by the program"
  xlvsd_alive "at the end"
}
