# shellcheck shell=bash
# xlvs lab library: network-namespace topologies for tests and the demo.
#
# Source it (`. scripts/lib/lab.sh`) from bash. It is safe under
# `set -euo pipefail`, prints nothing unless something fails (then it
# prints "lab: ..." on stderr and returns non-zero), and every loop is bounded.
# Needs root, iproute2, ethtool, nginx-light (for lab_nginx), socat (for
# lab_udp_echo).
#
# Every lab has a caller-chosen ID (1-12 chars of [A-Za-z0-9], e.g. "t$$" or
# "demo"). All namespaces are named xl-$ID-$ROLE with ROLE one of
# cli dir rs1 rs2 sw, and all files live in /tmp/xlvs-lab-$ID.
# Veth pairs are created directly inside their namespaces
# (`ip link add NAME netns A ... type veth peer name NAME2 netns B`), so no
# interface ever exists in the host namespace, even transiently, and the
# fixed short names inside the namespaces (ext0, int0, eth0, p-*) cannot
# collide between labs.
#
# Typical use:
#   . scripts/lib/lab.sh
#   ID=t$$; trap 'lab_down $ID' EXIT
#   lab_nat_up "$ID" 2
#   lab_nginx "$ID" rs1 80; lab_nginx "$ID" rs2 80
#   lab_exec "$ID" cli curl -s "http://$LAB_VIP/"
#
# Topologies (addresses are fixed; namespaces keep labs apart):
#
#   NAT (lab_nat_up):
#     cli eth0 192.0.2.2/24 (default via 192.0.2.1)
#       <veth> dir ext0 192.0.2.1/24 + VIP 192.0.2.100/32
#              dir int0 10.10.0.1/24             (ip_forward=0)
#       <veth> sw p-dir --- br0 --- p-rs1 <veth> rs1 eth0 10.10.0.11/24
#                              \--- p-rs2 <veth> rs2 eth0 10.10.0.12/24
#                                  (realservers: default via 10.10.0.1)
#   DR (lab_dr_up), one L2 segment through sw br0:
#     cli eth0 10.20.0.2/24, dir eth0 10.20.0.1/24 + VIP 10.20.0.100/32,
#     rs1 eth0 10.20.0.11/24, rs2 eth0 10.20.0.12/24; realservers also hold
#     the VIP 10.20.0.100/32 on lo with arp_ignore=1/arp_announce=2, so only
#     the director answers ARP for the VIP.
#
# QUEUES (default 1) sets numtxqueues/numrxqueues on the director's veths
# and on their peers (the peer's TX queue picks the director's RX queue).
#
# Offloads: tx checksumming is turned off on every veth end (a veth with tx
# checksum offload on hands out CHECKSUM_PARTIAL packets whose checksum field
# only holds the pseudo-header sum, which breaks incremental checksum
# updates); the director's interfaces additionally get gro/tso/gso off.
#
# IPv6 is disabled in every lab namespace to keep DAD/MLD/RS noise off the
# data plane; set LAB_IPV6=1 before calling lab_*_up to keep it and give
# every host an IPv6 address as well (added with nodad, so usable at once):
#   NAT: cli 2001:db8::2/64 (default via 2001:db8::1), dir ext0
#        2001:db8::1/64 + VIP6 2001:db8::100/128, dir int0 fd00:10::1/64,
#        rs1 fd00:10::11/64, rs2 fd00:10::12/64 (default via fd00:10::1);
#   DR:  fd00:20::/64: cli ::2, dir ::1 + VIP6 fd00:20::100/128, rs1 ::11,
#        rs2 ::12; realservers hold VIP6 on lo (NDP answers only for
#        addresses on the asking interface, so only the director answers).
# nginx then listens on [::] too.
#
# After lab_nat_up/lab_dr_up these variables are set (and exported):
#   LAB_ID LAB_MODE(nat|dr) LAB_QUEUES LAB_DIR_PATH
#   LAB_VIP LAB_CLIENT_IP LAB_RS1_IP LAB_RS2_IP
#   LAB_DIR_IP (director address facing the client)
#   LAB_DIR_INT_IP (director address facing the realservers; = LAB_DIR_IP in DR)
#   LAB_DIR_EXT LAB_DIR_INT (director interface names: ext0/int0, or eth0/eth0)
#   LAB_VIP6 LAB_CLIENT_IP6 LAB_RS1_IP6 LAB_RS2_IP6 (configured if LAB_IPV6=1)
#   LAB_CLI_NS LAB_DIR_NS LAB_RS1_NS LAB_RS2_NS LAB_SW_NS
# The same assignments are written to $LAB_DIR_PATH/lab.env for other shells.
#
# Functions:
#   lab_nat_up ID [QUEUES]        build the NAT lab
#   lab_dr_up ID [QUEUES]         build the DR lab
#   lab_down ID                   tear down (idempotent, never fails)
#   lab_bpffs ID                  mount a bpffs of the lab's own, print its path
#   lab_ns ID ROLE                print the netns name
#   lab_exec ID ROLE CMD...       run CMD inside the netns
#   lab_dir ID                    print the lab's temp dir
#   lab_wwwdir ID ROLE            print (and create) ROLE's nginx docroot
#   lab_nginx ID ROLE PORT        start nginx in ROLE listening on PORT
#   lab_udp_echo ID ROLE PORT     start a UDP echo ("ROLE:" + payload)
#   lab_wait_port ID ROLE PORT [tcp|udp]   wait until something listens

