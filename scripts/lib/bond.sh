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

# lab_bond_up ID: builds the lab above (OVS bonds created; LACP negotiates on its own, see
# bond_wait_lacp).
lab_bond_up() { # ID
  local id=$1 r dev
  _lab_prepare "$id" 1 || return 1
  LAB_ID=$id LAB_DIR_PATH="$LAB_TMP_ROOT/xlvs-lab-$id"
  LAB_CLI_NS="xl-$id-cli" LAB_DIR_NS="xl-$id-dir" LAB_RS1_NS="xl-$id-rs1"
  LAB_RS2_NS="xl-$id-rs2" LAB_SW_NS="xl-$id-sw"
  LAB_VIP=$BOND_VIP LAB_CLIENT_IP=$BOND_CLI_IP LAB_RS1_IP=$BOND_RS1_IP LAB_RS2_IP=$BOND_RS2_IP
  for r in cli dir rs1 rs2 sw; do _lab_add_ns "$id" "$r" || return 1; done
  _lab_veth "$LAB_DIR_NS" m0 "$LAB_SW_NS" pS0 1 || return 1
  _lab_veth "$LAB_DIR_NS" m1 "$LAB_SW_NS" pS1 1 || return 1
  _lab_veth "$LAB_CLI_NS" eth0 "$LAB_SW_NS" pc 1 || return 1
  _lab_veth "$LAB_RS1_NS" eth0 "$LAB_SW_NS" pr1 1 || return 1
  _lab_veth "$LAB_RS2_NS" eth0 "$LAB_SW_NS" pr2 1 || return 1
  for dev in m0 m1; do
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
  # OVS reads whole frames through AF_PACKET: no GRO aggregates on its ports.
  for dev in pS0 pS1 pc pr1 pr2; do
    _lab_offload "$LAB_SW_NS" "$dev" 1 || return 1
    _lab_up_dev "$LAB_SW_NS" "$dev" || return 1
  done
  for r in cli rs1 rs2; do
    _lab_offload "xl-$id-$r" eth0 || return 1
    _lab_up_dev "xl-$id-$r" eth0 || return 1
  done
  _lab_x ip -n "$LAB_CLI_NS" addr add "$BOND_CLI_IP/24" dev eth0 || return 1
  _lab_x ip -n "$LAB_CLI_NS" route add default via "$BOND_GW" || return 1
  _lab_x ip -n "$LAB_RS1_NS" addr add "$BOND_RS1_IP/24" dev eth0 || return 1
  _lab_x ip -n "$LAB_RS2_NS" addr add "$BOND_RS2_IP/24" dev eth0 || return 1
  for r in rs1 rs2; do _lab_x ip -n "xl-$id-$r" route add default via "$BOND_DIP" || return 1; done
  _lab_sysctl "$LAB_DIR_NS" net.ipv4.ip_forward 0 || return 1

  ovs_start "$id" sw || return 1
  ovs_vsctl "$id" sw add-br br0 -- set bridge br0 datapath_type=netdev || return 1
  # balance-tcp puts new flows' hash buckets on one member and spreads them at each
  # rebalance (default every 10 s): every second here, so a short test sees both in use.
  ovs_vsctl "$id" sw add-bond br0 lag pS0 pS1 lacp=active bond_mode=balance-tcp \
    other_config:lacp-time=fast other_config:bond-rebalance-interval=1000 || return 1
  for dev in pc pr1 pr2; do ovs_vsctl "$id" sw add-port br0 "$dev" || return 1; done

  ovs_start "$id" dir || return 1
  ovs_vsctl "$id" dir add-br brd -- set bridge brd datapath_type=netdev || return 1
  ovs_vsctl "$id" dir add-bond brd lag m0 m1 lacp=active bond_mode=balance-tcp \
    other_config:lacp-time=fast || return 1
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
  local id=$1 r dev taps="kt0 kt1"
  [ "${2:-}" = stacked ] && taps="kt0 kt1 kt2 kt3"
  _lab_prepare "$id" 1 || return 1
  LAB_ID=$id LAB_CLI_NS="xl-$id-cli" LAB_RS1_NS="xl-$id-rs1" LAB_RS2_NS="xl-$id-rs2"
  LAB_SW_NS="xl-$id-sw" LAB_VIP=$BOND_VIP
  for r in cli rs1 rs2 sw; do _lab_add_ns "$id" "$r" || return 1; done
  _lab_veth "$LAB_CLI_NS" eth0 "$LAB_SW_NS" pc 1 || return 1
  _lab_veth "$LAB_RS1_NS" eth0 "$LAB_SW_NS" pr1 1 || return 1
  _lab_veth "$LAB_RS2_NS" eth0 "$LAB_SW_NS" pr2 1 || return 1
  for dev in $taps; do
    _lab_x ip -n "$LAB_SW_NS" tuntap add dev "$dev" mode tap || return 1
    _lab_up_dev "$LAB_SW_NS" "$dev" || return 1
  done
  for dev in pc pr1 pr2; do
    _lab_offload "$LAB_SW_NS" "$dev" 1 || return 1
    _lab_up_dev "$LAB_SW_NS" "$dev" || return 1
  done
  for r in cli rs1 rs2; do
    _lab_offload "xl-$id-$r" eth0 || return 1
    _lab_up_dev "xl-$id-$r" eth0 || return 1
  done
  _lab_x ip -n "$LAB_CLI_NS" addr add "$BOND_CLI_IP/24" dev eth0 || return 1
  _lab_x ip -n "$LAB_CLI_NS" route add default via "$BOND_GW" || return 1
  _lab_x ip -n "$LAB_RS1_NS" addr add "$BOND_RS1_IP/24" dev eth0 || return 1
  _lab_x ip -n "$LAB_RS2_NS" addr add "$BOND_RS2_IP/24" dev eth0 || return 1
  for r in rs1 rs2; do _lab_x ip -n "xl-$id-$r" route add default via "$BOND_DIP" || return 1; done
  ovs_start "$id" sw || return 1
  ovs_vsctl "$id" sw add-br br0 -- set bridge br0 datapath_type=netdev || return 1
  if [ "${2:-}" = stacked ]; then
    ovs_vsctl "$id" sw add-bond br0 lagA kt0 kt1 lacp=active bond_mode=balance-tcp \
      other_config:lacp-time=fast other_config:bond-rebalance-interval=1000 || return 1
    ovs_vsctl "$id" sw add-bond br0 lagB kt2 kt3 lacp=active bond_mode=balance-tcp \
      other_config:lacp-time=fast other_config:bond-rebalance-interval=1000 || return 1
  else
    ovs_vsctl "$id" sw add-bond br0 lag kt0 kt1 lacp=active bond_mode=balance-tcp \
      other_config:lacp-time=fast other_config:bond-rebalance-interval=1000 || return 1
  fi
  for dev in pc pr1 pr2; do ovs_vsctl "$id" sw add-port br0 "$dev" || return 1; done
}
