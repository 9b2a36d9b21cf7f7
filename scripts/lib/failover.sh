# shellcheck shell=bash
# The director-pair failover tests' common steps (scripts/tests/failover_*.sh), on top of
# testlib.sh: both directors' xlvsd already run (start_xlvsd for dir, start_peer_xlvsd for
# d2); D is the lab dir. Every wait is bounded.

# fo_pin ROLE: xlvsd's --pin-dir argument for ROLE, on the lab's own bpffs (so its XDP
# program outlives a killed xlvsd, as on a host with /sys/fs/bpf).
fo_pin() {
  local d
  # FO_NOPIN=1: no pinning (shows what the pin prevents).
  [ "${FO_NOPIN:-0}" = 1 ] && { echo --pin-dir=none; return; }
  d=$(lab_bpffs "$ID") || fail "lab_bpffs"
  printf -- '--pin-dir=%s/%s\n' "$d" "$1"
}

# fo_lab MODE: the director pair's lab for MODE (nat: lab_nat_pair_up with the floating
# addresses left to keepalived; dr: the DR lab plus d2, the VIP taken off d1 for keepalived),
# nginx on rs1 and rs2; sets D and FO_MODE.
fo_lab() {
  FO_MODE=$1
  if [ "$FO_MODE" = nat ]; then
    LAB_PAIR_FLOATING=0 lab_nat_pair_up "$ID" || fail "lab_nat_pair_up"
  else
    lab_dr_up "$ID" 1 || fail "lab_dr_up"
    lab_add_dir2 "$ID" || fail "lab_add_dir2"
    ip -n "$LAB_DIR_NS" addr del "$LAB_VIP/32" dev eth0
  fi
  D=$(lab_dir "$ID")
  lab_nginx "$ID" rs1 80 || fail "nginx rs1"
  lab_nginx "$ID" rs2 80 || fail "nginx rs2"
}

# fo_pair MODE: fo_lab MODE, rr over rs1 and rs2 on VIP:80 in $D/rules, and both xlvsd.
fo_pair() {
  local m=-g
  fo_lab "$1"
  [ "$1" = nat ] && m=-m
  write_rules "$D/rules" \
    "-A -t $LAB_VIP:80 -s rr" \
    "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 $m -w 1" \
    "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 $m -w 1"
  fo_start_d1
  fo_start_d2
}

# fo_xlvsd_args ROLE: ROLE's xlvsd arguments: its interfaces, $D/rules, sync both ways with
# the other director as peer, XDP pinned on the lab's bpffs.
fo_xlvsd_args() {
  local peer pin=d1
  if [ "$FO_MODE" = nat ]; then
    FO_ARGS=(--iface ext0 --iface int0 --mcast-interface int0)
    peer=$LAB_D2_INT_IP
    [ "$1" = d2 ] && peer=$LAB_DIR_INT_IP
  else
    FO_ARGS=(--iface eth0 --mcast-interface eth0)
    peer=$LAB_D2_IP
    [ "$1" = d2 ] && peer=$LAB_DIR_IP
  fi
  [ "$1" = d2 ] && pin=d2
  FO_ARGS+=(--rules "$D/rules" --start-daemon master --start-daemon backup --syncid 7
    --sync-peer "$peer" "$(fo_pin "$pin")")
}

# fo_start_d1, fo_start_d2: each director's xlvsd (fo_xlvsd_args).
fo_start_d1() {
  fo_xlvsd_args dir
  start_xlvsd "$ID" "${FO_ARGS[@]}"
}
fo_start_d2() {
  fo_xlvsd_args d2
  start_peer_xlvsd d2 "${FO_ARGS[@]}"
}

