# shellcheck shell=bash
# Bonded-director labs: Open vSwitch's userspace datapath (datapath_type=netdev) as the
# LACP partner (the switch) and as the aggregation on the director's side (standing in for
# the kernel bond this kernel lacks: its internal port bond0 holds the director's
# addresses and answers ARP; LACPDUs and everything else xlvs does not steer reach it
# through XDP_PASS and its AF_PACKET sockets on the members).
#
#   cli eth0 10.40.0.10/24 (default via 10.40.0.1) --- pc  \
#   rs1 eth0 10.30.0.11/24 (default via 10.30.0.1) --- pr1  |- sw: OVS br0, bond "lag"
#   rs2 eth0 10.30.0.12/24 (default via 10.30.0.1) --- pr2  |   (pS0, pS1), LACP active,
#                                                          /    balance-tcp, fast timer
#   dir m0 <-> sw pS0, dir m1 <-> sw pS1 (the bond's members: xlvs attaches here)
#   dir: OVS brd, bond "lag" (m0, m1), LACP active, balance-tcp; internal port bond0:
#        10.40.0.1/24, 10.30.0.1/24, VIP 10.40.0.100/32 (one-armed LVS-NAT), ip_forward 0.
#
# Production: sw is the switch (pair), dir's OVS is the kernel's bond0 (802.3ad,
# xmit_hash_policy=layer3+4), m0/m1 the NIC ports.
#
# Needs lab.sh (namespaces, lab_down kills the OVS daemons with everything in them).

BOND_VIP=10.40.0.100 BOND_CLI_IP=10.40.0.10 BOND_RS1_IP=10.30.0.11 BOND_RS2_IP=10.30.0.12
BOND_DIP=10.30.0.1 BOND_GW=10.40.0.1

# ovs_start ID ROLE: an ovsdb-server and an ovs-vswitchd of ROLE's own, inside its netns,
# their files in <labdir>/ovs-ROLE.
ovs_start() { # ID ROLE
  local ns d i
  ns=$(lab_ns "$1" "$2") || return 1
  d="$(lab_dir "$1")/ovs-$2"
  mkdir -p "$d" || return 1
  ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema || return 1
  # Its run-time files (bridges' management sockets) in $d, not /var/run/openvswitch.
  export OVS_RUNDIR=$d OVS_LOGDIR=$d OVS_DBDIR=$d
  ip netns exec "$ns" ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" \
    --pidfile="$d/ovsdb.pid" --unixctl="$d/ovsdb.ctl" --log-file="$d/ovsdb.log" --detach ||
    return 1
  ip netns exec "$ns" ovs-vsctl --db="unix:$d/db.sock" --no-wait init || return 1
  ip netns exec "$ns" ovs-vswitchd "unix:$d/db.sock" --pidfile="$d/vswitchd.pid" \
    --unixctl="$d/vswitchd.ctl" --log-file="$d/vswitchd.log" --detach || return 1
  for ((i = 0; i < 50; i++)); do
    [ -S "$d/vswitchd.ctl" ] && return 0
    sleep 0.1
  done
  echo "lab: ovs-vswitchd in $ns did not start" >&2
  return 1
}

# ovs_vsctl ID ROLE ARGS...; ovs_appctl ID ROLE ARGS...
ovs_vsctl() {
  local d
  d="$(lab_dir "$1")/ovs-$2"
  ip netns exec "$(lab_ns "$1" "$2")" ovs-vsctl --timeout=10 --db="unix:$d/db.sock" "${@:3}"
}
ovs_appctl() {
  local d
  d="$(lab_dir "$1")/ovs-$2"
  ovs-appctl --timeout=10 -t "$d/vswitchd.ctl" "${@:3}"
}