LAB_ROLES="cli dir rs1 rs2 sw"
LAB_TMP_ROOT=${LAB_TMP_ROOT:-/tmp}

# ---------------------------------------------------------------- internals

_lab_err() { printf 'lab: %s\n' "$*" >&2; }

# Run a command; on failure say which one and return its status.
_lab_x() {
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    _lab_err "command failed (rc=$rc): $*"
    return "$rc"
  fi
}

_lab_check_id() {
  if [[ ! ${1-} =~ ^[A-Za-z0-9]{1,12}$ ]]; then
    _lab_err "invalid lab ID '${1-}' (want 1-12 chars of [A-Za-z0-9])"
    return 1
  fi
}

_lab_check_role() {
  case "${1-}" in
    cli | dir | d2 | rs1 | rs2 | rs3 | sw) return 0 ;;
  esac
  _lab_err "invalid role '${1-}' (want one of: $LAB_ROLES)"
  return 1
}

_lab_check_port() {
  if [[ ! ${1-} =~ ^[0-9]{1,5}$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt 65535 ]; then
    _lab_err "invalid port '${1-}'"
    return 1
  fi
}

_lab_check_queues() {
  if [[ ! ${1-} =~ ^[0-9]{1,3}$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt 256 ]; then
    _lab_err "invalid queue count '${1-}' (want 1..256)"
    return 1
  fi
}

# Write a sysctl inside a netns without depending on procps.
_lab_sysctl() { # NS dotted.key value
  local path
  path=/proc/sys/${2//./\/}
  ip netns exec "$1" sh -c 'printf "%s\n" "$2" > "$1"' _ "$path" "$3" ||
    { _lab_err "sysctl $2=$3 failed in $1"; return 1; }
}

# All existing netns of a lab, one per line.
_lab_list_ns() { # ID
  ip netns list 2>/dev/null | awk -v p="xl-$1-" \
    'index($1, p) == 1 && substr($1, length(p) + 1) ~ /^[a-z0-9]+$/ { print $1 }' || true
}

_lab_add_ns() { # ID ROLE
  local ns="xl-$1-$2"
  _lab_x ip netns add "$ns" || return 1
  _lab_x ip -n "$ns" link set lo up || return 1
  if [ "${LAB_IPV6:-0}" != 1 ]; then
    _lab_sysctl "$ns" net.ipv6.conf.all.disable_ipv6 1 || return 1
    _lab_sysctl "$ns" net.ipv6.conf.default.disable_ipv6 1 || return 1
  fi
}

# Create a veth pair straight into two namespaces. Q = queue count for both.
_lab_veth() { # NS_A DEV_A NS_B DEV_B Q
  _lab_x ip link add "$2" netns "$1" numtxqueues "$5" numrxqueues "$5" \
    type veth peer name "$4" netns "$3" numtxqueues "$5" numrxqueues "$5"
}

# tx checksum offload off (mandatory, verified); DIRECTOR=1 also turns off
# gro/tso/gso (best effort, one feature at a time).
_lab_offload() { # NS DEV [DIRECTOR]
  local f
  ip netns exec "$1" ethtool -K "$2" tx off >/dev/null 2>&1 || true
  if ! ip netns exec "$1" ethtool -k "$2" 2>/dev/null | has '^tx-checksumming: off'; then
    _lab_err "could not turn tx checksumming off on $2 in $1"
    return 1
  fi
  if [ "${3:-0}" = 1 ]; then
    for f in gro tso gso; do
      ip netns exec "$1" ethtool -K "$2" "$f" off >/dev/null 2>&1 || true
    done
  fi
}

# An IPv6 address, usable at once (no duplicate address detection).
_lab_addr6() { # NS DEV ADDR/LEN
  _lab_x ip -6 -n "$1" addr add "$3" dev "$2" nodad
}

_lab_up_dev() { # NS DEV
  _lab_x ip -n "$1" link set "$2" up
}

_lab_prepare() { # ID QUEUES
  _lab_check_id "$1" || return 1
  _lab_check_queues "$2" || return 1
  if [ "$(id -u)" -ne 0 ]; then
    _lab_err "must run as root"
    return 1
  fi
  # A lab with this ID left over from a crashed run would collide: drop it.
  lab_down "$1"
  _lab_x mkdir -p -m 0755 "$LAB_TMP_ROOT/xlvs-lab-$1" || return 1
}

_lab_set_vars() { # ID MODE QUEUES
  LAB_ID=$1 LAB_MODE=$2 LAB_QUEUES=$3
  LAB_DIR_PATH="$LAB_TMP_ROOT/xlvs-lab-$1"
  LAB_CLI_NS="xl-$1-cli" LAB_DIR_NS="xl-$1-dir" LAB_RS1_NS="xl-$1-rs1"
  LAB_RS2_NS="xl-$1-rs2" LAB_SW_NS="xl-$1-sw"
  if [ "$2" = nat ]; then
    LAB_VIP=192.0.2.100 LAB_CLIENT_IP=192.0.2.2 LAB_DIR_IP=192.0.2.1
    LAB_DIR_INT_IP=10.10.0.1 LAB_RS1_IP=10.10.0.11 LAB_RS2_IP=10.10.0.12
    LAB_DIR_EXT=ext0 LAB_DIR_INT=int0
    LAB_VIP6=2001:db8::100 LAB_CLIENT_IP6=2001:db8::2
    LAB_RS1_IP6=fd00:10::11 LAB_RS2_IP6=fd00:10::12
  else
    LAB_VIP=10.20.0.100 LAB_CLIENT_IP=10.20.0.2 LAB_DIR_IP=10.20.0.1
    LAB_DIR_INT_IP=10.20.0.1 LAB_RS1_IP=10.20.0.11 LAB_RS2_IP=10.20.0.12
    LAB_DIR_EXT=eth0 LAB_DIR_INT=eth0
    LAB_VIP6=fd00:20::100 LAB_CLIENT_IP6=fd00:20::2
    LAB_RS1_IP6=fd00:20::11 LAB_RS2_IP6=fd00:20::12
  fi
  export LAB_ID LAB_MODE LAB_QUEUES LAB_DIR_PATH LAB_CLI_NS LAB_DIR_NS \
    LAB_RS1_NS LAB_RS2_NS LAB_SW_NS LAB_VIP LAB_CLIENT_IP LAB_DIR_IP \
    LAB_DIR_INT_IP LAB_RS1_IP LAB_RS2_IP LAB_DIR_EXT LAB_DIR_INT \
    LAB_VIP6 LAB_CLIENT_IP6 LAB_RS1_IP6 LAB_RS2_IP6
}

_lab_write_env() {
  local v
  {
    for v in LAB_ID LAB_MODE LAB_QUEUES LAB_DIR_PATH LAB_CLI_NS LAB_DIR_NS \
      LAB_RS1_NS LAB_RS2_NS LAB_SW_NS LAB_VIP LAB_CLIENT_IP LAB_DIR_IP \
      LAB_DIR_INT_IP LAB_RS1_IP LAB_RS2_IP LAB_DIR_EXT LAB_DIR_INT \
      LAB_VIP6 LAB_CLIENT_IP6 LAB_RS1_IP6 LAB_RS2_IP6; do
      printf '%s=%q\n' "$v" "${!v}"
    done
  } > "$LAB_DIR_PATH/lab.env" || { _lab_err "cannot write $LAB_DIR_PATH/lab.env"; return 1; }
}

# Switch netns with bridge br0 (STP off, so ports forward immediately).
_lab_switch() { # SW_NS
  _lab_x ip -n "$1" link add br0 type bridge stp_state 0 || return 1
  ip netns exec "$1" ethtool -K br0 tx off >/dev/null 2>&1 || true
  _lab_up_dev "$1" br0
}

# Attach NS:DEV to the switch through a veth whose switch end is PORT.
_lab_switch_port() { # SW_NS PORT NS DEV Q [DIRECTOR]
  _lab_veth "$1" "$2" "$3" "$4" "$5" || return 1
  _lab_offload "$1" "$2" || return 1
  _lab_offload "$3" "$4" "${6:-0}" || return 1
  _lab_x ip -n "$1" link set "$2" master br0 || return 1
  _lab_up_dev "$1" "$2"
}

_lab_up_failed() { # ID
  _lab_err "building lab $1 failed; tearing it down"
  lab_down "$1"
  return 1
}

# ---------------------------------------------------------------- public

lab_ns() { # ID ROLE
  _lab_check_id "${1-}" || return 1
  _lab_check_role "${2-}" || return 1
  printf 'xl-%s-%s\n' "$1" "$2"
}

# has GREP-ARGS...: `grep -q` for the end of a pipeline that reads its input to the end.
# Under pipefail, `cmd | grep -q x` fails when grep finds x early and exits: the writer
# still writing gets SIGPIPE (or EPIPE), and the pipeline's status is the writer's.
has() {
  local rc=0
  grep -q "$@" || rc=$?
  cat >/dev/null
  return "$rc"
}

lab_exec() { # ID ROLE CMD...
  local ns
  ns=$(lab_ns "${1-}" "${2-}") || return 1
  shift 2
  ip netns exec "$ns" "$@"
}

lab_dir() { # ID
  _lab_check_id "${1-}" || return 1
  printf '%s\n' "$LAB_TMP_ROOT/xlvs-lab-$1"
}

lab_nat_up() { # ID [QUEUES]
  local id=${1-} q=${2:-1}
  _lab_prepare "$id" "$q" || return 1
  _lab_set_vars "$id" nat "$q"
  _lab_nat_build || _lab_up_failed "$id"
}

_lab_nat_build() {
  local r q=$LAB_QUEUES cli=$LAB_CLI_NS dir=$LAB_DIR_NS sw=$LAB_SW_NS
  local rs1=$LAB_RS1_NS rs2=$LAB_RS2_NS
  for r in $LAB_ROLES; do _lab_add_ns "$LAB_ID" "$r" || return 1; done
  _lab_sysctl "$dir" net.ipv4.ip_forward 0 || return 1

  # client eth0 <-> director ext0: direct veth, Q queues on both ends
  _lab_veth "$dir" ext0 "$cli" eth0 "$q" || return 1
  _lab_offload "$dir" ext0 1 || return 1
  _lab_offload "$cli" eth0 || return 1
  _lab_x ip -n "$cli" addr add 192.0.2.2/24 dev eth0 || return 1
  _lab_x ip -n "$dir" addr add 192.0.2.1/24 dev ext0 || return 1
  _lab_x ip -n "$dir" addr add 192.0.2.100/32 dev ext0 || return 1
  _lab_up_dev "$cli" eth0 || return 1
  _lab_up_dev "$dir" ext0 || return 1
  _lab_x ip -n "$cli" route add default via 192.0.2.1 dev eth0 || return 1

  # director int0 and the realservers on the switch
  _lab_switch "$sw" || return 1
  _lab_switch_port "$sw" p-dir "$dir" int0 "$q" 1 || return 1
  _lab_x ip -n "$dir" addr add 10.10.0.1/24 dev int0 || return 1
  _lab_up_dev "$dir" int0 || return 1
  _lab_switch_port "$sw" p-rs1 "$rs1" eth0 1 || return 1
  _lab_switch_port "$sw" p-rs2 "$rs2" eth0 1 || return 1
  _lab_x ip -n "$rs1" addr add 10.10.0.11/24 dev eth0 || return 1
  _lab_x ip -n "$rs2" addr add 10.10.0.12/24 dev eth0 || return 1
  _lab_up_dev "$rs1" eth0 || return 1
  _lab_up_dev "$rs2" eth0 || return 1
  _lab_x ip -n "$rs1" route add default via 10.10.0.1 dev eth0 || return 1
  _lab_x ip -n "$rs2" route add default via 10.10.0.1 dev eth0 || return 1
  if [ "${LAB_IPV6:-0}" = 1 ]; then
    _lab_addr6 "$cli" eth0 2001:db8::2/64 || return 1
    _lab_addr6 "$dir" ext0 2001:db8::1/64 || return 1
    _lab_addr6 "$dir" ext0 2001:db8::100/128 || return 1
    _lab_addr6 "$dir" int0 fd00:10::1/64 || return 1
    _lab_addr6 "$rs1" eth0 fd00:10::11/64 || return 1
    _lab_addr6 "$rs2" eth0 fd00:10::12/64 || return 1
    _lab_x ip -6 -n "$cli" route add default via 2001:db8::1 dev eth0 || return 1
    _lab_x ip -6 -n "$rs1" route add default via fd00:10::1 dev eth0 || return 1
    _lab_x ip -6 -n "$rs2" route add default via fd00:10::1 dev eth0 || return 1
  fi
  _lab_write_env
}

lab_dr_up() { # ID [QUEUES]
  local id=${1-} q=${2:-1}
  _lab_prepare "$id" "$q" || return 1
  _lab_set_vars "$id" dr "$q"
  _lab_dr_build || _lab_up_failed "$id"
}

_lab_dr_build() {
  local r rs q=$LAB_QUEUES cli=$LAB_CLI_NS dir=$LAB_DIR_NS sw=$LAB_SW_NS
  for r in $LAB_ROLES; do _lab_add_ns "$LAB_ID" "$r" || return 1; done
  _lab_sysctl "$dir" net.ipv4.ip_forward 0 || return 1

  # Realservers: VIP on lo, never answer or announce it via ARP. The
  # sysctls are set before eth0 exists ("default" then covers it) and
  # again on eth0 explicitly.
  for rs in "$LAB_RS1_NS" "$LAB_RS2_NS"; do
    for r in all default lo; do
      _lab_sysctl "$rs" "net.ipv4.conf.$r.arp_ignore" 1 || return 1
      _lab_sysctl "$rs" "net.ipv4.conf.$r.arp_announce" 2 || return 1
    done
    _lab_x ip -n "$rs" addr add 10.20.0.100/32 dev lo || return 1
  done

  _lab_switch "$sw" || return 1
  _lab_switch_port "$sw" p-dir "$dir" eth0 "$q" 1 || return 1
  _lab_switch_port "$sw" p-cli "$cli" eth0 1 || return 1
  _lab_switch_port "$sw" p-rs1 "$LAB_RS1_NS" eth0 1 || return 1
  _lab_switch_port "$sw" p-rs2 "$LAB_RS2_NS" eth0 1 || return 1
  for rs in "$LAB_RS1_NS" "$LAB_RS2_NS"; do
    _lab_sysctl "$rs" net.ipv4.conf.eth0.arp_ignore 1 || return 1
    _lab_sysctl "$rs" net.ipv4.conf.eth0.arp_announce 2 || return 1
  done
  _lab_x ip -n "$dir" addr add 10.20.0.1/24 dev eth0 || return 1
  _lab_x ip -n "$dir" addr add 10.20.0.100/32 dev eth0 || return 1
  _lab_x ip -n "$cli" addr add 10.20.0.2/24 dev eth0 || return 1
  _lab_x ip -n "$LAB_RS1_NS" addr add 10.20.0.11/24 dev eth0 || return 1
  _lab_x ip -n "$LAB_RS2_NS" addr add 10.20.0.12/24 dev eth0 || return 1
  for r in "$dir" "$cli" "$LAB_RS1_NS" "$LAB_RS2_NS"; do
    _lab_up_dev "$r" eth0 || return 1
  done
  if [ "${LAB_IPV6:-0}" = 1 ]; then
    _lab_addr6 "$dir" eth0 fd00:20::1/64 || return 1
    _lab_addr6 "$dir" eth0 fd00:20::100/128 || return 1
    _lab_addr6 "$cli" eth0 fd00:20::2/64 || return 1
    _lab_addr6 "$LAB_RS1_NS" eth0 fd00:20::11/64 || return 1
    _lab_addr6 "$LAB_RS2_NS" eth0 fd00:20::12/64 || return 1
    _lab_addr6 "$LAB_RS1_NS" lo fd00:20::100/128 || return 1
    _lab_addr6 "$LAB_RS2_NS" lo fd00:20::100/128 || return 1
  fi
  _lab_write_env
}

# Kill everything running in the lab's namespaces, delete them, remove the
# temp dir. Idempotent; never returns non-zero for a missing/partial lab.
lab_down() { # ID
  local id=${1-} nss ns pids i
  _lab_check_id "$id" || return 0
  nss=$(_lab_list_ns "$id")
  if [ -n "$nss" ]; then
    for ns in $nss; do
      ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    done
    for ((i = 0; i < 30; i++)); do
      pids=
      for ns in $nss; do
        pids+=$(ip netns pids "$ns" 2>/dev/null || true)
      done
      [ -z "$pids" ] && break
      sleep 0.1
    done
    for ns in $nss; do
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    done
    for ns in $nss; do
      ip netns del "$ns" 2>/dev/null || true
    done
  fi
  # A bpffs (lab_bpffs) goes with its pins.
  awk -v d="${LAB_TMP_ROOT:?}/xlvs-lab-$id/" 'index($2, d) == 1 { print $2 }' /proc/mounts |
    xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf -- "${LAB_TMP_ROOT:?}/xlvs-lab-$id" 2>/dev/null || true
  return 0
}

# lab_bpffs ID: a bpffs of the lab's own at <labdir>/bpf (for xlvsd --pin-dir), unmounted by
# lab_down; prints its path.
lab_bpffs() { # ID
  local d
  d="${LAB_TMP_ROOT:?}/xlvs-lab-$1/bpf"
  if ! awk -v d="$d" '$2 == d { f = 1 } END { exit !f }' /proc/mounts; then
    _lab_x mkdir -p "$d" || return 1
    _lab_x mount -t bpf bpf "$d" || return 1
  fi
  printf '%s\n' "$d"
}

# Wait (at most LAB_WAIT_TRIES x 0.1s, default 50) until a socket listens on
# PORT inside ROLE's netns.
lab_wait_port() { # ID ROLE PORT [tcp|udp]
  local ns proto=${4:-tcp} flag i
  ns=$(lab_ns "${1-}" "${2-}") || return 1
  _lab_check_port "${3-}" || return 1
  case "$proto" in
    tcp) flag=-Hltn ;;
    udp) flag=-Hlun ;;
    *) _lab_err "lab_wait_port: protocol must be tcp or udp, not '$proto'"; return 1 ;;
  esac
  for ((i = 0; i < ${LAB_WAIT_TRIES:-50}; i++)); do
    if [ -n "$(ip netns exec "$ns" ss "$flag" "sport = :$3" 2>/dev/null || true)" ]; then
      return 0
    fi
    sleep 0.1
  done
  _lab_err "nothing listens on $proto port $3 in $ns"
  return 1
}

