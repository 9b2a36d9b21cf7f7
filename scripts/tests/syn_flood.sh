#!/usr/bin/env bash
# A SYN flood from spoofed random sources against the VIP (NAT lab; the generator is the
# rig's, `xlvs-bench gen --proto syn` from an AF_XDP socket in the client's namespace):
#  - capacity: the director's new connections per second under a flood it cannot take
#    (the generator unthrottled), measured first on this machine;
#  - floods at 50 %, 100 % and 200 % of it (200 %: as fast as the generator goes, when it
#    cannot reach twice the capacity), SYN_FLOOD_SECS each (default 30): meanwhile a client
#    opens one real connection at a time (curl, 3 s limit each) and at 50 % at least 99 %
#    of them succeed; the success rates at 100 % and 200 % are reported;
#  - 4 downloads established before the floods run through all of them, byte-exact;
#  - the table stays within --max-conns, the half-open ones within --max-syn-recv (the
#    oldest making room: counted as syn_evicted), xlvsd's memory within 400 MB;
#  - an ACK flood of unknown connections and a UDP flood to a port without a service (5 s
#    each at the capacity's rate) grow no table and reach no realserver.
# Needs root, curl and target/release/{xlvsd,xlvsadm,xlvs-bench}.
# xlvs-test: alone
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

BENCH=$TESTLIB_ROOT/target/release/xlvs-bench
[ -x "$BENCH" ] || fail "no $BENCH (cargo build --release)"
SECS=${SYN_FLOOD_SECS:-30}
MAXC=400000
MAXSYN=50000

test_init sf
web_lab_up nat 1
start_rr_xlvsd --max-conns "$MAXC" --max-syn-recv "$MAXSYN"
MAC=$(ip -n "$LAB_DIR_NS" link show "$LAB_DIR_EXT" | awk '/link\/ether/ { print $2 }')
new_conns() { xadm "$ID" --workers | awk '$1 ~ /^ext0\/q/ { n += $6 } END { print n + 0 }'; }
evicted() { xadm "$ID" --workers | awk '$1 == "syn_evicted" { n = $2 } END { print n + 0 }'; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$XLVSD_PID/status"; }
flood() { # RATE|max SECONDS OUT
  local r=()
  [ "$1" = max ] || r=(-r "$1")
  lab_exec "$ID" cli timeout $(($2 + 20)) "$BENCH" gen -i eth0 -d "$LAB_VIP:80" -m "$MAC" \
    --proto syn -z 78 -s 198.18.0.1-198.18.255.254 -p 1024-65535 "${r[@]}" -D "$2" >"$3" 2>&1
}
table_size() {
  xadm "$ID" -L -n | awk '$1 == "->" && $2 ~ /:80$/ { n += $5 + $6 } END { print n + 0 }'
}

# Capacity: what the director takes of a flood it cannot keep up with.
log "capacity: an unthrottled SYN flood for 5 s"
n0=$(new_conns)
flood max 5 "$D/cap.json" || fail "the generator failed: $(cat "$D/cap.json")"
n1=$(new_conns)
sent=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(int(r["sent"]), round(r["pps"]))' "$D/cap.json")
read -r gsent gpps <<<"$sent"
CAP=$(((n1 - n0) / 5))
log "capacity: the director created $CAP connections/s while the generator sent $gpps SYN/s"
[ "$CAP" -gt 1000 ] || fail "the director created only $CAP connections/s"
sleep 2

for r in rs1 rs2; do head -c 4000000 /dev/urandom >"$(lab_wwwdir "$ID" "$r")/mid"; done
SUMS="$(sha256sum "$(lab_wwwdir "$ID" rs1)/mid" "$(lab_wwwdir "$ID" rs2)/mid" | awk '{ print $1 }')"
mkdir -p "$D/dl"
urls=()
for i in 1 2 3 4; do urls+=(-o "$D/dl/$i" "http://$LAB_VIP/mid"); done
# 4 MB at 40 kB/s: 100 s, through every flood.
lab_exec "$ID" cli timeout $((3 * SECS + 200)) curl -sS --parallel --parallel-immediate \
  --limit-rate $((4000000 / (3 * SECS + 20))) "${urls[@]}" </dev/null >/dev/null 2>"$D/dl.err" &
DL=$!
bg_track $DL
sleep 1
RSS0=$(rss_kb)
MAXT=0
MAXRSS=$RSS0
results=()
for pct in 50 100 200; do
  rate=$((CAP * pct / 100))
  REAL=
  label="$pct % ($rate SYN/s)"
  [ "$pct" = 200 ] && [ "$rate" -gt "$gpps" ] && { rate=max; label="200 % (the generator's maximum, ~$gpps SYN/s)"; }
  e0=$(evicted)
  flood "$rate" "$SECS" "$D/flood$pct.json" &
  FL=$!
  sleep 1
  # Real clients: one connection at a time, each within 3 s, until the flood's last 2 s.
  (
    end=$(($(date +%s) + SECS - 3))
    while [ "$(date +%s)" -lt "$end" ]; do
      if lab_exec "$ID" cli curl -s --max-time 3 -o /dev/null "http://$LAB_VIP/"; then echo ok; else echo fail; fi
    done
  ) >"$D/real$pct" 2>/dev/null &
  REAL=$!
  while kill -0 "$REAL" 2>/dev/null; do
    t=$(table_size)
    [ "$t" -gt "$MAXT" ] && MAXT=$t
    r=$(rss_kb)
    [ "$r" -gt "$MAXRSS" ] && MAXRSS=$r
    sleep 1
  done
  ok=$(grep -c '^ok' "$D/real$pct" || true)
  tries=$(grep -c . "$D/real$pct" || true)
  wait "$FL" || fail "the generator failed at $pct %: $(cat "$D/flood$pct.json")"
  gp=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["pps"]))' "$D/flood$pct.json")
  e1=$(evicted)
  pctok=$(python3 -c "print(f'{100 * $ok / max($tries, 1):.1f}')")
  results+=("$label: generator $gp SYN/s, $ok/$tries real requests ($pctok %), $(((${e1:-0} - ${e0:-0}))) half-open evicted")
  log "flood at ${results[-1]}"
  if [ "$pct" = 50 ]; then
    python3 -c "import sys; sys.exit(0 if $ok * 100 >= 99 * $tries else 1)" ||
      fail "at 50 % of the capacity only $ok of $tries real requests succeeded (want >= 99 %)"
  fi
  xlvsd_alive "during the $pct % flood"
  sleep 3
