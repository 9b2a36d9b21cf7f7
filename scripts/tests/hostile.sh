#!/usr/bin/env bash
# Malformed and hostile frames at the VIP and from a realserver's side (NAT lab with IPv6;
# scripts/lib/hostile.py builds them by hand, tcpreplay sends them): truncated at every
# length, bad IHL, IP options, bad total lengths, TTL 0 and 1, fragments (tiny, overlapping,
# out of order, alone), VLAN stacks, IPv6 extension-header chains, the 64 combinations of
# TCP's classic flags, zero windows, bad checksums, not IP at all. For each category the
# XDP program's and the workers' counters account for every frame: steered or passed to the
# kernel, and each steered one forwarded or dropped with a reason (the table of
# docs/RELIABILITY.md is this test's output). Real HTTP through the VIP succeeds all along;
# xlvsd neither panics nor stalls; the table does not keep what the frames made.
# Needs root, tcpreplay, curl and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
command -v tcpreplay >/dev/null || fail "tcpreplay not installed (scripts/setup.sh)"

test_init ho
export LAB_IPV6=1
web_lab_up nat 1
m=-m
write_rules "$D/rules" \
  "-A -t $LAB_VIP:80 -s rr" \
  "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 $m -w 1" \
  "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 $m -w 1" \
  "-A -t [$LAB_VIP6]:80 -s rr" \
  "-a -t [$LAB_VIP6]:80 -r [$LAB_RS1_IP6]:80 $m -w 1"
start_xlvsd "$ID" --iface "$LAB_DIR_EXT" --iface "$LAB_DIR_INT" --rules "$D/rules"
macof() { ip -n "$(lab_ns "$ID" "$1")" link show "$2" | awk '/link\/ether/ { print $2 }'; }
EXT_MAC=$(macof dir "$LAB_DIR_EXT")
INT_MAC=$(macof dir "$LAB_DIR_INT")
CLI_MAC=$(macof cli eth0)
RS1_MAC=$(macof rs1 eth0)
python3 "$TESTLIB_ROOT/scripts/lib/hostile.py" "$D/vip" vip "$EXT_MAC" "$CLI_MAC" \
  "$LAB_CLIENT_IP" "$LAB_VIP" 30000 80 "$LAB_VIP6" "$LAB_CLIENT_IP6" >"$D/vip.list"
python3 "$TESTLIB_ROOT/scripts/lib/hostile.py" "$D/rs" rs "$INT_MAC" "$RS1_MAC" \
  "$LAB_RS1_IP" "$LAB_CLIENT_IP" 80 30000 >"$D/rs.list"