lab_wwwdir() { # ID ROLE
  local d
  _lab_check_id "${1-}" || return 1
  _lab_check_role "${2-}" || return 1
  d="$LAB_TMP_ROOT/xlvs-lab-$1/www-$2"
  if [ ! -d "$LAB_TMP_ROOT/xlvs-lab-$1" ]; then
    _lab_err "lab $1 does not exist (no $LAB_TMP_ROOT/xlvs-lab-$1)"
    return 1
  fi
  mkdir -p -m 0755 "$d" || { _lab_err "cannot create $d"; return 1; }
  printf '%s\n' "$d"
}

# nginx realserver: GET / answers "ROLE\n"; any other path (e.g. /big...) is
# served from lab_wwwdir (URL path = file path below it, so put a file at
# "$(lab_wwwdir ID ROLE)/big" to serve /big). Workers: LAB_NGINX_WORKERS (1).
lab_nginx() { # ID ROLE PORT
  local id=${1-} role=${2-} port=${3-} ns www d out rc=0
  ns=$(lab_ns "$id" "$role") || return 1
  _lab_check_port "$port" || return 1
  www=$(lab_wwwdir "$id" "$role") || return 1
  d="$LAB_TMP_ROOT/xlvs-lab-$id/nginx-$role-$port"
  if [ -e "$d/nginx.pid" ]; then
    _lab_err "nginx for $role:$port already started ($d)"
    return 1
  fi
  mkdir -p "$d/tmp" || { _lab_err "cannot create $d"; return 1; }
  cat > "$d/nginx.conf" <<EOF || { _lab_err "cannot write $d/nginx.conf"; return 1; }
# generated by scripts/lib/lab.sh for lab $id, $role:$port
user root root;
daemon on;
master_process on;
worker_processes ${LAB_NGINX_WORKERS:-1};
worker_rlimit_nofile 65536;
pid $d/nginx.pid;
error_log $d/error.log warn;
events {
    worker_connections 16384;
}
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    server_tokens off;
    server {
        listen 0.0.0.0:$port backlog=4096;$( [ "${LAB_IPV6:-0}" = 1 ] && printf '\n        listen [::]:%s backlog=4096;' "$port")
        server_name _;
        root $www;
        location = / {
            default_type text/plain;
            return 200 "$role\n";
        }
        location /big {
        }
${LAB_NGINX_EXTRA:-}
    }
}
EOF
  out=$(ip netns exec "$ns" /usr/sbin/nginx -p "$d/" -e "$d/error.log" -c "$d/nginx.conf" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    _lab_err "nginx failed to start in $ns (rc=$rc): ${out:-see $d/error.log}"
    return 1
  fi
  if ! lab_wait_port "$id" "$role" "$port" tcp; then
    if [ -f "$d/error.log" ]; then tail -n 5 "$d/error.log" >&2 || true; fi
    return 1
  fi
}

