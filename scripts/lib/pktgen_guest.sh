# shellcheck shell=bash
# Kernel pktgen for real: Debian's kernel under qemu (scripts/lib/kpeer.sh, which has the
# pktgen module this machine's kernel lacks) runs scripts/pktgen.sh, the script operators run
# on real NICs, as the lab's client, against xlvsd in the director's namespace. Source it from
# a test after testlib.sh and kpeer.sh.
#
#   pg_guest_run MODE COUNT RATE   MODE nat or dr: builds that lab, a UDP service on
#                                  VIP:9 (rr over rs1 and rs2, each counting and dropping
#                                  what reaches port 9 in nftables), boots the guest on a tap
#                                  in the client's segment and has it send COUNT 64-byte
#                                  frames at RATE pps from random sources (198.18.0.1-
#                                  198.18.3.254, ports 1024-65535). Sets PG_SENT (pktgen's
#                                  own pkts-sofar), PG_RESULT (its Result line), PG_XLVS_IN
#                                  and PG_XLVS_CONNS (the service's InPkts and Conns in
#                                  `xlvsadm -L -n --stats --exact`), PG_XLVS_RS1/RS2 (each
#                                  realserver's InPkts there), PG_RS1/PG_RS2 (the realservers'
#                                  nftables counters).

# _pg_counter NS: packets the realserver's nftables counter saw.
_pg_counter() {
  ip netns exec "$1" nft list counter inet xlvspg seen 2>/dev/null |
    awk '$1 == "packets" && !n++ { print $2 }'
}

pg_guest_run() {
  local mode=$1 count=$2 rate=$3 D mac tapns tap=pg$$ rs L C rc=0 v
  case "$mode" in
    nat) lab_nat_up "$ID" 1 || fail "lab_nat_up" ;;
    dr) lab_dr_up "$ID" 1 || fail "lab_dr_up" ;;
    *) fail "pg_guest_run: mode $mode" ;;
  esac
  D=$(lab_dir "$ID")
  local fwd=-m ifs=(--iface ext0 --iface int0) dev=ext0
  if [ "$mode" = dr ]; then fwd=-g ifs=(--iface eth0) dev=eth0; fi
  for rs in "$LAB_RS1_NS" "$LAB_RS2_NS"; do
    # Counted before routing and dropped, so no realserver answers the flood. Only pktgen's
    # sources: xlvsd itself sends one datagram to port 9 to have a neighbour resolved.
    ip netns exec "$rs" nft -f - <<NFT || fail "nft in $rs"
