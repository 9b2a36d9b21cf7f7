#!/usr/bin/env bash
# Self-test for scripts/lib/lab.sh: builds the NAT lab (2 queues) and the DR
# lab, checks connectivity, offloads, nginx, UDP echo and ARP ownership of
# the VIP, and tears both down. Needs root. Prints "PASS lab_selftest" or
# "FAIL lab_selftest: ..." and exits 0/1.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/lab.sh
. "$HERE/../lib/lab.sh"

ID=ls$$
trap 'lab_down "$ID"' EXIT

fail() {
  echo "FAIL lab_selftest: $*"
  exit 1
}

# inns NS CMD...: run in a netns with a hard time limit.
inns() {
  local ns=$1
  shift
  timeout 10 ip netns exec "$ns" "$@"
}

# expect DESC WANT CMD...: CMD's stdout must be exactly WANT (byte for byte,
# trailing newlines included).
expect() {
  local desc=$1 want=$2 got rc=0
  shift 2
  got=$("$@" 2>&1; printf x) || rc=$?
  got=${got%x}
  if [ "$rc" -ne 0 ] || [ "$got" != "$want" ]; then
    fail "$desc: wanted $(printf %q "$want"), got $(printf %q "$got") (rc=$rc)"
  fi
}

# ok DESC CMD...: CMD must succeed.
ok() {
  local desc=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" -eq 0 ] || fail "$desc (rc=$rc): $out"
}

# ko DESC CMD...: CMD must fail.
ko() {
  local desc=$1
  shift
  if "$@" >/dev/null 2>&1; then fail "$desc"; fi
}

mac_of() { # NS DEV
  ip -n "$1" -o link show dev "$2" | awk '{ for (i = 1; i < NF; i++) if ($i == "link/ether") print $(i + 1) }'
}

udp_ask() { # NS IP PORT PAYLOAD
  printf '%s' "$4" | inns "$1" socat -t 1 - "UDP4:$2:$3"
}

assert_gone() {
  local left
  left=$(ip netns list | awk -v p="xl-$ID-" 'index($1, p) == 1 { print $1 }')
  [ -z "$left" ] || fail "netns left after lab_down: $left"
  [ ! -e "/tmp/xlvs-lab-$ID" ] || fail "/tmp/xlvs-lab-$ID left after lab_down"
}

[ "$(id -u)" -eq 0 ] || fail "must run as root"

# ------------------------------------------------------------------ NAT
lab_nat_up "$ID" 2 || fail "lab_nat_up"
CLI=$(lab_ns "$ID" cli) DIR=$(lab_ns "$ID" dir) RS1=$(lab_ns "$ID" rs1) RS2=$(lab_ns "$ID" rs2)
[ "$LAB_VIP" = 192.0.2.100 ] && [ "$LAB_CLIENT_IP" = 192.0.2.2 ] &&
  [ "$LAB_RS1_IP" = 10.10.0.11 ] && [ "$LAB_RS2_IP" = 10.10.0.12 ] &&
  [ "$LAB_DIR_IP" = 192.0.2.1 ] && [ "$LAB_DIR_EXT" = ext0 ] && [ "$LAB_DIR_INT" = int0 ] ||
  fail "NAT lab variables wrong"
expect "director interfaces" "lo int0 ext0 " sh -c \
  "ip -n $DIR -o link show | awk -F': ' '{ split(\$2, a, \"@\"); print a[1] }' | sort -r | tr '\n' ' '"
expect "lab_exec runs in the netns" "1
" lab_exec "$ID" dir sh -c 'ip -o addr show dev ext0 | grep -c 192.0.2.100/32'

for ns_dev in "$DIR ext0" "$DIR int0" "$CLI eth0" "$(lab_ns "$ID" sw) p-dir"; do
  set -- $ns_dev
  ok "$2 in $1 has 2 rx/tx queues" sh -c \
    "ip -n $1 -d link show dev $2 | grep -q 'numtxqueues 2 numrxqueues 2'"
done
ok "client eth0 tx-checksumming off" sh -c \
  "ip netns exec $CLI ethtool -k eth0 | grep -q '^tx-checksumming: off'"
ok "rs1 eth0 tx-checksumming off" sh -c \
  "ip netns exec $RS1 ethtool -k eth0 | grep -q '^tx-checksumming: off'"
ok "director ext0 tx-checksumming off" sh -c \
  "ip netns exec $DIR ethtool -k ext0 | grep -q '^tx-checksumming: off'"
ok "director int0 gro off" sh -c \
  "ip netns exec $DIR ethtool -k int0 | grep -q '^generic-receive-offload: off'"
expect "director ip_forward" "0
" inns "$DIR" cat /proc/sys/net/ipv4/ip_forward