# Stops the nginx lab_nginx started for ROLE:PORT (waits until the port is
# closed); lab_nginx may start it again.
lab_nginx_stop() { # ID ROLE PORT
  local id=${1-} role=${2-} port=${3-} d pid i
  d="$LAB_TMP_ROOT/xlvs-lab-$id/nginx-$role-$port"
  [ -f "$d/nginx.pid" ] || { _lab_err "no nginx for $role:$port"; return 1; }
  pid=$(cat "$d/nginx.pid")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$d/nginx.pid"
}

# NAT lab only: a third realserver, rs3 10.10.0.13/24 on the switch.
lab_add_rs3() { # ID
  local id=${1-} ns="xl-${1-}-rs3"
  [ "$LAB_MODE" = nat ] || { _lab_err "lab_add_rs3: NAT lab only"; return 1; }
  _lab_add_ns "$id" rs3 || return 1
  _lab_switch_port "$LAB_SW_NS" p-rs3 "$ns" eth0 1 || return 1
  _lab_x ip -n "$ns" addr add 10.10.0.13/24 dev eth0 || return 1
  _lab_up_dev "$ns" eth0 || return 1
  _lab_x ip -n "$ns" route add default via 10.10.0.1 dev eth0 || return 1
  LAB_RS3_IP=10.10.0.13
  export LAB_RS3_IP
}