table inet xlvspg {
  counter seen { }
  chain pre { type filter hook prerouting priority -300; ip saddr 198.18.0.0/15 udp dport 9 counter name seen drop; }
}
NFT
  done
  write_rules "$D/rules" \
    "-A -u $LAB_VIP:9 -s rr" \
    "-a -u $LAB_VIP:9 -r $LAB_RS1_IP:9 $fwd -w 1" \
    "-a -u $LAB_VIP:9 -r $LAB_RS2_IP:9 $fwd -w 1"
  start_xlvsd "$ID" "${ifs[@]}" --rules "$D/rules"
  mac=$(ip -n "$LAB_DIR_NS" -o link show dev "$dev" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
  [ -n "$mac" ] || fail "no MAC on the director's $dev"

  # The guest joins the client's segment: in the NAT lab a bridge in the client's namespace
  # over its veth to ext0, in the DR lab the switch itself.
  if [ "$mode" = nat ]; then
    tapns=$LAB_CLI_NS
    ip -n "$tapns" link add pgbr0 type bridge stp_state 0 forward_delay 0 || fail "bridge"
    ip -n "$tapns" link set eth0 master pgbr0 || fail "eth0 into the bridge"
    ip -n "$tapns" link set pgbr0 up || fail "bridge up"
  else
    tapns=$LAB_SW_NS
  fi
  ip -n "$tapns" tuntap add dev "$tap" mode tap || fail "tap"
  if [ "$mode" = nat ]; then
    ip -n "$tapns" link set "$tap" master pgbr0 || fail "tap into the bridge"
  else
    v=$(ip -n "$tapns" -o link show type bridge | awk -F': ' '!n++ { print $2 }')
    ip -n "$tapns" link set "$tap" master "$v" || fail "tap into $v"
  fi

  mkdir -p "$D/pgtree"
  install -m 0755 "$HERE/../pktgen.sh" "$D/pgtree/pktgen.sh"
  cat >"$D/pgscenario.sh" <<SCENARIO
/sbin/ip link set eth0 up
/bin/bash /pktgen.sh -i eth0 -d $LAB_VIP:9 -m $mac -s 198.18.0.1-198.18.3.254 -p 1024-65535 -c $count -r $rate || exit 21
echo "PG-SOFAR \$(sed -n 's/.*pkts-sofar: \([0-9]*\).*/\1/p' /proc/net/pktgen/eth0@0)"
echo "PG-RESULT \$(grep '^Result' /proc/net/pktgen/eth0@0)"
SCENARIO
  local t0 t1
  t0=$(date +%s%N)
  KPEER_MODULES="virtio_pci virtio_net pktgen" KPEER_BINS=/bin/bash KPEER_TREE=$D/pgtree \
    kpeer_boot "$tapns" "$tap" "$D/pgscenario.sh" "$D/console.log" 240 || rc=$?
  t1=$(date +%s%N)
  C=$(tr -d '\r' <"$D/console.log")
  [ "$rc" = 0 ] || fail "the pktgen guest failed (rc=$rc): $(tail -n 25 <<<"$C")"
  log "guest booted, sent and powered off in $(((t1 - t0) / 1000000)) ms"
  log "$(grep '^pktgen.sh:' <<<"$C")"
  PG_SENT=$(sed -n 's/^PG-SOFAR \([0-9]*\)$/\1/p' <<<"$C")
  PG_RESULT=$(sed -n 's/^PG-RESULT //p' <<<"$C")
  [ -n "$PG_SENT" ] || fail "no pkts-sofar from pktgen: $(tail -n 25 <<<"$C")"

  # What the director counted, once nothing more arrives (bounded).
  local prev=-1 i
  for ((i = 0; i < 50; i++)); do
    L=$(xadm "$ID" -L -n --stats --exact)
    PG_XLVS_IN=$(awk -v s="UDP $LAB_VIP:9" '$1 " " $2 == s && !n++ { print $4 }' <<<"$L")
    [ "$PG_XLVS_IN" = "$prev" ] && break
    prev=$PG_XLVS_IN
    sleep 0.2
  done
  PG_XLVS_CONNS=$(awk -v s="UDP $LAB_VIP:9" '$1 " " $2 == s && !n++ { print $3 }' <<<"$L")
  PG_XLVS_RS1=$(lvs_dest_field "$L" "UDP $LAB_VIP:9" "$LAB_RS1_IP:9" InPkts)
  PG_XLVS_RS2=$(lvs_dest_field "$L" "UDP $LAB_VIP:9" "$LAB_RS2_IP:9" InPkts)
  PG_RS1=$(_pg_counter "$LAB_RS1_NS")
  PG_RS2=$(_pg_counter "$LAB_RS2_NS")
  PG_LISTING=$L
  log "xlvsadm --workers after the run:"
  xadm "$ID" --workers 2>&1 | sed 's/^/#   /'
}

# pg_guest_verdict MODE COUNT: pktgen sent COUNT, xlvs took in every one of them and counted
# them where the realservers did, a new connection per source, spread by rr.
pg_guest_verdict() {
  local mode=$1 count=$2
  log "$mode: pktgen sent $PG_SENT ($PG_RESULT); xlvs InPkts $PG_XLVS_IN in $PG_XLVS_CONNS connections (rs1 $PG_XLVS_RS1, rs2 $PG_XLVS_RS2); realservers counted rs1 $PG_RS1, rs2 $PG_RS2"
  [ "$PG_SENT" = "$count" ] || fail "pktgen sent $PG_SENT, asked for $count: $PG_RESULT"
  [ "$PG_XLVS_IN" = "$PG_SENT" ] || fail "xlvs counted $PG_XLVS_IN of the $PG_SENT frames pktgen sent:
$PG_LISTING
$(xadm "$ID" --workers 2>&1 | tail -n 30)"
  [ "$PG_XLVS_RS1" = "$PG_RS1" ] && [ "$PG_XLVS_RS2" = "$PG_RS2" ] ||
    fail "xlvs sent rs1 $PG_XLVS_RS1 and rs2 $PG_XLVS_RS2, they counted $PG_RS1 and $PG_RS2"
  [ $((PG_RS1 + PG_RS2)) = "$PG_SENT" ] || fail "the realservers got $((PG_RS1 + PG_RS2)) of $PG_SENT"
  # Random sources over 1 020 addresses and 64 512 ports: a handful of repeats in COUNT.
  [ "$PG_XLVS_CONNS" -ge $((count * 99 / 100)) ] ||
    fail "$PG_XLVS_CONNS connections for $count frames from random sources"
  local d=$((PG_RS1 - PG_RS2))
  [ "${d#-}" -le $((count / 100)) ] || fail "rr spread rs1 $PG_RS1, rs2 $PG_RS2"
}
