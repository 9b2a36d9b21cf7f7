#!/usr/bin/env bash
# Connection sync between two xlvs directors (the DR lab plus d2), measured end to end:
#  - resync (first): d2 restarted while d1 holds 100 000, then 1 000 000 connections (SYNs
#    from xlvs-bench gen, kept in SYN_RECV), the second time with d1 forwarding 50 000
#    packets/s meanwhile; the time from d2's start to every entry being in its workers'
#    queues (-L --daemon --json: resync.applied_ms), and d2's table size afterwards.
#  - sync lag at 1 000 and at 100 000 new connections/s: UDP flows from xlvs-bench gen through
#    d1 (master, default flush interval, --sync-threshold "1 0" so each flow is synced at its
#    first packet); one capture on d1's switch port stamps each flow's first frame and the
#    sync datagram carrying its entry, with the same kernel clock; lag = datagram - frame;
#    p50/p99/max over every matched flow. d2 runs the backup and must end up with the flows.
#   scripts/bench_sync.sh
# Prints "bench_sync: ..." lines. Needs root, dumpcap (tshark), python3, target/release/*.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEST_NAME=bench_sync
# shellcheck source=lib/testlib.sh
. "$HERE/lib/testlib.sh"
BENCH=${XLVS_BENCH:-$TESTLIB_ROOT/target/release/xlvs-bench}

test_init bs
lab_dr_up "$ID" 1 || fail "lab_dr_up"
D=$(lab_dir "$ID")
lab_add_dir2 "$ID" || fail "lab_add_dir2"
write_rules "$D/rules" \
  "-A -u $LAB_VIP:53 -s rr" \
  "-a -u $LAB_VIP:53 -r $LAB_RS1_IP:53 -g -w 1" \
  "-a -u $LAB_VIP:53 -r $LAB_RS2_IP:53 -g -w 1" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -g -w 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -g -w 1"
D1=(--iface eth0 --rules "$D/rules" --start-daemon master --mcast-interface eth0 --syncid 3
  --sync-threshold "1 0" --sync-peer "$LAB_D2_IP")
D2=(--iface eth0 --rules "$D/rules" --start-daemon backup --mcast-interface eth0 --syncid 3
  --sync-peer "$LAB_DIR_IP")
start_xlvsd "$ID" "${D1[@]}"
start_peer_xlvsd d2 "${D2[@]}"
MAC1=$(ip -n "$LAB_DIR_NS" link show eth0 | awk '/link\/ether/ { print $2 }')

gen() { # PROTO PORT SRC COUNT RATE
  lab_exec "$ID" cli "$BENCH" gen -i eth0 -d "$LAB_VIP:$2" -m "$MAC1" -s "$3" -p 1024-65535 \
    --proto "$1" -z 128 --count "$4" --rate "$5" >"$D/gen.json" 2>"$D/gen.err" ||
    fail "xlvs-bench gen: $(tail -n 3 "$D/gen.err")"
}
d2_entries() { xadm_at d2 -L -n -c | grep -c '^[TU]' || true; }