# A second director d2 on the DR lab's segment (a director pair): eth0
# 10.20.0.3/24 holding VIP2 10.20.0.101/32, which the realservers also hold
# on lo (so they accept what d2 forwards to them). The client reaches VIP2 at
# d2 as it reaches the VIP at dir. With LAB_IPV6=1, d2 also has fd00:20::3/64.
# Sets LAB_D2_NS LAB_D2_IP LAB_VIP2.
lab_add_dir2() { # ID
  local id=${1-} ns="xl-${1-}-d2" rs
  [ "$LAB_MODE" = dr ] || { _lab_err "lab_add_dir2: DR lab only"; return 1; }
  _lab_add_ns "$id" d2 || return 1
  _lab_sysctl "$ns" net.ipv4.ip_forward 0 || return 1
  _lab_switch_port "$LAB_SW_NS" p-d2 "$ns" eth0 "$LAB_QUEUES" 1 || return 1
  _lab_x ip -n "$ns" addr add 10.20.0.3/24 dev eth0 || return 1
  _lab_x ip -n "$ns" addr add 10.20.0.101/32 dev eth0 || return 1
  _lab_up_dev "$ns" eth0 || return 1
  for rs in "$LAB_RS1_NS" "$LAB_RS2_NS"; do
    _lab_x ip -n "$rs" addr add 10.20.0.101/32 dev lo || return 1
  done
  if [ "${LAB_IPV6:-0}" = 1 ]; then
    _lab_addr6 "$ns" eth0 fd00:20::3/64 || return 1
  fi
  LAB_D2_NS=$ns LAB_D2_IP=10.20.0.3 LAB_VIP2=10.20.0.101
  export LAB_D2_NS LAB_D2_IP LAB_VIP2
}

