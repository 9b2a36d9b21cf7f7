#!/usr/bin/env bash
# Connection sync between two xlvs directors, both ways at once, with bulk resync (the DR
# lab plus a second director d2 on its segment). d1 (10.20.0.1, VIP 10.20.0.100) and d2
# (10.20.0.3, VIP2 10.20.0.101) each run a master and a backup (syncid 7, HMAC-authenticated
# with --sync-auth-key, each the other's --sync-peer):
#  1. 200 rate-limited downloads and 100 short requests through d1: d2 lists every one with
#     the same realserver within the flush interval plus a margin; persistent connections
#     through d2's VIP2: d1 lists them and their template.
#  2. Forged datagrams (not a peer, a wrong MAC, a right MAC with the wrong syncid) are
#     counted by reason and change neither table.
#  3. 100 000 SYNs through d1 (xlvs-bench gen; their connections stay in SYN_RECV); d2
#     restarted: its resync pull converges to d1's table, every entry with d1's realserver.
#  4. d1 restarted: it pulls its own connections back from d2.
# Needs root, curl, python3 and target/release/{xlvsd,xlvsadm,xlvs-bench}.
# xlvs-test: alone
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
BENCH=${XLVS_BENCH:-$TESTLIB_ROOT/target/release/xlvs-bench}
[ -x "$BENCH" ] || fail "xlvs-bench not built: $BENCH"

test_init sp
web_lab_up dr 1
lab_add_dir2 "$ID" || fail "lab_add_dir2"
(umask 077 && printf 'xlvs pair test key %s%s\n' "$RANDOM" "$RANDOM" >"$D/sync.key")
write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -g -w 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -g -w 1" \
  "-A -t $LAB_VIP2:80 -s rr -p 120" \
  "-a -t $LAB_VIP2:80 -r $LAB_RS1_IP:80 -g -w 1" \
  "-a -t $LAB_VIP2:80 -r $LAB_RS2_IP:80 -g -w 1"
SYNC=(--start-daemon master --start-daemon backup --mcast-interface eth0 --syncid 7
  --sync-auth-key "$D/sync.key")
P=$((RANDOM % 800 + 100))
M1=127.0.0.1:9$P M2=127.0.0.1:8$P
D1=(--iface eth0 --rules "$D/rules" --metrics "$M1" "${SYNC[@]}" --sync-peer "$LAB_D2_IP")
D2=(--iface eth0 --rules "$D/rules" --metrics "$M2" "${SYNC[@]}" --sync-peer "$LAB_DIR_IP")
start_xlvsd "$ID" "${D1[@]}"
start_peer_xlvsd d2 "${D2[@]}"
for f in "$(lab_wwwdir "$ID" rs1)" "$(lab_wwwdir "$ID" rs2)"; do
  head -c 4000000 /dev/urandom >"$f/slow"
done

# Listings without the expire column: "pro state source virtual destination".
list1() { xadm "$ID" -L -n -c | awk '$1 == "TCP" { print $1, $3, $4, $5, $6 }' | sort; }
list2() { xadm_at d2 -L -n -c | awk '$1 == "TCP" { print $1, $3, $4, $5, $6 }' | sort; }
# "source virtual destination" of the ESTABLISHED connections to virtual $1.
est() { awk -v v="$1" '$2 == "ESTABLISHED" && $4 == v { print $3, $4, $5 }'; }
now_ms() { date +%s%3N; }

log "1. 200 rate-limited downloads and 100 short requests through d1"
urls=()
for i in $(seq 1 200); do urls+=(-o /dev/null "http://$LAB_VIP/slow"); done
lab_exec "$ID" cli timeout 100 curl -sS --parallel --parallel-immediate --parallel-max 200 \
  --limit-rate 20k --max-time 90 "${urls[@]}" </dev/null >/dev/null 2>&1 &
bg_track $!
n=0
for ((i = 0; i < 150; i++)); do
  n=$(list1 | est "$LAB_VIP:80" | wc -l)
  [ "$n" -ge 200 ] && break
  sleep 0.1
done
[ "$n" -ge 200 ] || fail "d1 holds $n established downloads, want 200"
A=$(list1 | est "$LAB_VIP:80")
t0=$(now_ms)
missing=
for ((i = 0; i < 40; i++)); do
  missing=$(comm -23 <(printf '%s\n' "$A") <(list2 | est "$LAB_VIP:80"))
  [ -z "$missing" ] && break
  sleep 0.05
done
t1=$(now_ms)
[ -z "$missing" ] || fail "d2 lacks $(printf '%s\n' "$missing" | wc -l) of d1's downloads 2 s later, e.g. $(printf '%s\n' "$missing" | head -3)"
log "d2 lists all $(printf '%s\n' "$A" | wc -l) downloads with d1's realservers $((t1 - t0)) ms after d1 did (flush interval 50 ms; margin 2 s)"

for i in $(seq 1 100); do
  lab_exec "$ID" cli curl -sS --max-time 3 --local-port $((61100 + i)) -o /dev/null "http://$LAB_VIP/" || fail "short request $i"