# _bond_hosts ID: the lab's namespaces and the hosts on the switch: cli, rs1 and rs2 with
# their addresses and routes, and sw's OVS bridge br0 with their ports (the bond's members
# are the caller's).
_bond_hosts() { # ID
  local id=$1 r dev
  LAB_ID=$id LAB_DIR_PATH="$LAB_TMP_ROOT/xlvs-lab-$id"
  LAB_CLI_NS="xl-$id-cli" LAB_DIR_NS="xl-$id-dir" LAB_RS1_NS="xl-$id-rs1"
  LAB_RS2_NS="xl-$id-rs2" LAB_SW_NS="xl-$id-sw"
  LAB_VIP=$BOND_VIP LAB_CLIENT_IP=$BOND_CLI_IP LAB_RS1_IP=$BOND_RS1_IP LAB_RS2_IP=$BOND_RS2_IP
  for r in cli rs1 rs2 sw; do _lab_add_ns "$id" "$r" || return 1; done
  for r in cli:pc rs1:pr1 rs2:pr2; do
    _lab_veth "xl-$id-${r%%:*}" eth0 "$LAB_SW_NS" "${r#*:}" 1 || return 1
    _lab_offload "xl-$id-${r%%:*}" eth0 || return 1
    _lab_up_dev "xl-$id-${r%%:*}" eth0 || return 1
    # OVS reads whole frames through AF_PACKET: no GRO aggregates on its ports.
    _lab_offload "$LAB_SW_NS" "${r#*:}" 1 || return 1
    _lab_up_dev "$LAB_SW_NS" "${r#*:}" || return 1
  done
  _lab_x ip -n "$LAB_CLI_NS" addr add "$BOND_CLI_IP/24" dev eth0 || return 1
  _lab_x ip -n "$LAB_CLI_NS" route add default via "$BOND_GW" || return 1
  _lab_x ip -n "$LAB_RS1_NS" addr add "$BOND_RS1_IP/24" dev eth0 || return 1
  _lab_x ip -n "$LAB_RS2_NS" addr add "$BOND_RS2_IP/24" dev eth0 || return 1
  for r in rs1 rs2; do _lab_x ip -n "xl-$id-$r" route add default via "$BOND_DIP" || return 1; done
  ovs_start "$id" sw || return 1
  ovs_vsctl "$id" sw add-br br0 -- set bridge br0 datapath_type=netdev || return 1
  for dev in pc pr1 pr2; do ovs_vsctl "$id" sw add-port br0 "$dev" || return 1; done
}

# _bond_lag ID ROLE BRIDGE NAME PORT...: an OVS LACP bond (active, fast, balance-tcp). New
# flows' hash buckets go to one member and are spread at each rebalance (default every
# 10 s): every second here, so a short test sees both members in use.
_bond_lag() { # ID ROLE BRIDGE NAME PORT...
  ovs_vsctl "$1" "$2" add-bond "$3" "$4" "${@:5}" lacp=active bond_mode=balance-tcp \
    other_config:lacp-time=fast other_config:bond-rebalance-interval=1000
}