# A director pair for LVS-NAT (lab_nat_pair_up ID): the NAT lab's addresses, but the
# client side is a second bridge br1 in sw, so that both directors reach the client, and the
# realservers' default gateway is a floating address that moves with the VIP:
#   cli eth0 192.0.2.2/24 --- br1 --- dir ext0 192.0.2.1/24 + VIP 192.0.2.100/32
#                                 \--- d2  ext0 192.0.2.3/24
#   rs1 10.10.0.11, rs2 10.10.0.12 (default via 10.10.0.254) --- br0 ---
#        dir int0 10.10.0.1/24 + 10.10.0.254/32,  d2 int0 10.10.0.3/24
# The floating addresses start on dir; a takeover moves them to d2
# (lab_pair_move_to_d2). With LAB_PAIR_FLOATING=0 no director holds them (keepalived
# will). Sets the NAT lab's variables plus LAB_D2_NS LAB_D2_IP
# (192.0.2.3) LAB_D2_INT_IP (10.10.0.3) LAB_GW_IP (10.10.0.254).
lab_nat_pair_up() { # ID
  local id=${1-} r cli dir d2 sw
  _lab_prepare "$id" 1 || return 1
  _lab_set_vars "$id" nat 1
  cli=$LAB_CLI_NS dir=$LAB_DIR_NS d2="xl-$id-d2" sw=$LAB_SW_NS
  {
    for r in $LAB_ROLES d2; do _lab_add_ns "$id" "$r" || return 1; done
    _lab_sysctl "$dir" net.ipv4.ip_forward 0 &&
      _lab_sysctl "$d2" net.ipv4.ip_forward 0 &&
      _lab_switch "$sw" &&
      _lab_x ip -n "$sw" link add br1 type bridge stp_state 0 &&
      _lab_up_dev "$sw" br1 &&
      _lab_pair_port "$sw" br1 p-cli "$cli" eth0 0 &&
      _lab_pair_port "$sw" br1 p-dext "$dir" ext0 1 &&
      _lab_pair_port "$sw" br1 p-d2ext "$d2" ext0 1 &&
      _lab_pair_port "$sw" br0 p-dir "$dir" int0 1 &&
      _lab_pair_port "$sw" br0 p-d2int "$d2" int0 1 &&
      _lab_pair_port "$sw" br0 p-rs1 "$LAB_RS1_NS" eth0 0 &&
      _lab_pair_port "$sw" br0 p-rs2 "$LAB_RS2_NS" eth0 0 &&
      _lab_x ip -n "$cli" addr add 192.0.2.2/24 dev eth0 &&
      _lab_x ip -n "$dir" addr add 192.0.2.1/24 dev ext0 &&
      _lab_x ip -n "$dir" addr add 10.10.0.1/24 dev int0 &&
      { [ "${LAB_PAIR_FLOATING:-1}" = 0 ] || {
        _lab_x ip -n "$dir" addr add 192.0.2.100/32 dev ext0 &&
          _lab_x ip -n "$dir" addr add 10.10.0.254/32 dev int0
      }; } &&
      _lab_x ip -n "$d2" addr add 192.0.2.3/24 dev ext0 &&
      _lab_x ip -n "$d2" addr add 10.10.0.3/24 dev int0 &&
      _lab_x ip -n "$LAB_RS1_NS" addr add 10.10.0.11/24 dev eth0 &&
      _lab_x ip -n "$LAB_RS2_NS" addr add 10.10.0.12/24 dev eth0 &&
      _lab_x ip -n "$LAB_RS1_NS" route add default via 10.10.0.254 dev eth0 &&
      _lab_x ip -n "$LAB_RS2_NS" route add default via 10.10.0.254 dev eth0
  } || { _lab_up_failed "$id"; return 1; }
  LAB_D2_NS=$d2 LAB_D2_IP=192.0.2.3 LAB_D2_INT_IP=10.10.0.3 LAB_GW_IP=10.10.0.254
  export LAB_D2_NS LAB_D2_IP LAB_D2_INT_IP LAB_GW_IP
  _lab_write_env
}

