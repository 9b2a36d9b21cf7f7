#!/usr/bin/env bash
# Drive kernel pktgen (/proc/net/pktgen) against a director on real NICs, with
# the knobs of xlvs's generator: destination VIP:port, source address and port
# ranges (random source ports for many flows, so a bond spreads them), 64-byte
# or IMIX frames, a rate, and a count or a duration.
#
# Needs a kernel with CONFIG_NET_PKTGEN (modprobe pktgen) and root; this lab
# machine has none. --dry-run prints what would be written where, and runs
# anywhere.
#
# usage: scripts/pktgen.sh -i DEV -d VIP[:PORT] -m DST_MAC [options]
#   -i DEV          interface to send from (on the traffic generator host)
#   -d VIP[:PORT]   destination virtual service (default port 80)
#   -m MAC          next hop's MAC (the director's interface)
#   -s A.B.C.D[-E.F.G.H]   source addresses (default 198.18.0.1-198.18.255.254)
#   -p LO-HI        source ports, chosen at random (default 1024-65535)
#   -z SIZE|imix    frame size on the wire incl. FCS, 64..1518 (default 64), or
#                   the 7:4:1 IMIX of 64, 570 and 1518 bytes
#   -t THREADS      pktgen threads (kpktgend_0..N-1), one TX queue each (default 1)
#   -r PPS          rate per thread in packets/s (default: as fast as possible, in
#                   bursts of 32; pktgen waits its delay once per burst, so a rate
#                   sends one packet per burst)
#   -c COUNT        packets per thread (default 0: until -D runs out; pktgen checks
#                   the count between bursts, so without -r it may send up to 31 more:
#                   compare with the pkts-sofar it prints)
#   -D SECONDS      run this long, then stop (default 10; ignored with -c)
#   --dry-run       print the pktgen commands instead of writing them
set -euo pipefail

die() { echo "pktgen.sh: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }

DEV= VIP= PORT=80 MAC= SRC=198.18.0.1-198.18.255.254 SPORTS=1024-65535
SIZE=64 THREADS=1 RATE= COUNT=0 DURATION=10 DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    -i) DEV=${2:?}; shift ;;
    -d) VIP=${2:?}; shift ;;
    -m) MAC=${2:?}; shift ;;
    -s) SRC=${2:?}; shift ;;
    -p) SPORTS=${2:?}; shift ;;
    -z) SIZE=${2:?}; shift ;;
    -t) THREADS=${2:?}; shift ;;
    -r) RATE=${2:?}; shift ;;
    -c) COUNT=${2:?}; shift ;;
    -D) DURATION=${2:?}; shift ;;
    --dry-run) DRY=1 ;;
    -h | --help) usage ;;
    *) die "unknown option $1 (see -h)" ;;
  esac
  shift
done