# lab_bond_up ID: builds the lab above (OVS bonds created; LACP negotiates on its own, see
# bond_wait_lacp).
lab_bond_up() { # ID
  local id=$1 dev r
  _lab_prepare "$id" 1 || return 1
  _bond_hosts "$id" || return 1
  _lab_add_ns "$id" dir || return 1
  for dev in m0 m1; do
    _lab_veth "$LAB_DIR_NS" "$dev" "$LAB_SW_NS" "pS${dev#m}" 1 || return 1
    _lab_offload "$LAB_SW_NS" "pS${dev#m}" 1 || return 1
    _lab_up_dev "$LAB_SW_NS" "pS${dev#m}" || return 1
    _lab_offload "$LAB_DIR_NS" "$dev" 1 || return 1
    _lab_up_dev "$LAB_DIR_NS" "$dev" || return 1
    # The members belong to the aggregation: like a kernel bond's rx_handler, keep the
    # director's stack off them (it would answer ARP from a member's MAC). OVS's AF_PACKET
    # sockets see each frame before this hook.
    ip netns exec "$LAB_DIR_NS" nft -f - <<NFT || return 1
table netdev member_$dev {
  chain in { type filter hook ingress device $dev priority 0; policy drop; }
}
NFT
  done
  _lab_sysctl "$LAB_DIR_NS" net.ipv4.ip_forward 0 || return 1
  _bond_lag "$id" sw br0 lag pS0 pS1 || return 1
  ovs_start "$id" dir || return 1
  ovs_vsctl "$id" dir add-br brd -- set bridge brd datapath_type=netdev || return 1
  _bond_lag "$id" dir brd lag m0 m1 || return 1
  ovs_vsctl "$id" dir add-port brd bond0 -- set interface bond0 type=internal || return 1
  for ((r = 0; r < 50; r++)); do
    ip -n "$LAB_DIR_NS" link show bond0 >/dev/null 2>&1 && break
    sleep 0.1
  done
  ip netns exec "$LAB_DIR_NS" ethtool -K bond0 tx off >/dev/null 2>&1 || true
  _lab_up_dev "$LAB_DIR_NS" bond0 || return 1
  _lab_x ip -n "$LAB_DIR_NS" addr add "$BOND_GW/24" dev bond0 || return 1
  _lab_x ip -n "$LAB_DIR_NS" addr add "$BOND_DIP/24" dev bond0 || return 1
  _lab_x ip -n "$LAB_DIR_NS" addr add "$BOND_VIP/32" dev bond0 || return 1
}

# bond_lacp_ok ID ROLE [BOND [N]]: whether ROLE's bond BOND (default "lag") has negotiated
# LACP with N (default 2) members enabled (ovs-appctl bond/show).
bond_lacp_ok() { # ID ROLE [BOND [N]]
  local s
  s=$(ovs_appctl "$1" "$2" bond/show "${3:-lag}" 2>/dev/null) || return 1
  grep -q 'lacp_status: negotiated' <<<"$s" || return 1
  [ "$(grep -c '^member .*: enabled' <<<"$s")" -eq "${4:-2}" ]
}

# bond_wait_lacp ID SECS: both sides negotiated, within SECS.
bond_wait_lacp() { # ID SECS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    bond_lacp_ok "$1" sw && bond_lacp_ok "$1" dir && return 0
    sleep 0.1
  done
  return 1
}

# lab_bond_guest_up ID [stacked]: the switch side of a kernel-bond director under qemu: sw's
# OVS with an LACP bond "lag" over taps kt0, kt1 (the guest's eth0, eth1: kpeer_boot attaches
# to them), and cli, rs1, rs2 on its bridge, addressed as in lab_bond_up (the guest holds
# bond0's addresses). `stacked`: two LACP bonds instead, "lagA" over kt0, kt1 and "lagB"
# over kt2, kt3 (two switches in production; one bridge here: the guest's active-backup
# bond over them uses one aggregate at a time, so no loop).
lab_bond_guest_up() { # ID [stacked]
  local id=$1 dev
  _lab_prepare "$id" 1 || return 1
  _bond_hosts "$id" || return 1
  for dev in kt0 kt1 ${2:+kt2 kt3}; do
    _lab_x ip -n "$LAB_SW_NS" tuntap add dev "$dev" mode tap || return 1
    _lab_up_dev "$LAB_SW_NS" "$dev" || return 1
  done
  if [ "${2:-}" = stacked ]; then
    _bond_lag "$id" sw br0 lagA kt0 kt1 || return 1
    _bond_lag "$id" sw br0 lagB kt2 kt3 || return 1
  else
    _bond_lag "$id" sw br0 lag kt0 kt1 || return 1
  fi
}

# bond_test_lab: (for tests, after test_init) lab_bond_up, LACP negotiated on both sides,
# nginx on rs1 and rs2; sets D.
bond_test_lab() {
  lab_bond_up "$ID" || fail "lab_bond_up"
  D=$(lab_dir "$ID")
  bond_wait_lacp "$ID" 20 || fail "LACP did not negotiate: $(ovs_appctl "$ID" sw bond/show lag)"
  log "LACP negotiated between the switch and the director's aggregation (members m0, m1)"
  lab_nginx "$ID" rs1 80 && lab_nginx "$ID" rs2 80 || fail "nginx"
}