# A veth from NS:DEV to bridge BR of the switch (port PORT, up, offloads off).
_lab_pair_port() { # SW BR PORT NS DEV DIRECTOR
  _lab_veth "$1" "$3" "$4" "$5" 1 || return 1
  _lab_offload "$1" "$3" || return 1
  _lab_offload "$4" "$5" "$6" || return 1
  _lab_x ip -n "$1" link set "$3" master "$2" || return 1
  _lab_up_dev "$1" "$3" && _lab_up_dev "$4" "$5"
}

# dir goes dead as a crashed host does: everything arriving on its links is dropped (its
# kernel answers nothing, not even with a reset), but the links stay up, as a crashed
# host's switch ports do, so the switch keeps sending it the frames addressed to it. Its
# XDP program still sees frames first: kill its xlvsd right after.
lab_pair_kill_dir() { # ID [DEV...] (default: ext0 int0)
  local id=${1-}
  shift
  lab_pair_kill "$id" dir "$@"
}

# lab_pair_kill ID ROLE [DEV...]: the same for either director (dir or d2); lab_pair_revive
# ID ROLE [DEV...] undoes it.
lab_pair_kill() { # ID ROLE [DEV...] (default: ext0 int0)
  local id=${1-} role=${2-} dev devs
  shift 2
  devs=${*:-ext0 int0}
  for dev in $devs; do
    ip netns exec "xl-$id-$role" nft -f - <<NFT || { _lab_err "nft in $role"; return 1; }
table netdev dead_$dev {
  chain in { type filter hook ingress device $dev priority -500; policy drop; }
}
NFT
  done
}