# fo_keepalived CONF: keepalived -P on dir and d2 with the documented CONF, our paths put in
# (d2: router_id xlvs-d2, priority 100; FO_NOPREEMPT=1: nopreempt in every instance);
# waits until dir is MASTER and d2 BACKUP as their xlvsd heard from the notify hook.
fo_keepalived() {
  local conf=$1
  sed "s|/usr/sbin/xlvsadm|$XLVSADM --control $(xlvs_sock "$ID")|" "$conf" >"$D/ka1.conf"
  sed -e "s|/usr/sbin/xlvsadm|$XLVSADM --control $D/xlvsd-d2.sock|" \
    -e 's/router_id xlvs-d1/router_id xlvs-d2/' -e 's/priority 150/priority 100/' \
    "$conf" >"$D/ka2.conf"
  if [ "${FO_NOPREEMPT:-0}" = 1 ]; then
    sed -i 's/^\( *\)state BACKUP$/&\n\1nopreempt/' "$D/ka1.conf" "$D/ka2.conf"
  fi
  fo_keepalived_start dir 1
  # Without preemption the first node to time out stays MASTER: d1 first.
  [ "${FO_NOPREEMPT:-0}" = 1 ] && fo_wait MASTER - 10
  fo_keepalived_start d2 2
  fo_wait MASTER BACKUP 10
}

# fo_wait S1 S2 SECS: until d1's xlvsd has heard state S1 from keepalived and d2's S2 ("-":
# any, not asked), at most SECS seconds, else fails with both keepalived logs' tails. FO_SINCE1 and
# FO_SINCE2: how long ago (ms) each heard its state.
fo_wait() {
  local end s1= s2=
  end=$(($(date +%s) + $3))
  while [ "$(date +%s)" -lt "$end" ]; do
    # A dead director's xlvsd is not asked.
    [ "$1" = - ] || read -r s1 FO_SINCE1 < <(fo_vrrp_state dir)
    [ "$2" = - ] || read -r s2 FO_SINCE2 < <(fo_vrrp_state d2)
    [[ ($1 == - || $s1 == "$1") && ($2 == - || $s2 == "$2") ]] && return 0
    sleep 0.05
  done
  fail "VRRP after $3 s: d1 '$s1', d2 '$s2' (want $1, $2)
d1's keepalived: $(grep -Ev 'gratuitous' "$D/ka1.log" | tail -n 12)
d2's keepalived: $(grep -Ev 'gratuitous' "$D/ka2.log" | tail -n 12)"
}

# fo_keepalived_start ROLE N: keepalived -P in ROLE's netns with $D/kaN.conf.
fo_keepalived_start() {
  # A restarted host starts without its old pid files (a killed keepalived's pid may have
  # been reused, and keepalived would then refuse to start: "daemon is already running").
  rm -f "$D/ka$2.pid" "$D/ka$2-vrrp.pid"
  ip netns exec "$(lab_ns "$ID" "$1")" keepalived -n -l -D -G -P -f "$D/ka$2.conf" -p "$D/ka$2.pid" \
    -r "$D/ka$2-vrrp.pid" </dev/null >"$D/ka$2.log" 2>&1 &
  bg_track $!
}

# fo_vrrp_state ROLE: "STATE SINCE_MS" as ROLE's xlvsd last heard from keepalived.
fo_vrrp_state() {
  local j
  if [ "$1" = d2 ]; then j=$(xadm_at d2 -L --daemon --json); else j=$(xadm "$ID" -L --daemon --json); fi
  printf '%s' "$j" | python3 -c 'import json,sys; v=json.load(sys.stdin)["vrrp"]; print(v["state"] if v else "none", v["since_ms"] if v else 0)'
}

# fo_captures PORT FILTER: RSTs on the client side ($D/rst.pcap, RSTCAP its pid), the
# VIP's frames to the client, headers only ($D/cli.pcap, CLICAP; for the gap a client sees),
# and the first frame matching FILTER on the switch port PORT ($D/first.pcap): d2's first
# forwarded.
fo_captures() {
  fo_client_captures
  declare -gA FO_RST0
  local role
  for role in ${FO_STACKS-d2}; do FO_RST0[$role]=$(fo_out_rsts "$role"); done
  ip netns exec "$LAB_SW_NS" timeout 60 tshark -i "$1" -f "$2" -c 1 -w "$D/first.pcap" >/dev/null 2>&1 &
  bg_track $!
  sleep 1.5
}