# bond_guest_xlvsd BOND...: prints the part of a qemu guest's scenario (kpeer_boot) that
# every kernel-bond test shares, once bond0 is built: the director's addresses on bond0, the
# NAT rules, a wait for each BOND's LACP partner, `xlvsd --iface bond0` started and ready
# ("XLVS-READY" on the console), and two functions for what follows: `wait_conns N` (until
# the service has had N connections, at most 3 minutes) and `ports SECTION` (prints
# PORTS-SECTION and xlvsadm's Ports listing).
bond_guest_xlvsd() { # BOND...
  cat <<SH
/sbin/ip addr add $BOND_GW/24 dev bond0
/sbin/ip addr add $BOND_DIP/24 dev bond0
/sbin/ip addr add $BOND_VIP/32 dev bond0
mkdir -p /run /etc/xlvs
cat >/etc/xlvs/rules <<R
-A -t $BOND_VIP:80 -s rr
-a -t $BOND_VIP:80 -r $BOND_RS1_IP:80 -m
-a -t $BOND_VIP:80 -r $BOND_RS2_IP:80 -m
R
for b in $*; do
  i=0
  while [ \$i -lt 600 ] && [ "\$(cat /sys/class/net/\$b/bonding/ad_partner_mac)" = 00:00:00:00:00:00 ]; do
    sleep 0.1; i=\$((i + 1))
  done
  echo "LACP partner of \$b: \$(cat /sys/class/net/\$b/bonding/ad_partner_mac)"
done
$XLVSD --iface bond0 --rules /etc/xlvs/rules --pin-dir none --control /run/xlvsd.sock >/tmp/xlvsd.log 2>&1 &
i=0
while [ \$i -lt 1200 ] && ! grep -q 'xlvsd: ready' /tmp/xlvsd.log; do sleep 0.1; i=\$((i + 1)); done
cat /tmp/xlvsd.log
grep -q 'xlvsd: ready' /tmp/xlvsd.log
echo XLVS-READY
wait_conns() {
  i=0
  while [ \$i -lt 1800 ]; do
    n=\$($XLVSADM --control /run/xlvsd.sock -L -n --stats | awk '\$1 == "TCP" { print \$3 }')
    [ "\${n:-0}" -ge \$1 ] && return 0
    sleep 0.1; i=\$((i + 1))
  done
  return 1
}
ports() { echo "PORTS-\$1"; $XLVSADM --control /run/xlvsd.sock --workers | sed -n '/^Ports:/,/^Connections/p'; }
SH
}

# bond_guest_boot TAPS: boots $D/scenario.sh in Debian's kernel under qemu with xlvsd, on
# virtio NICs over TAPS (comma-separated, in sw's namespace), console in $D/console.log,
# GUEST its pid; waits (bounded) for XLVS-READY. virtio_net takes XDP only without the
# host's checksum and segmentation offloads, and an 802.3ad member must report full duplex
# (else it never aggregates, nor sends a LACPDU). Set KPEER_MONITOR for qemu's monitor.
bond_guest_boot() { # TAPS
  local i
  KPEER_MODULES="virtio_pci virtio_net bonding" KPEER_BINS="$XLVSD $XLVSADM" KPEER_MEM=1024 \
    KPEER_NIC_OPTS="guest_csum=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off,speed=10000,duplex=full" \
    kpeer_boot "$LAB_SW_NS" "$1" "$D/scenario.sh" "$D/console.log" 250 &
  GUEST=$!
  bg_track $GUEST
  for ((i = 0; i < 3000; i++)); do
    grep -q XLVS-READY "$D/console.log" 2>/dev/null && return 0
    kill -0 "$GUEST" 2>/dev/null || break
    sleep 0.1
  done
  grep -q XLVS-READY "$D/console.log" || fail "xlvsd did not get ready in the guest: $(tail -n 25 "$D/console.log")"
}