ok "client pings director ext0" inns "$CLI" ping -c1 -W2 192.0.2.1
ok "client pings the VIP (director kernel holds it)" inns "$CLI" ping -c1 -W2 192.0.2.100
ok "rs1 pings director int0" inns "$RS1" ping -c1 -W2 10.10.0.1
ok "rs2 pings director int0" inns "$RS2" ping -c1 -W2 10.10.0.1
ko "client must not reach rs1 (director kernel must not forward)" \
  inns "$CLI" ping -c1 -W1 10.10.0.11

lab_nginx "$ID" rs1 80 || fail "lab_nginx rs1"
lab_nginx "$ID" rs2 80 || fail "lab_nginx rs2"
expect "curl rs1 from director" "rs1
" inns "$DIR" curl -sS --max-time 5 http://10.10.0.11/
expect "curl rs2 from director" "rs2
" inns "$DIR" curl -sS --max-time 5 http://10.10.0.12/
WWW=$(lab_wwwdir "$ID" rs1) || fail "lab_wwwdir"
[ "$WWW" = "/tmp/xlvs-lab-$ID/www-rs1" ] || fail "lab_wwwdir printed $WWW"
head -c 1048576 /dev/zero > "$WWW/big" || fail "cannot write $WWW/big"
expect "GET /big from rs1 (1 MiB)" "1048576" \
  inns "$DIR" curl -sS --max-time 5 -o /dev/null -w '%{size_download}' http://10.10.0.11/big

lab_udp_echo "$ID" rs2 9000 || fail "lab_udp_echo rs2"
lab_wait_port "$ID" rs2 9000 udp || fail "lab_wait_port udp"
expect "udp echo rs2" "rs2:hello" udp_ask "$DIR" 10.10.0.12 9000 hello
expect "udp echo rs2 again (fork)" "rs2:again" udp_ask "$DIR" 10.10.0.12 9000 again
ko "lab_wait_port on a closed port fails" env LAB_WAIT_TRIES=3 bash -c \
  ". '$HERE/../lib/lab.sh'; lab_wait_port '$ID' rs1 81"

lab_down "$ID"
assert_gone
lab_down "$ID" # idempotent
assert_gone

# ------------------------------------------------------------------ DR
lab_dr_up "$ID" 2 || fail "lab_dr_up"
CLI=$(lab_ns "$ID" cli) DIR=$(lab_ns "$ID" dir) RS1=$(lab_ns "$ID" rs1) RS2=$(lab_ns "$ID" rs2)
[ "$LAB_VIP" = 10.20.0.100 ] && [ "$LAB_CLIENT_IP" = 10.20.0.2 ] &&
  [ "$LAB_RS1_IP" = 10.20.0.11 ] && [ "$LAB_RS2_IP" = 10.20.0.12 ] &&
  [ "$LAB_DIR_IP" = 10.20.0.1 ] && [ "$LAB_DIR_EXT" = eth0 ] && [ "$LAB_DIR_INT" = eth0 ] ||
  fail "DR lab variables wrong"
ok "director eth0 has 2 queues" sh -c \
  "ip -n $DIR -d link show dev eth0 | grep -q 'numtxqueues 2 numrxqueues 2'"
ok "client eth0 tx-checksumming off" sh -c \
  "ip netns exec $CLI ethtool -k eth0 | grep -q '^tx-checksumming: off'"

lab_nginx "$ID" rs1 80 || fail "lab_nginx rs1 (DR)"
lab_nginx "$ID" rs2 80 || fail "lab_nginx rs2 (DR)"
lab_udp_echo "$ID" rs1 9000 || fail "lab_udp_echo rs1 (DR)"
expect "client curls rs1 directly" "rs1
" inns "$CLI" curl -sS --max-time 5 http://10.20.0.11/
expect "client curls rs2 directly" "rs2
" inns "$CLI" curl -sS --max-time 5 http://10.20.0.12/

ok "client pings the VIP" inns "$CLI" ping -c1 -W2 10.20.0.100
DIR_MAC=$(mac_of "$DIR" eth0)
NEIGH=$(ip -n "$CLI" neigh show 10.20.0.100 dev eth0)
case "$NEIGH" in
  *"lladdr $DIR_MAC "*) ;;
  *) fail "client's neighbour entry for the VIP is '$NEIGH', want director MAC $DIR_MAC" ;;
esac

# Simulate what the DR director does (rewrite the destination MAC to a
# realserver): the realserver must accept traffic for the VIP on lo and
# answer from the VIP, for TCP and UDP.
RS1_MAC=$(mac_of "$RS1" eth0)
ok "pin VIP to rs1 MAC" ip -n "$CLI" neigh replace 10.20.0.100 lladdr "$RS1_MAC" dev eth0 nud permanent
expect "curl VIP with VIP->rs1 MAC" "rs1
" inns "$CLI" curl -sS --max-time 5 http://10.20.0.100/
expect "udp VIP with VIP->rs1 MAC (reply from the VIP)" "rs1:hi" udp_ask "$CLI" 10.20.0.100 9000 hi
ok "unpin VIP" ip -n "$CLI" neigh del 10.20.0.100 dev eth0

lab_down "$ID"
assert_gone

echo "PASS lab_selftest"