# fo_client_captures: at the client, the RSTs it receives ($D/rst.pcap, RSTCAP) and the
# first 96 bytes of every TCP frame from the VIP ($D/cli.pcap, CLICAP), for 60 s at most.
fo_client_captures() {
  ip netns exec "$LAB_CLI_NS" timeout 60 tshark -i eth0 -f "tcp[tcpflags] & tcp-rst != 0" \
    -w "$D/rst.pcap" >/dev/null 2>&1 &
  RSTCAP=$!
  bg_track $RSTCAP
  ip netns exec "$LAB_CLI_NS" timeout 60 tshark -i eth0 -s 96 -f "tcp and src host $LAB_VIP" \
    -w "$D/cli.pcap" >/dev/null 2>&1 &
  CLICAP=$!
  bg_track $CLICAP
}

# fo_mid_downloads N BYTES: files of BYTES on rs1 and rs2 ("mid", their sums in SUMS), and N
# downloads of it at 100 kB/s through the VIP into $D/dl/1..N (DL their pid).
fo_mid_downloads() {
  local r i urls=()
  for r in rs1 rs2; do head -c "$2" /dev/urandom >"$(lab_wwwdir "$ID" "$r")/mid"; done
  SUMS="$(sha256sum "$(lab_wwwdir "$ID" rs1)/mid" "$(lab_wwwdir "$ID" rs2)/mid" | awk '{ print $1 }')"
  log "$1 downloads of $2 bytes at 100 kB/s through the VIP"
  mkdir -p "$D/dl"
  for i in $(seq 1 "$1"); do urls+=(-o "$D/dl/$i" "http://$LAB_VIP/mid"); done
  lab_exec "$ID" cli timeout 60 curl -sS --parallel --parallel-immediate --parallel-max "$1" \
    --limit-rate 100k --max-time 50 "${urls[@]}" </dev/null >/dev/null 2>"$D/curl.err" &
  DL=$!
  bg_track $DL
}

# fo_mid_intact N: the downloads of fo_mid_downloads ended well and each is byte-exact.
fo_mid_intact() {
  local rc=0 bad=0 i s
  wait "$DL" || rc=$?
  [ "$rc" -eq 0 ] || fail "curl exit $rc: $(head -c 400 "$D/curl.err")"
  for i in $(seq 1 "$1"); do
    s=$(sha256sum "$D/dl/$i" | awk '{ print $1 }')
    grep -qx "$s" <<<"$SUMS" || bad=$((bad + 1))
  done
  [ "$bad" = 0 ] || fail "$bad of $1 downloads corrupted or incomplete"
}

# fo_downloads BYTES: files of BYTES on rs1 and rs2 ("mid"); 100 downloads of it at
# 100 kB/s through the VIP (DL their pid); waits until d2 holds them by sync.
fo_downloads() {
  local i n=0
  fo_mid_downloads 100 "$1"
  for ((i = 0; i < 100; i++)); do
    n=$(xadm_at d2 -L -n -c | awk '$1 == "TCP" && $3 == "ESTABLISHED"' | wc -l)
    [ "$n" -ge 100 ] && break
    sleep 0.05
  done
  log "d2 holds $n established connections by sync"
}

# fo_wrk SECONDS: wrk with 8 keep-alive connections through the VIP, each sending a request
# every 20 ms (about 400 requests/s), for SECONDS; its output in $D/wrk.out (WRK its pid).
fo_wrk() {
  local r
  for r in rs1 rs2; do echo "small page $r" >"$(lab_wwwdir "$ID" "$r")/small"; done
  printf 'function delay()\n  return 20\nend\n' >"$D/wrk.lua"
  log "wrk: 8 keep-alive connections, a request every 20 ms each, for $1 s"
  lab_exec "$ID" cli wrk -t1 -c8 -d"$1"s --timeout 5s -s "$D/wrk.lua" "http://$LAB_VIP/small" \
    </dev/null >"$D/wrk.out" 2>&1 &
  WRK=$!
  bg_track $WRK
}