lag() { # RATE SECONDS NET
  local rate=$1 secs=$2 n=$(($1 * $2)) cap=$D/lag-$1.pcap
  ip netns exec "$LAB_SW_NS" dumpcap -q -i p-dir -s 1600 -B 256 -P -w "$cap" -f udp >/dev/null 2>"$D/dumpcap.err" &
  local td=$!
  bg_track $td
  sleep 1
  gen udp 53 "198.$3.0.1-198.$3.255.254" "$n" "$rate"
  sleep 0.5
  kill -INT $td 2>/dev/null || true
  wait $td 2>/dev/null || true
  python3 - "$cap" "$LAB_VIP" "$rate" "$n" <<'PY'
import struct, sys, socket
cap, vip, rate, n = sys.argv[1], socket.inet_aton(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = open(cap, "rb").read()
magic = struct.unpack("<I", data[:4])[0]
scale = 1e-9 if magic == 0xa1b23c4d else 1e-6
off, first, synced = 24, {}, {}
while off + 16 <= len(data):
    sec, frac, incl, _ = struct.unpack("<IIII", data[off:off + 16])
    t = sec + frac * scale
    p = data[off + 16: off + 16 + incl]
    off += 16 + incl
    if len(p) < 42 or p[12:14] != b"\x08\x00" or p[23] != 17:
        continue
    ihl = (p[14] & 15) * 4
    u = 14 + ihl
    dport = struct.unpack("!H", p[u + 2:u + 4])[0]
    if dport == 53 and p[30:34] == vip:
        k = (p[26:30], struct.unpack("!H", p[u:u + 2])[0])
        first.setdefault(k, t)
    elif dport == 8848:
        m = p[u + 8:]
        if len(m) < 8 or m[5] != 1:
            continue
        e, cnt = 8, m[4]
        for _ in range(cnt):
            if e + 36 > len(m):
                break
            size = struct.unpack("!H", m[e + 2:e + 4])[0] & 0xfff
            if m[e] & 1 == 0 and m[e + 1] == 17:
                k = (m[e + 24:e + 28], struct.unpack("!H", m[e + 10:e + 12])[0])
                synced.setdefault(k, t)
            e += size + (-size % 4)
lags = sorted((synced[k] - t0) * 1000 for k, t0 in first.items() if k in synced)
if not lags:
    print(f"bench_sync: lag at {rate}/s: no flow matched ({len(first)} flows, {len(synced)} entries captured)")
    sys.exit(1)
q = lambda f: lags[min(len(lags) - 1, int(f * len(lags)))]
print(f"bench_sync: lag at {rate} new connections/s: p50={q(0.5):.1f} ms p99={q(0.99):.1f} ms "
      f"max={lags[-1]:.1f} ms over {len(lags)} flows ({len(first)} of {n} frames captured)")
PY
}


syn_flood() { # TARGET: d1 holds at least TARGET SYN_RECV connections (rounds from new clients)
  local n r
  for r in 20 21 22 23 24 25 26 27 28 29 30 31; do
    n=$(xadm "$ID" -L -n -c | awk '$3 == "SYN_RECV"' | wc -l)
    [ "$n" -ge "$1" ] && return 0
    gen syn 80 "198.$r.0.1-198.$r.255.254" $(($1 - n)) 250000
  done
  fail "d1 holds $n SYN_RECV connections, want $1"
}
resync() { # LABEL
  local j ms i
  stop_peer_xlvsd
  mv "$(lab_dir "$ID")/xlvsd-d2.log" "$D/xlvsd-d2.$1.log"
  local total
  total=$(xadm "$ID" -L -n -c | grep -c '^[TU]' || true)
  start_peer_xlvsd d2 "${D2[@]}"
  for ((i = 0; i < 600; i++)); do
    j=$(xadm_at d2 -L --daemon --json)
    ms=$(printf '%s' "$j" | python3 -c 'import json,sys; r=json.load(sys.stdin)["resync"]; print(r["applied_ms"] if r["pull"] and r["pull"]["state"]=="done" and r["applied_ms"] is not None else "")')
    [ -n "$ms" ] && break
    sleep 0.1
  done
  [ -n "$ms" ] || fail "d2's pull did not finish: $j"
  sleep 1
  echo "bench_sync: resync of $total entries ($1): ${ms} ms from d2's start to every entry in its workers' queues; d2 then holds $(d2_entries) (with what d1's master sent since)"
}
syn_flood 100000
resync 100k
syn_flood 1000000
# d1 forwards 50 000 packets/s of UDP while it serves the 1M resync.
before=$(xadm "$ID" --workers | awk 'NR == 2 { print $3 }')
lab_exec "$ID" cli "$BENCH" gen -i eth0 -d "$LAB_VIP:53" -m "$MAC1" -s 198.40.0.1-198.40.0.100 \
  -p 1024-65535 --proto udp -z 128 --rate 50000 -D 4 >"$D/bg.json" 2>&1 &
BG=$!
bg_track $BG
sleep 0.5
resync 1M
wait $BG || true
after=$(xadm "$ID" --workers | awk 'NR == 2 { print $3 }')
sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$D/bg.json" 2>/dev/null || echo "?")
echo "bench_sync: meanwhile d1 forwarded $((after - before)) of the $sent frames sent at 50 000/s"

lag 1000 5 18 || fail "lag at 1 000/s"
lag 100000 2 19 || fail "lag at 100 000/s"
MET=$(xadm "$ID" -L --daemon --json)
echo "bench_sync: d1's master sent $(printf '%s' "$MET" | python3 -c 'import json,sys; d=json.load(sys.stdin)["daemons"][0]["stats"]; print(d["entries"], "entries in", d["datagrams"], "datagrams")'); d1 holds $(xadm "$ID" -L -n -c | grep -c '^[TU]' || true) entries, d2 $(d2_entries); d2's UDP receive-buffer drops: $(ip netns exec "$LAB_D2_NS" awk '$1 == "Udp:" && $2 ~ /^[0-9]/ { print $6 }' /proc/net/snmp)"
pass