lab_pair_revive() { # ID ROLE [DEV...] (default: ext0 int0)
  local id=${1-} role=${2-} dev devs
  shift 2
  devs=${*:-ext0 int0}
  for dev in $devs; do
    ip netns exec "xl-$id-$role" nft delete table netdev "dead_$dev" 2>/dev/null || true
  done
}

# The takeover as the network sees it: the VIP and the gateway address go to d2, and the
# realservers, then after CLIENT_DELAY seconds (default 0) the client, forget their
# neighbour entries (what keepalived's gratuitous ARP makes them do; a delay lets the
# realservers' packets reach d2 before any of the client's does).
lab_pair_move_to_d2() { # ID [CLIENT_DELAY]
  local id=${1-} r
  _lab_x ip -n "xl-$id-d2" addr add 192.0.2.100/32 dev ext0 || return 1
  _lab_x ip -n "xl-$id-d2" addr add 10.10.0.254/32 dev int0 || return 1
  for r in rs1 rs2; do
    _lab_x ip -n "xl-$id-$r" neigh flush all || return 1
  done
  sleep "${2:-0}"
  _lab_x ip -n "xl-$id-cli" neigh flush all
}

# UDP echo: each datagram is answered with ONE datagram "ROLE:" + payload.
# socat forks a child per datagram; the reply is assembled by dd so it goes
# out in a single write (printf + cat alone would send two datagrams).
# A socket bound to 0.0.0.0 answers from the route's preferred source, not
# from the address the datagram was sent to; for an address held on lo (the
# VIP on a DR realserver) that would be wrong, so an extra instance bound to
# each such address is started (most specific bind wins).
lab_udp_echo() { # ID ROLE PORT
  local id=${1-} role=${2-} port=${3-} ns d log a n=1 i addrs sys
  ns=$(lab_ns "$id" "$role") || return 1
  _lab_check_port "$port" || return 1
  d=$(lab_dir "$id") || return 1
  [ -d "$d" ] || { _lab_err "lab $id does not exist"; return 1; }
  log="$d/udp-echo-$role-$port.log"
  # No quotes or commas: socat parses its address strings (and 1.8 also
  # interprets quotes). ROLE is [a-z0-9] so it needs no quoting.
  sys="{ printf $role:; cat; } | dd bs=65536 count=1 iflag=fullblock status=none"
  addrs=$(ip -n "$ns" -4 -o addr show dev lo 2>/dev/null |
    awk '{ split($4, a, "/"); if (a[1] !~ /^127\./) print a[1] }' || true)
  _lab_x setsid -f ip netns exec "$ns" socat -T 5 \
    "UDP4-RECVFROM:$port,fork,reuseaddr" "SYSTEM:$sys" </dev/null >>"$log" 2>&1 || return 1
  for a in $addrs; do
    _lab_x setsid -f ip netns exec "$ns" socat -T 5 \
      "UDP4-RECVFROM:$port,bind=$a,fork,reuseaddr" "SYSTEM:$sys" </dev/null >>"$log" 2>&1 || return 1
    n=$((n + 1))
  done
  # The IPv6 lab: IPv6 too, on the wildcard and, as for IPv4, on each address on lo (a DR
  # realserver's VIP, so that its answers come from the VIP).
  if [ "${LAB_IPV6:-0}" = 1 ]; then
    _lab_x setsid -f ip netns exec "$ns" socat -T 5 \
      "UDP6-RECVFROM:$port,ipv6only=1,fork,reuseaddr" "SYSTEM:$sys" </dev/null >>"$log" 2>&1 || return 1
    n=$((n + 1))
    addrs=$(ip -n "$ns" -6 -o addr show dev lo 2>/dev/null |
      awk '{ split($4, a, "/"); if (a[1] != "::1") print a[1] }' || true)
    for a in $addrs; do
      _lab_x setsid -f ip netns exec "$ns" socat -T 5 \
        "UDP6-RECVFROM:$port,bind=[$a],ipv6only=1,fork,reuseaddr" "SYSTEM:$sys" </dev/null >>"$log" 2>&1 || return 1
      n=$((n + 1))
    done
  fi
  for ((i = 0; i < ${LAB_WAIT_TRIES:-50}; i++)); do
    if [ "$(ip netns exec "$ns" ss -Hlun "sport = :$port" 2>/dev/null | wc -l)" -ge "$n" ]; then
      return 0
    fi
    sleep 0.1
  done
  _lab_err "udp echo on port $port in $ns did not come up"
  tail -n 5 "$log" >&2 || true
  return 1
}
