#!/usr/bin/env bash
# The transmit hash against the real thing: Debian's kernel under qemu (scripts/lib/kpeer.sh)
# with a balance-xor bond over two virtio NICs sends TCP, UDP and ICMP echo flows, first with
# xmit_hash_policy layer3+4, then layer2+3 (to 8 addresses behind 8 MACs); captured on the
# two taps, every frame must have left on the member the tests' computation of the hash
# (scripts/lib/bondhash.py, which bond_lacp checks xlvs's transmissions against) names:
# members[hash % 2], eth0 (tap kt0) first. So xlvs, the tests and the kernel agree.
# Needs root, qemu-system-x86, linux-image-amd64, busybox-static, tshark. Prints PASS/FAIL.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/kpeer.sh
. "$HERE/../lib/kpeer.sh"

test_init bk
_lab_prepare "$ID" 1 || fail "lab"
_lab_add_ns "$ID" sw || fail "netns"
NS=$(lab_ns "$ID" sw)
D=$(lab_dir "$ID")

cat >"$D/scenario.sh" <<'SH'
set -e
/sbin/ip link add bx type bond mode balance-xor xmit_hash_policy layer3+4 miimon 50
for m in eth0 eth1; do /sbin/ip link set $m down; /sbin/ip link set $m master bx; done
/sbin/ip link set bx address 02:00:00:00:00:b0 up
/sbin/ip addr add 10.99.0.1/24 dev bx
for i in 2 3 4 5 6 7 8 9 10; do
  /sbin/ip neigh add 10.99.0.$i lladdr 02:00:00:00:01:$(printf %02x $((0x40 + (i >> 1)))) dev bx nud permanent
done
cat /sys/class/net/bx/bonding/slaves
sleep 4
echo PHASE-L34
for p in $(seq 2000 2047); do nc -w 1 10.99.0.2 $p </dev/null >/dev/null 2>&1 & done
for i in 1 2 3 4 5 6 7 8; do ping -c 1 -W 1 10.99.0.2 >/dev/null 2>&1 & done
traceroute -n -q 2 -m 4 -w 1 10.99.0.2 >/dev/null 2>&1 || true
wait
echo layer2+3 >/sys/class/net/bx/bonding/xmit_hash_policy
cat /sys/class/net/bx/bonding/xmit_hash_policy
echo PHASE-L23
for i in 3 4 5 6 7 8 9 10; do
  for p in 3000 3001; do nc -w 1 10.99.0.$i $p </dev/null >/dev/null 2>&1 & done
done
wait
sleep 1
SH

KPEER_MODULES="virtio_pci virtio_net bonding" kpeer_boot "$NS" kt0,kt1 "$D/scenario.sh" "$D/console.log" 150 &
GUEST=$!
bg_track $GUEST
for ((i = 0; i < 100; i++)); do
  ip -n "$NS" link show kt1 >/dev/null 2>&1 && break
  sleep 0.1
done
ip netns exec "$NS" timeout 170 tshark -f ip -i kt0 -i kt1 -w "$D/guest.pcap" >/dev/null 2>&1 &
CAP=$!
bg_track $CAP
rc=0
wait "$GUEST" || rc=$?
sleep 0.5
kill "$CAP" 2>/dev/null || true
wait "$CAP" 2>/dev/null || true
[ "$rc" -eq 0 ] || fail "the guest failed: $(tail -n 15 "$D/console.log")"
grep -q "layer2+3" "$D/console.log" || fail "the guest did not switch to layer2+3: $(tail -n 15 "$D/console.log")"

tshark -r "$D/guest.pcap" -T fields -E separator=, -e frame.interface_name -e eth.src -e eth.dst \
  -e ip.src -e ip.dst -e ip.proto -e tcp.srcport -e tcp.dstport -e udp.srcport -e udp.dstport \
  -e icmp.type -e icmp.code -e icmp.ident 2>/dev/null >"$D/frames.csv"
python3 - "$D/frames.csv" "$TESTLIB_ROOT/scripts/lib" <<'PY' || fail "the kernel's bond chose other members than the hash names (above)"
import sys

sys.path.insert(0, sys.argv[2])
from bondhash import layer23, layer34, layer34_icmp_echo

seen = {}
wrong = []
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split(",")
    if len(f) < 13 or f[3] != "10.99.0.1":
        continue
    iface, smac, dmac, src, dst, proto = f[:6]
    if dst == "10.99.0.2":
        if proto == "6":
            kind, h = "tcp", layer34(src, dst, int(f[6]), int(f[7]))
        elif proto == "17":
            kind, h = "udp", layer34(src, dst, int(f[8]), int(f[9]))
        elif proto == "1" and f[10] == "8":
            kind, h = "icmp", layer34_icmp_echo(src, dst, 8, int(f[11]), int(f[12].split(",")[0]))
        else:
            continue
    else:
        kind, h = "layer2+3", layer23(smac, dmac, src, dst)
    want = ["kt0", "kt1"][h % 2]
    seen.setdefault(kind, {"kt0": 0, "kt1": 0})[iface] += 1
    if iface != want:
        wrong.append((kind, src, dst, f[6:10], f[12], iface, want))
print("# frames the guest's bond sent, by member (kt0 = eth0, kt1 = eth1):",
      "; ".join(f"{k} {v['kt0']}/{v['kt1']}" for k, v in sorted(seen.items())))
print(f"# {len(wrong)} on another member than the hash names")
for w in wrong[:8]:
    print("# wrong:", w)
need = {"tcp": 40, "udp": 4, "icmp": 6, "layer2+3": 12}
short = [k for k, n in need.items() if sum(seen.get(k, {}).values()) < n]
if short:
    print("# too few frames of:", short)
unused = [k for k in ("tcp", "layer2+3") if min(seen.get(k, {"kt0": 0}).values()) == 0]
if unused:
    print("# one member unused for:", unused)
sys.exit(1 if wrong or short or unused else 0)
PY
pass