# fo_young N BYTES: N downloads of BYTES at 100 kB/s opened about 10 ms apart, then 4 more
# 2 ms apart, the caller's kill following at once: the connections range from about 150 ms
# old to just born or not yet (a SYN the dead master never saw is retransmitted to the new
# one after 1 s). Their start
# times in $D/young/N.t, YOUNG their pids.
fo_young() {
  local r i n=$1
  for r in rs1 rs2; do head -c "$2" /dev/urandom >"$(lab_wwwdir "$ID" "$r")/young"; done
  YSUMS="$(sha256sum "$(lab_wwwdir "$ID" rs1)/young" "$(lab_wwwdir "$ID" rs2)/young" | awk '{ print $1 }')"
  mkdir -p "$D/young"
  YOUNG=()
  for ((i = 1; i <= n + 4; i++)); do
    (
      echo "$EPOCHREALTIME" >"$D/young/$i.t"
      exec ip netns exec "$LAB_CLI_NS" timeout 30 curl -sS --limit-rate 100k --max-time 20 \
        -w '%{time_connect} %{local_port}\n' -o "$D/young/$i" "http://$LAB_VIP/young" \
        </dev/null >"$D/young/$i.w" 2>"$D/young/$i.err"
    ) &
    YOUNG+=($!)
    bg_track $!
    if [ "$i" -lt "$n" ]; then sleep 0.008; else sleep 0.002; fi
  done
  return 0
}