# Counters as one line: steered passed failed rx tx dropped conns reason=n...
snap() {
  { xadm "$ID" --xdp-stats; echo ---; xadm "$ID" --workers; } | python3 -c '
import sys
x, w = sys.stdin.read().split("---\n")
c = dict(l.split() for l in x.split("\n") if l.strip())
rx = tx = dr = conns = 0
reasons = {}
section = None
for l in w.split("\n"):
    f = l.split()
    if not f:
        continue
    if f[0] == "Worker":
        section = "w"; continue
    if l.startswith("Drops by reason"):
        section = "r"; continue
    if f[0] == "Connections:":
        conns = int(f[1]); continue
    if section == "w" and len(f) == 6 and "/" in f[0]:
        rx += int(f[1]); tx += int(f[2]); dr += int(f[4])
    elif section == "r" and len(f) == 2 and l.startswith("  "):
        reasons[f[0]] = int(f[1])
    else:
        section = None if not l.startswith("  ") else section
print(c["steered"], c["passed"], c["redirect_failed"], rx, tx, dr, conns,
      " ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
'
}
# A snapshot once the counters stand still: two in a row 0.2 s apart alike (at most 3 s).
# The workers publish theirs after each batch, so a frame steered just before a snapshot
# may be counted by its worker only after it, on a machine busy with other tests.
settled_snap() {
  local prev cur i
  prev=$(snap)
  for ((i = 0; i < 15; i++)); do
    sleep 0.2
    cur=$(snap)
    [ "$cur" = "$prev" ] && break
    prev=$cur
  done
  echo "$cur"
}

diffsnap() { # BEFORE AFTER -> "steered passed failed rx tx dropped conns reasons"
  python3 - "$1" "$2" <<'PY'
import sys
a, b = sys.argv[1].split(), sys.argv[2].split()
n = [int(b[i]) - int(a[i]) for i in range(7)]
ra = dict(x.split("=") for x in a[7:]); rb = dict(x.split("=") for x in b[7:])
rs = {k: int(v) - int(ra.get(k, 0)) for k, v in rb.items() if int(v) - int(ra.get(k, 0))}
print(*n, ",".join(f"{k}:{v}" for k, v in sorted(rs.items())) or "-")
PY
}

# Pass 1: every category back to back from both sides while real clients make one request
# at a time through the VIP; none may fail.
(
  for ((i = 0; i < 100000; i++)); do
    [ -e "$D/stop-real" ] && break
    if lab_exec "$ID" cli curl -s --max-time 3 -o /dev/null "http://$LAB_VIP/"; then echo ok; else echo fail; fi
  done
) >"$D/real" 2>/dev/null &
REAL=$!
bg_track $REAL
sleep 0.5
for round in 1 2 3; do
  for f in "$D"/vip/*.pcap; do ip netns exec "$LAB_CLI_NS" tcpreplay -q --pps=2000 -i eth0 "$f" >/dev/null 2>&1 || true; done
  for f in "$D"/rs/*.pcap; do ip netns exec "$(lab_ns "$ID" rs1)" tcpreplay -q --pps=2000 -i eth0 "$f" >/dev/null 2>&1 || true; done
  xlvsd_alive "after replay round $round"
done
sleep 0.5
touch "$D/stop-real"
wait "$REAL" || true
ok=$(grep -c '^ok' "$D/real" || true)
bad=$(grep -c '^fail' "$D/real" || true)
[ "$bad" = 0 ] && [ "$ok" -gt 0 ] || fail "real requests during the replay: $ok succeeded, $bad failed"
log "pass 1: every category 3 times from both sides; real HTTP through the VIP meanwhile: $ok requests, 0 failed"

# Pass 2: each category alone (no other traffic), its frames accounted for. The counts
# include what they cause: a SYN forwarded brings the realserver's SYN-ACK (steered back)
# and the client stack's RST for a port it never opened; frames shorter than an Ethernet
# header never leave tcpreplay's socket.
printf '# %-22s %6s %8s %7s %6s %6s %6s %7s  %s\n' category frames steered passed failed fwd drop conns "drops by reason"
replay() { # SIDE NS
  local f name n b a d
  while read -r name n; do
    f=$D/$1/$name.pcap
    b=$(settled_snap)
    ip netns exec "$2" tcpreplay -q --pps=2000 -i eth0 "$f" >/dev/null 2>&1 || true
    # The workers publish their counters after each batch; give a busy machine time.
    sleep 0.6
    a=$(settled_snap)
    d=$(diffsnap "$b" "$a")
    read -r st pa fa rx tx dr co rs <<<"$d"
    printf '# %-22s %6s %8s %7s %6s %6s %6s %7s  %s\n' "$1:${name#*-}" "$n" "$st" "$pa" "$fa" "$tx" "$dr" "$co" "$rs"
    # Every steered frame reached a worker, and each one the workers took was forwarded
    # or dropped with a reason.
    [ "$rx" = "$st" ] || fail "$name: $st frames steered, $rx reached the workers"
    [ "$rx" = $((tx + dr)) ] || fail "$name: the workers took $rx frames, forwarded $tx and dropped $dr"
    xlvsd_alive "after $1:$name"
  done <"$D/$1.list"
}
replay vip "$LAB_CLI_NS"
replay rs "$(lab_ns "$ID" rs1)"
lab_exec "$ID" cli curl -sS --max-time 3 -o /dev/null "http://$LAB_VIP/" || fail "IPv4 through the VIP after the replay"
lab_exec "$ID" cli curl -sS --max-time 3 -o /dev/null "http://[$LAB_VIP6]/" || fail "IPv6 through the VIP after the replay"
pass