done

# Floods that must not grow the table nor reach a realserver: ACKs of unknown connections
# (IPVS schedules TCP only on a SYN), UDP to a port with no service (not steered: the
# director's stack answers, rate-limited, as without a director).
rs_rx() { ip -n "$(lab_ns "$ID" "$1")" -s link show eth0 | awk '/RX:/ { getline; print $2 }'; }
for kind in ack udp; do
  t0=$(table_size)
  r0=$(($(rs_rx rs1) + $(rs_rx rs2)))
  if [ "$kind" = ack ]; then
    lab_exec "$ID" cli timeout 30 "$BENCH" gen -i eth0 -d "$LAB_VIP:80" -m "$MAC" --proto ack -z 78 \
      -s 198.18.0.1-198.18.255.254 -r "$CAP" -D 5 >"$D/$kind.json" 2>&1 || fail "ack flood: $(cat "$D/$kind.json")"
  else
    lab_exec "$ID" cli timeout 30 "$BENCH" gen -i eth0 -d "$LAB_VIP:5353" -m "$MAC" --proto udp \
      -s 198.18.0.1-198.18.255.254 -r "$CAP" -D 5 >"$D/$kind.json" 2>&1 || fail "udp flood: $(cat "$D/$kind.json")"
  fi
  t1=$(table_size)
  r1=$(($(rs_rx rs1) + $(rs_rx rs2)))
  sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$D/$kind.json")
  # The downloads' ACKs and a few ARPs reach the realservers meanwhile, not the flood.
  [ $((r1 - r0)) -lt $((sent / 100 + 2000)) ] || fail "$kind flood: the realservers received $((r1 - r0)) frames of $sent"
  [ "$t1" -le $((t0 + 50)) ] || fail "$kind flood: the table grew from $t0 to $t1"
  results+=("$kind flood of $sent frames: table $t0 -> $t1, realservers received $((r1 - r0)) frames (the downloads' included)")
  log "${results[-1]}"
done
xlvsd_alive "after the floods"
lab_exec "$ID" cli curl -s --max-time 3 -o /dev/null "http://$LAB_VIP/" || fail "no answer after the floods"

rc=0
wait "$DL" || rc=$?
[ "$rc" = 0 ] || fail "the established downloads failed (curl $rc): $(head -c 300 "$D/dl.err")"
bad=0
for i in 1 2 3 4; do
  s=$(sha256sum "$D/dl/$i" | awk '{ print $1 }')
  grep -qx "$s" <<<"$SUMS" || bad=$((bad + 1))
done
[ "$bad" = 0 ] || fail "$bad of 4 established downloads arrived corrupted"
[ "$MAXT" -le "$MAXC" ] || fail "the table held $MAXT connections, more than --max-conns $MAXC"
[ "$MAXT" -le $((MAXSYN + 1000)) ] || fail "the table held $MAXT connections under floods of half-open ones (--max-syn-recv $MAXSYN)"
[ "$MAXRSS" -le 400000 ] || fail "xlvsd's memory grew to $MAXRSS kB"
[ "$(evicted)" -gt 0 ] || fail "no half-open connection was evicted"
for r in "${results[@]}"; do log "  $r"; done
log "table at most $MAXT connections (--max-conns $MAXC, --max-syn-recv $MAXSYN); xlvsd RSS $((RSS0 / 1024)) MB before, at most $((MAXRSS / 1024)) MB; 4 established downloads intact"
pass