# bond_guest_until MARK: waits (bounded: 60 s) for a console line starting with MARK.
bond_guest_until() { # MARK
  local i
  for ((i = 0; i < 600; i++)); do
    grep -q "^$1" <(tr -d '\r' <"$D/console.log") && return 0
    sleep 0.1
  done
  fail "the guest did not get to $1: $(tail -n 20 "$D/console.log")"
}

# What a member failure under load is measured with (bond_member_down, offload_bond), in a
# bond_test_lab with UDP services on VIP:9000 and realservers' port 9000:
#   bond_udp_sinks SECS   UDP sinks on rs1 and rs2 for SECS seconds.
#   bond_capture SECS     the director's TCP and UDP frames as the switch receives them on
#                         pS0 and pS1, for SECS seconds: $D/pS0.pcap, $D/pS1.pcap.
#   bond_udp_flows N      20 UDP flows from cli to VIP:9000, a 64-byte datagram every 5 ms
#                         each, N per flow; in the background, its pid in UDP.
#   bond_frames           the captures as lines "PORT TIME PROTO SRC DST PORTS..." in
#                         $D/frames.txt.
#   bond_switch_time P    "N MEDIAN MAX ON1" over the protocol-P (6, 17) flows the director
#                         sent on m1 in the second before T0 (ms since the epoch, when m1's
#                         link died), ON1 of them: for the N that reached m0 after, from T0
#                         to each one's first frame there, in ms.
bond_udp_sinks() { # SECS
  local r
  for r in rs1 rs2; do
    lab_exec "$ID" "$r" timeout "$1" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9000))
while True:
    s.recv(2048)' </dev/null >/dev/null 2>&1 &
    bg_track $!
  done
}

bond_capture() { # SECS
  local bmac p
  bmac=$(ip -n "$LAB_DIR_NS" link show bond0 | awk '/link\/ether/ { print $2 }')
  for p in pS0 pS1; do
    ip netns exec "$LAB_SW_NS" timeout "$1" tshark -i "$p" -s 96 \
      -f "ether src $bmac and (tcp or udp)" -w "$D/$p.pcap" >/dev/null 2>&1 &
    bg_track $!
  done
}

bond_udp_flows() { # N
  lab_exec "$ID" cli timeout $(($1 / 200 + 8)) python3 -c '
import socket, time
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(20)]
t = time.monotonic()
for i in range('"$1"'):
    for s in socks:
        s.sendto(b"x" * 64, ("'"$BOND_VIP"'", 9000))
    t += 0.005
    time.sleep(max(0, t - time.monotonic()))' </dev/null >/dev/null 2>"$D/udp.err" &
  UDP=$!
  bg_track $UDP
}

bond_frames() {
  local p
  for p in pS0 pS1; do
    tshark -r "$D/$p.pcap" -T fields -e frame.time_epoch -e ip.proto -e ip.src -e ip.dst \
      -e tcp.srcport -e tcp.dstport -e udp.srcport -e udp.dstport 2>/dev/null | sed "s/^/$p /"
  done >"$D/frames.txt"
}

bond_switch_time() { # PROTO
  python3 - "$D/frames.txt" "$T0" "$1" <<'PY'
import statistics, sys
t0 = float(sys.argv[2]) / 1000
on1, first0 = set(), {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 7 or f[2] != sys.argv[3]:
        continue
    port, t, flow = f[0], float(f[1]), tuple(f[3:])
    if port == "pS1" and t0 - 1 <= t < t0:
        on1.add(flow)
    if port == "pS0" and t >= t0 and flow not in first0:
        first0[flow] = t
gaps = sorted((first0[f] - t0) * 1000 for f in on1 if f in first0)
print(len(gaps), round(statistics.median(gaps)) if gaps else 0, round(gaps[-1]) if gaps else 0,
      len(on1))
PY
}