done
for i in $(seq 1 20); do
  lab_exec "$ID" cli curl -sS --max-time 3 --local-port $((61300 + i)) -o /dev/null "http://$LAB_VIP2/" || fail "request $i to VIP2"
done
# short: "source destination" of the client ports 61101-61200 (any state) and VIP2's
# 61301-61320 (ports above the kernel's ephemeral range: the 200 downloads cannot hold them).
short() { awk '{ split($3, s, ":"); if (s[2] > 61100 && s[2] <= 61320) print $3, $5 }' | sort -u; }
S1=$(list1 | short)
[ "$(printf '%s\n' "$S1" | grep -c .)" -ge 100 ] || fail "d1 lists $(printf '%s\n' "$S1" | grep -c .) short connections"
for ((i = 0; i < 40; i++)); do
  missing=$(comm -23 <(printf '%s\n' "$S1") <(list2 | short))
  [ -z "$missing" ] && break
  sleep 0.05
done
[ -z "$missing" ] || fail "d2 lacks short connections of d1: $(printf '%s\n' "$missing" | head -3)"
# VIP2's persistent connections went through d2; d1 holds them and their template.
T2=$(list2 | awk -v v="$LAB_VIP2:80" '$2 == "NONE" && $4 == v')
[ -n "$T2" ] || fail "d2 has no persistence template for VIP2"
for ((i = 0; i < 40; i++)); do
  L1=$(list1)
  n=$(printf '%s\n' "$L1" | awk -v v="$LAB_VIP2:80" '$4 == v && $2 != "NONE"' | wc -l)
  [ "$n" -ge 20 ] && printf '%s\n' "$L1" | has -xF "$T2" && break
  sleep 0.05
done
printf '%s\n' "$L1" | has -xF "$T2" || fail "d1 lacks d2's template: $T2"
[ "$n" -ge 20 ] || fail "d1 lists $n of VIP2's 20 connections 2 s later"
# -L -c --json: the origin of each entry.
origins() { # ROLE VIRTUAL: "origin peer" of its entries, counted
  local j
  if [ "$1" = d2 ]; then j=$(xadm_at d2 -L -n -c --json); else j=$(xadm "$ID" -L -n -c --json); fi
  printf '%s' "$j" | python3 -c 'import json,sys,collections; v=sys.argv[1]; print(dict(collections.Counter((c["origin"], c["peer"]) for c in json.load(sys.stdin)["connections"] if c["virtual"] == v)))' "$2"
}
o=$(origins d2 "$LAB_VIP:80")
[[ $o == "{('synced', '$LAB_DIR_IP'): "* ]] && [[ $o != *local* ]] || fail "d2's origins for VIP's connections: $o"
o=$(origins d2 "$LAB_VIP2:80")
[[ $o == "{('local', None): "* ]] && [[ $o != *synced* ]] || fail "d2's origins for its own VIP2 connections: $o"
o=$(origins d1 "$LAB_VIP2:80")
[[ $o == "{('synced', '$LAB_D2_IP'): "* ]] && [[ $o != *local* ]] || fail "d1's origins for VIP2's connections: $o"
log "d2 lists d1's 100 short connections; d1 lists VIP2's $n connections and template from d2; -L -c --json gives each entry's origin"

log "2. forged datagrams"
before=$(list2 | grep -c . || true)
forge() { # ROLE SRC MODE
  lab_exec "$ID" "$1" python3 - "$2" "$3" "$D/sync.key" <<'PY'
import hashlib, hmac, socket, struct, sys, time
src, mode, keyfile = sys.argv[1], sys.argv[2], sys.argv[3]
key = open(keyfile, "rb").read().strip()
ip = socket.inet_aton
entry = struct.pack("!BBHIHHHHII4s4s4s", 0, 6, 36, 0, 1, 51000, 80, 80, 0, 900,
                    ip("10.77.1.2"), ip("10.20.0.100"), ip("10.20.0.11"))
syncid = 3 if mode == "syncid" else 7
msg = struct.pack("!BBHBbH", 0, syncid, 8 + len(entry), 1, 1, 0) + entry
seq = struct.pack("!Q", time.time_ns())
mac = hmac.new(key, msg + b"XLVA" + seq, hashlib.sha256).digest()
if mode == "mac":
    mac = bytes(32)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, ip(src))
s.sendto(msg + b"XLVA" + seq + mac, ("224.0.0.81", 8848))
PY
}
forge rs1 "$LAB_RS1_IP" peer    # a stranger with the right key and syncid
forge dir "$LAB_DIR_IP" mac     # the peer's address, a bad MAC
forge dir "$LAB_DIR_IP" syncid  # the peer's address and a good MAC, the wrong syncid
sleep 0.5
list2 | has "10.77.1.2" && fail "a forged entry reached d2's table"
MET=$(lab_exec "$ID" d2 curl -sS --max-time 5 "http://$M2/metrics") || fail "d2 metrics"
for r in not_allowed bad_mac wrong_syncid; do
  printf '%s\n' "$MET" | has -E "^xlvs_sync_datagrams_rejected_total\{reason=\"$r\"\} [1-9]" \
    || fail "d2 did not count $r: $(printf '%s\n' "$MET" | grep rejected)"
