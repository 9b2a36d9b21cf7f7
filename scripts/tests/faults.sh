#!/usr/bin/env bash
# Faults around a running director (NAT lab), each with its counter and no panic:
#  (a) the table full (--max-conns 40): 40 connections held open, a new one is dropped and
#      counted (table_full) while the held ones still carry requests;
#  (b) a realserver's neighbour entry gone stale: rs1 takes a new MAC address and the
#      director's neighbour cache is flushed under a running download; new connections to
#      rs1 work again once the kernel has re-learnt it (xlvsd follows its neighbour events),
#      the download completes byte-exact;
#  (c) the director's inside interface down and up under a download: frames dropped
#      meanwhile (TCP retransmits), the download completes byte-exact, xlvsd lives;
#  (d) the fill ring starved: xlvsd with 64 UMEM frames per socket (--xsk-frames 64) under
#      an unthrottled SYN flood from the rig's generator: the kernel finds the fill ring
#      empty (counted: FillEmpty), xlvsd lives, and serves a download intact afterwards.
# Needs root, python3, curl and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init fa
web_lab_up nat 1
drops() { xadm "$ID" --workers | awk -v r="$1" '$1 == r { n = $2 } END { print n + 0 }'; }
for r in rs1 rs2; do head -c 3000000 /dev/urandom >"$(lab_wwwdir "$ID" "$r")/mid"; done
SUMS="$(sha256sum "$(lab_wwwdir "$ID" rs1)/mid" "$(lab_wwwdir "$ID" rs2)/mid" | awk '{ print $1 }')"
download() { # NAME: 3 MB at 500 kB/s through the VIP, in the background (DLPID)
  lab_exec "$ID" cli timeout 60 curl -sS --limit-rate 500k --max-time 50 -o "$D/$1" \
    "http://$LAB_VIP/mid" </dev/null >/dev/null 2>"$D/$1.err" &
  DLPID=$!
  bg_track $DLPID
}
intact() { # NAME
  local rc=0 s
  wait "$DLPID" || rc=$?
  [ "$rc" = 0 ] || fail "download $1: curl $rc: $(head -c 300 "$D/$1.err")"
  s=$(sha256sum "$D/$1" | awk '{ print $1 }')
  grep -qx "$s" <<<"$SUMS" || fail "download $1 arrived corrupted"
}

log "(a) the table full"
start_rr_xlvsd --max-conns 40
ip netns exec "$LAB_CLI_NS" python3 - "$LAB_VIP" "$D/go" >"$D/held.out" 2>&1 <<'PY' &
import os, socket, sys, time
vip, go = sys.argv[1], sys.argv[2]
held = []
for i in range(40):
    s = socket.create_connection((vip, 80), timeout=3)
    held.append(s)
print("held", len(held), flush=True)
# Wait for the test to try a new connection, then use every held one.
while not os.path.exists(go):
    time.sleep(0.05)
ok = 0
for s in held:
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
    if s.recv(100).startswith(b"HTTP/1.1 200"):
        ok += 1
print("answered", ok, flush=True)
PY
HELD=$!
bg_track $HELD
for ((i = 0; i < 50; i++)); do grep -q "^held" "$D/held.out" 2>/dev/null && break; sleep 0.1; done
grep -q "^held 40" "$D/held.out" || fail "could not hold 40 connections: $(cat "$D/held.out")"
f0=$(drops table_full)
if lab_exec "$ID" cli curl -s --max-time 2 -o /dev/null "http://$LAB_VIP/"; then
  fail "a 41st connection went through a table of 40"
fi
f1=$(drops table_full)
[ "$f1" -gt "$f0" ] || fail "the refused connection was not counted as table_full ($f0 -> $f1)"
touch "$D/go"
wait "$HELD" || fail "the held connections: $(cat "$D/held.out")"
grep -q "^answered 40" "$D/held.out" || fail "held connections after the table filled: $(cat "$D/held.out")"
log "(a) 40 held: a new connection dropped (table_full $f0 -> $f1), the 40 still answered"
stop_xlvsd_checked

log "(b) a realserver's neighbour entry gone stale"
start_rr_xlvsd
download stale
sleep 1
RS1_NS=$(lab_ns "$ID" rs1)
ip -n "$RS1_NS" link set eth0 address 02:00:00:00:aa:01
ip -n "$LAB_DIR_NS" neigh flush dev "$LAB_DIR_INT"
t0=$(date +%s%3N)
ok=0
for ((i = 0; i < 100; i++)); do
  n=0
  for j in 1 2; do
    [ "$(lab_exec "$ID" cli curl -s --max-time 1 "http://$LAB_VIP/")" = rs1 ] && n=1 && break
  done
  [ "$n" = 1 ] && { ok=1; break; }
  sleep 0.1
done
t1=$(date +%s%3N)
[ "$ok" = 1 ] || fail "rs1 unreachable through the VIP 10 s after its MAC changed: $(ip -n "$LAB_DIR_NS" neigh show dev "$LAB_DIR_INT")"
intact stale
log "(b) rs1 answered through the VIP $((t1 - t0)) ms after its new MAC and the flush (no_neighbour drops: $(drops no_neighbour)); the download went on intact"
stop_xlvsd_checked

log "(c) the inside interface down and up"
start_rr_xlvsd
download flap
sleep 1
ip -n "$LAB_DIR_NS" link set "$LAB_DIR_INT" down
sleep 1
ip -n "$LAB_DIR_NS" link set "$LAB_DIR_INT" up
intact flap
xlvsd_alive "after int0 went down and up"
[ "$(lab_exec "$ID" cli curl -s --max-time 3 -o /dev/null -w '%{http_code}' "http://$LAB_VIP/")" = 200 ] ||
  fail "no answer through the VIP after int0 came back"
log "(c) int0 down 1 s and up: the download intact, new connections answered"
stop_xlvsd_checked

log "(d) the fill ring starved"
BENCH=$TESTLIB_ROOT/target/release/xlvs-bench
[ -x "$BENCH" ] || fail "no $BENCH (cargo build --release)"
start_rr_xlvsd --xsk-frames 64
fill_empty() { xadm "$ID" --workers | awk '$1 ~ /^ext0\/q/ && NF == 7 { n += $5 } END { print n + 0 }'; }
MAC=$(ip -n "$LAB_DIR_NS" link show "$LAB_DIR_EXT" | awk '/link\/ether/ { print $2 }')
e0=$(fill_empty)
lab_exec "$ID" cli timeout 30 "$BENCH" gen -i eth0 -d "$LAB_VIP:80" -m "$MAC" --proto syn -z 78 \
  -s 198.18.0.1-198.18.255.254 -D 3 >"$D/gen.json" 2>&1 || fail "the generator: $(cat "$D/gen.json")"
sleep 1.5
e1=$(fill_empty)
[ "$e1" -gt "$e0" ] || fail "64 frames per socket under a flood: FillEmpty stayed $e0 -> $e1: $(xadm "$ID" --workers)"
xlvsd_alive "after the flood with 64 frames per socket"
download starved
intact starved
log "(d) 64 frames per socket under a flood: the kernel found the fill ring empty $((e1 - e0)) times; xlvsd lived, a download afterwards intact"
pass