# fo_young_verdict: every young download complete and byte-exact, but one whose handshake
# completed at most YOUNG_WINDOW_MS before the master's xlvsd was killed (TK), which may
# stall (never reset). The worker that establishes a connection wakes the sync master at
# once, but the datagram leaves from the control thread: a connection established in the
# last moments before the SIGKILL (or on this 2-core lab, while the control thread waits
# for a CPU) dies with the master. The age of each is the time from the SYN-ACK the client
# saw (cli.pcap) to TK; prints them, and the stalled ones.
YOUNG_WINDOW_MS=${YOUNG_WINDOW_MS:-10}
fo_young_verdict() {
  local i rc s age ages=() bad=0 lost=() n=${#YOUNG[@]} ports=()
  for ((i = 1; i <= n; i++)); do ports+=("$(awk '{ print $2 }' "$D/young/$i.w" 2>/dev/null)"); done
  # Ages (ms before TK) of every young connection's SYN-ACK at the client, in order.
  mapfile -t ages < <(tshark -r "$D/cli.pcap" -Y "tcp.flags.syn == 1 && tcp.flags.ack == 1" \
    -T fields -e tcp.dstport -e frame.time_epoch 2>/dev/null | python3 -c '
import sys
tk = float(sys.argv[1])
seen = {}
for line in sys.stdin:
    p, t = line.split()
    seen.setdefault(p, float(t))
for p in sys.argv[2:]:
    print(round(tk - seen[p] * 1000) if p in seen else "none")' "$TK" "${ports[@]}")
  for ((i = 1; i <= n; i++)); do
    rc=0
    wait "${YOUNG[$((i - 1))]}" || rc=$?
    age=${ages[$((i - 1))]:-none}
    if [ "$rc" -ne 0 ]; then
      # Only one whose handshake completed just before the master's death may be unknown to
      # the new master; it must then stall (a timeout), never reset.
      if [ "$rc" -eq 28 ] && [ "$age" != none ] && [ "$age" -le "$YOUNG_WINDOW_MS" ]; then
        lost+=("$age")
        fo_young_lost_report "$i" "$age"
        continue
      fi
      local port
      port=$(awk '{ print $2 }' "$D/young/$i.w")
      fail "young download $i (SYN-ACK $age ms before the SIGKILL, client port $port): curl exit $rc: $(head -c 300 "$D/young/$i.err")
d1's entry: $(timeout 5 "$XLVSADM" --control "$(xlvs_sock "$ID")" -L -n -c 2>&1 | grep ":$port " || echo none)
d2's entry: $(timeout 5 "$XLVSADM" --control "$D/xlvsd-d2.sock" -L -n -c 2>&1 | grep ":$port " || echo none)"
    fi
    s=$(sha256sum "$D/young/$i" | awk '{ print $1 }')
    grep -qx "$s" <<<"$YSUMS" || bad=$((bad + 1))
  done
  [ "$bad" = 0 ] || fail "$bad young downloads arrived corrupted"
  local note=
  [ "${#lost[@]}" -gt 0 ] &&
    note="; ${#lost[@]} stalled, not reset (SYN-ACK ${lost[*]} ms before the SIGKILL: unknown to the new master)"
  log "$n connections whose client saw the SYN-ACK ${ages[*]} ms before the master's xlvsd was SIGKILLed (negative: after; none: no SYN-ACK from the old master): $((n - ${#lost[@]})) completed byte-exact$note"
}

# fo_young_lost_report I AGE: what is known of young download I that stalled: d2's entry,
# the client's view of its handshake (cli.pcap) and, when FO_SYNCCAP captured d2's sync
# socket, every sync entry for it, times relative to the kill.
fo_young_lost_report() {
  local port
  port=$(awk '{ print $2 }' "$D/young/$1.w")
  log "stalled young download $1 (SYN-ACK $2 ms before the SIGKILL, client port $port): d2's entry: $(timeout 5 "$XLVSADM" --control "$D/xlvsd-d2.sock" -L -n -c 2>&1 | grep ":$port " || echo none)"
  log "  from the VIP (ms after the SIGKILL): $(tshark -r "$D/cli.pcap" -Y "tcp.dstport == $port" -T fields -e frame.time_epoch -e tcp.flags.str 2>/dev/null | head -4 | awk -v t0="$TK" '{ printf "%d %s; ", $1 * 1000 - t0, $2 }')"
  [ -f "$D/sync.pcap" ] &&
    log "  sync entries (ms after the SIGKILL, state): $(tshark -r "$D/sync.pcap" -d udp.port==8848,ipvs -Y "ipvs.cport == $port" -T fields -e frame.time_epoch -e ipvs.state 2>/dev/null | awk -v t0="$TK" '{ printf "%d %s; ", $1 * 1000 - t0, $2 }')"
  return 0
}

# fo_wrk_verdict: wrk's socket errors and non-2xx responses (none allowed: a request in
# flight at the kill is retransmitted by TCP and answered late, not lost).
fo_wrk_verdict() {
  local rc=0 errs non2xx reqs
  wait "$WRK" || rc=$?
  [ "$rc" -eq 0 ] || fail "wrk exit $rc: $(cat "$D/wrk.out")"
  reqs=$(awk '/requests in/ { print $1 }' "$D/wrk.out")
  errs=$(sed -n 's/.*Socket errors: //p' "$D/wrk.out")
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$D/wrk.out")
  log "wrk: ${reqs:-?} requests over 8 keep-alive connections; socket errors: ${errs:-none}; non-2xx: ${non2xx:-0}; latency $(awk '/Latency/ { print "avg " $2 ", max " $4 }' "$D/wrk.out")"
  [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || fail "wrk made no requests: $(cat "$D/wrk.out")"
  [ -z "$errs" ] || fail "wrk socket errors: $errs"
  [ -z "$non2xx" ] || fail "wrk got $non2xx non-2xx responses"
}

# fo_kill_dir [DEV...]: dir dies hard (fo_kill dir).
fo_kill_dir() { fo_kill dir "$@"; }

# fo_kill ROLE [DEV...]: director ROLE (dir or d2) dies hard (lab_pair_kill, then its
# keepalived and xlvsd SIGKILLed); T0 the kill's time in ms; waits (5 s) for the other's
# MASTER notify, NOTIFY_MS after the kill.
fo_kill() {
  local role=$1 n ka ka_vrrp pid
  shift
  if [ "$role" = dir ]; then n=1 pid=$XLVSD_PID; else n=2 pid=$PEER_PID; fi
  log "$role dies"
  ka=$(cat "$D/ka$n.pid") ka_vrrp=$(cat "$D/ka$n-vrrp.pid")
  T0=$(date +%s%3N)
  lab_pair_kill "$ID" "$role" "$@" || fail "lab_pair_kill"
  TK=$(date +%s%3N)
  { kill -KILL "$ka_vrrp" "$ka" "$pid" && wait "$pid"; } 2>/dev/null || true
  if [ "$role" = dir ]; then XLVSD_PID=; fi
  if [ "$role" = dir ]; then
    fo_wait - MASTER 5
    NOTIFY_MS=$(($(date +%s%3N) - FO_SINCE2 - T0))
  else
    fo_wait MASTER - 5
    NOTIFY_MS=$(($(date +%s%3N) - FO_SINCE1 - T0))
  fi
}

# fo_verdict: fo_verdict_downloads, and the takeover (the kill at T0 to d2's first
# forwarded frame in $D/first.pcap) within 1.5 s (goal 1 s), in TAKE_MS; prints the figures.
fo_verdict() {
  fo_verdict_downloads
  fo_takeover "$D/first.pcap" "$T0" "the new master"
  log "takeover: the new master forwarded its first frame $TAKE_MS ms after the kill (keepalived's MASTER notify: $NOTIFY_MS ms); the gap the clients saw (their connections' last frame before the kill to the first after): $(fo_client_gap); 100 downloads intact, 0 RSTs"
}

# fo_takeover PCAP T0 WHO: TAKE_MS, from the kill at T0 (ms) to the first frame in PCAP (WHO
# forwarding); fails if there is none, or after 1.5 s (goal 1 s).
fo_takeover() {
  local first
  first=$(tshark -r "$1" -c 1 -T fields -e frame.time_epoch 2>/dev/null)
  [ -n "$first" ] || fail "$3 forwarded nothing after the kill"
  TAKE_MS=$(python3 -c "print(round(float('$first') * 1000 - $2))")
  [ "$TAKE_MS" -le 1500 ] || fail "$3 forwarded its first frame $TAKE_MS ms after the kill (goal < 1 s, allowed 1.5 s)"
}

# fo_verdict_downloads: every download of fo_downloads byte-exact, no RST from the VIP at
# the client (fo_captures).
fo_verdict_downloads() {
  local rst
  fo_mid_intact 100
  TEST_BG_PIDS=("$PEER_PID")
  sleep 1
  # `ip netns exec` execs timeout, which passes the signal on to tshark.
  kill -INT "$RSTCAP" 2>/dev/null || true
  wait "$RSTCAP" 2>/dev/null || true
  kill -INT "$CLICAP" 2>/dev/null || true
  wait "$CLICAP" 2>/dev/null || true
  rst=$(tshark -r "$D/rst.pcap" -Y "ip.src == $LAB_VIP" 2>/dev/null | wc -l)
  [ "$rst" = 0 ] || fail "$rst RSTs from the VIP reached the client"
  # The directors' own stacks (FO_STACKS, default d2: a killed one's stack may reset the
  # sockets of its killed processes) sent no reset since fo_captures.
  for role in ${FO_STACKS-d2}; do
    rst=$(($(fo_out_rsts "$role") - ${FO_RST0[$role]:-0}))
    [ "$rst" = 0 ] || fail "$role's own TCP stack sent $rst resets during the test"
  done
}

# fo_out_rsts ROLE: the resets ROLE's TCP stack has sent (TcpOutRsts).
fo_out_rsts() {
  ip netns exec "$(lab_ns "$ID" "$1")" nstat -az TcpOutRsts 2>/dev/null |
    awk '$1 == "TcpOutRsts" { n = $2 } END { print n + 0 }'
}

# fo_client_gap: over the connections that received frames before the kill (T0), the time
# from each one's last frame before it to its first after it, at the client: "median M ms,
# 90th percentile P ms over N". (Not the max: a rate-limited download whose client stopped
# reading sits in zero-window probes, whose gaps grow on their own.)
fo_client_gap() {
  tshark -r "$D/cli.pcap" -T fields -e frame.time_epoch -e tcp.dstport 2>/dev/null | python3 -c '
import sys, statistics
t0 = float(sys.argv[1]) / 1000
before, after = {}, {}
for line in sys.stdin:
    f = line.split()
    if len(f) < 2:
        continue
    t, port = float(f[0]), f[1]
    if t < t0:
        before[port] = t
    elif port not in after:
        after[port] = t
gaps = sorted((after[p] - before[p]) * 1000 for p in before if p in after)
if gaps:
    p90 = gaps[max(0, int(len(gaps) * 0.9) - 1)]
    print(f"median {statistics.median(gaps):.0f} ms, 90th percentile {p90:.0f} ms over {len(gaps)}")
else:
    print("none measured")
' "$T0"
}