done
after=$(list2 | grep -c . || true)
log "d2 refused all three (table $before -> $after entries, none forged)"

log "3. 100 000 SYNs through d1, then d2 restarted"
MAC1=$(ip -n "$LAB_DIR_NS" link show eth0 | awk '/link\/ether/ { print $2 }')
# A frame a copy-mode veth drops under the burst is made up by a round from other clients.
n=0
for r in 1 2 3; do
  lab_exec "$ID" cli "$BENCH" gen -i eth0 -d "$LAB_VIP:80" -m "$MAC1" -s "198.18.$r.1-198.18.$r.2" \
    -p 1024-65535 --proto syn -z 128 --count $((100000 - n)) --rate 150000 >"$D/gen.json" 2>"$D/gen.err" \
    || fail "xlvs-bench gen: $(tail -n 3 "$D/gen.err")"
  sleep 0.5
  n=$(list1 | awk '$2 == "SYN_RECV"' | wc -l)
  [ "$n" -ge 100000 ] && break
done
[ "$n" -ge 100000 ] || fail "d1 holds $n SYN_RECV connections after 3 rounds of SYNs"
log "d1 holds $n connections in SYN_RECV"
stop_peer_xlvsd
mv "$(lab_dir "$ID")/xlvsd-d2.log" "$D/xlvsd-d2.1.log"
A=$(list1)
start_peer_xlvsd d2 "${D2[@]}"
pull_done() { # ROLE: prints "ms received" once its pull is done (bounded)
  local j i
  for ((i = 0; i < 300; i++)); do
    if [ "$1" = d2 ]; then j=$(xadm_at d2 -L --daemon --json); else j=$(xadm "$ID" -L --daemon --json); fi
    # Done: the pull ended and every entry it brought is in the workers' queues.
    if printf '%s' "$j" | python3 -c 'import json,sys; r=json.load(sys.stdin)["resync"]; sys.exit(0 if r["pull"] and r["pull"]["state"]=="done" and r["applied_ms"] is not None else 1)'; then
      printf '%s' "$j" | python3 -c 'import json,sys; r=json.load(sys.stdin)["resync"]; print(r["applied_ms"], r["pull"]["received"])'
      return 0
    fi
    sleep 0.1
  done
  fail "$1's resync pull did not finish in 30 s: $j"
}
read -r ms got < <(pull_done d2)
# The workers may still be inserting the last entries.
B=
for ((i = 0; i < 50; i++)); do
  B=$(list2)
  [ "$(comm -23 <(printf '%s\n' "$A") <(printf '%s\n' "$B") | grep -c . || true)" -lt 200 ] && break
  sleep 0.1
done
A2=$(list1)
# Every entry d1 held before and after is on d2, with the same state and realserver; d2 holds
# nothing d1 did not hold at one of those times.
stay=$(comm -12 <(printf '%s\n' "$A") <(printf '%s\n' "$A2"))
missing=$(comm -23 <(printf '%s\n' "$stay") <(printf '%s\n' "$B"))
extra=$(comm -13 <(sort -u <(printf '%s\n%s\n' "$A" "$A2")) <(printf '%s\n' "$B"))
[ -z "$missing" ] || fail "d2 lacks $(printf '%s\n' "$missing" | grep -c .) of d1's $(printf '%s\n' "$stay" | grep -c .) entries after its resync, e.g. $(printf '%s\n' "$missing" | head -3)"
[ -z "$extra" ] || fail "d2 holds entries d1 never had: $(printf '%s\n' "$extra" | head -3)"
log "d2's resync: $got entries in $ms ms; it holds all $(printf '%s\n' "$stay" | grep -c .) of d1's (goal 100k in 0.5 s; limit 2 s)"
[ "$ms" -le 2000 ] || fail "resync of $got entries took $ms ms"

log "4. d1 restarted: its connections come back from d2"
_stop_xlvsd || fail "d1 did not stop: $XLVSD_STOP_MSG"
mv "$XLVSD_LOG" "$D/xlvsd-d1.1.log"
start_xlvsd "$ID" "${D1[@]}"
read -r ms got < <(pull_done d1)
for ((i = 0; i < 50; i++)); do
  C=$(list1)
  [ "$(comm -23 <(printf '%s\n' "$stay") <(printf '%s\n' "$C") | grep -c . || true)" -lt 200 ] && break
  sleep 0.1
done
B2=$(list2)
back=$(comm -12 <(printf '%s\n' "$stay") <(printf '%s\n' "$B2"))
missing=$(comm -23 <(printf '%s\n' "$back") <(printf '%s\n' "$C"))
[ -z "$missing" ] || fail "restarted d1 lacks $(printf '%s\n' "$missing" | grep -c .) of its entries, e.g. $(printf '%s\n' "$missing" | head -3)"
log "restarted d1 pulled $got entries in $ms ms and holds all $(printf '%s\n' "$back" | grep -c .) of its own"
xlvsd_alive
pass