is_ipv4() { # ADDR: dotted quad, each part 0..255
  local IFS=. p n=0
  [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
  for p in $1; do
    [ "$((10#$p))" -le 255 ] || return 1
    n=$((n + 1))
  done
  [ "$n" -eq 4 ]
}
[ -n "$DEV" ] || die "-i DEV is required"
[ -n "$VIP" ] || die "-d VIP[:PORT] is required"
[ -n "$MAC" ] || die "-m MAC is required"
if [[ $VIP == *:* ]]; then PORT=${VIP##*:} VIP=${VIP%%:*}; fi
is_ipv4 "$VIP" || die "bad VIP '$VIP' (pktgen here sends IPv4)"
[[ $PORT =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "bad port '$PORT'"
[[ $MAC =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] || die "bad MAC '$MAC'"
SRC_MIN=${SRC%%-*} SRC_MAX=${SRC##*-}
is_ipv4 "$SRC_MIN" && is_ipv4 "$SRC_MAX" || die "bad source range '$SRC'"
SP_MIN=${SPORTS%%-*} SP_MAX=${SPORTS##*-}
[[ $SP_MIN =~ ^[0-9]+$ && $SP_MAX =~ ^[0-9]+$ ]] && [ "$SP_MIN" -le "$SP_MAX" ] \
  && [ "$SP_MAX" -le 65535 ] || die "bad source ports '$SPORTS'"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "bad thread count '$THREADS'"
[[ $COUNT =~ ^[0-9]+$ ]] || die "bad count '$COUNT'"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "bad duration '$DURATION'"
[ -z "$RATE" ] || [[ $RATE =~ ^[1-9][0-9]*$ ]] || die "bad rate '$RATE'"
# pktgen's pkt_size excludes the 4-byte FCS the NIC appends.
if [ "$SIZE" = imix ]; then
  SIZE_CMDS=("pkt_size 60" "imix_weights 60,7 566,4 1514,1")
else
  [[ $SIZE =~ ^[0-9]+$ ]] && [ "$SIZE" -ge 64 ] && [ "$SIZE" -le 1518 ] || die "bad size '$SIZE' (64..1518 or imix)"
  SIZE_CMDS=("pkt_size $((SIZE - 4))")
fi

PG=/proc/net/pktgen
pg() { # FILE CMD: one pktgen command
  if [ "$DRY" = 1 ]; then
    printf '%s: %s\n' "$1" "$2"
    return
  fi
  echo "$2" >"$PG/$1"
  # pktgen reports a refused command in the file's Result line.
  if [ "$1" != pgctrl ] && ! grep -q '^Result: OK' "$PG/$1"; then
    die "$1: '$2' refused: $(grep '^Result' "$PG/$1")"
  fi
}

if [ "$DRY" = 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "must run as root"
  [ -d "$PG" ] || modprobe pktgen 2>/dev/null || true
  [ -d "$PG" ] || die "no $PG: this kernel has no pktgen (CONFIG_NET_PKTGEN)"
  [ -e "/sys/class/net/$DEV" ] || die "no interface $DEV"
fi

for ((t = 0; t < THREADS; t++)); do
  pg "kpktgend_$t" "rem_device_all"
  pg "kpktgend_$t" "add_device $DEV@$t"
  d="$DEV@$t"
  pg "$d" "count $COUNT"
  pg "$d" "clone_skb 0"
  # pktgen spins its inter-packet delay once per burst: with a rate, one packet per burst.
  if [ -n "$RATE" ]; then pg "$d" "burst 1"; else pg "$d" "burst 32"; fi
  pg "$d" "queue_map_min $t"
  pg "$d" "queue_map_max $t"
  for c in "${SIZE_CMDS[@]}"; do pg "$d" "$c"; done
  pg "$d" "dst $VIP"
  pg "$d" "dst_mac $MAC"
  pg "$d" "udp_dst_min $PORT"
  pg "$d" "udp_dst_max $PORT"
  pg "$d" "src_min $SRC_MIN"
  pg "$d" "src_max $SRC_MAX"
  pg "$d" "udp_src_min $SP_MIN"
  pg "$d" "udp_src_max $SP_MAX"
  pg "$d" "flag IPSRC_RND"
  pg "$d" "flag UDPSRC_RND"
  [ -n "$RATE" ] && pg "$d" "ratep $RATE"
done

if [ "$DRY" = 1 ]; then
  echo "pgctrl: start (then after ${DURATION}s, unless -c: stop)"
  exit 0
fi

echo "pktgen.sh: $THREADS thread(s) on $DEV -> $VIP:$PORT, size $SIZE, sources $SRC ports $SPORTS"
if [ "$COUNT" -gt 0 ]; then
  echo start >"$PG/pgctrl"   # returns when every thread has sent its count
else
  echo start >"$PG/pgctrl" &
  START=$!
  sleep "$DURATION"
  echo stop >"$PG/pgctrl"
  wait "$START" 2>/dev/null || true
fi
total=0
for ((t = 0; t < THREADS; t++)); do
  r=$(grep -A2 '^Result' "$PG/$DEV@$t" | tr '\n' ' ')
  echo "thread $t: $r"
  pps=$(sed -n 's/.* \([0-9]\+\)pps .*/\1/p' "$PG/$DEV@$t" | head -n 1)
  total=$((total + ${pps:-0}))
done
echo "offered: $total pps in all (count what the realservers or the sink received to get loss)"
