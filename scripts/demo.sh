#!/usr/bin/env bash
# xlvs demo: installs what it needs, builds, creates a network-namespace lab (a client, a
# director, two nginx realservers), runs xlvsd in LVS-NAT and then LVS-DR, sends requests through
# the VIP and shows how they were spread (in LVS-NAT also the XDP fast path forwarding an
# established connection). Then the HA pair: two directors with connection sync
# and keepalived (docs/keepalived/nat-pair.conf), downloads through the VIP, the master killed
# hard, the backup carrying on every download. Tears everything down at the end, also on
# Ctrl-C. DEMO_HA=0 skips the pair.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (it creates network namespaces and attaches XDP programs)" >&2
  exit 1
fi

say "Installing what xlvs needs (scripts/setup.sh)"
bash scripts/setup.sh

say "Building (cargo build --release)"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet 2>&1 | grep -v '^warning: xlvs-control@' || true
XLVSD=$ROOT/target/release/xlvsd
XLVSADM=$ROOT/target/release/xlvsadm
[ -x "$XLVSD" ] && [ -x "$XLVSADM" ] || { echo "build failed" >&2; exit 1; }

# shellcheck source=lib/lab.sh
source scripts/lib/lab.sh

ID=demo$$
ID=${ID:0:12}
XPID=
PAIR_PIDS=()
cleanup() {
  if [ -n "$XPID" ]; then kill "$XPID" 2>/dev/null || true; wait "$XPID" 2>/dev/null || true; fi
  for p in "${PAIR_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  lab_down "$ID"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

N=${DEMO_REQUESTS:-40}

run_mode() {
  local mode=$1 method=$2
  say "LVS-$mode lab: client -> director -> two nginx realservers"
  if [ "$mode" = NAT ]; then lab_nat_up "$ID" 1; else lab_dr_up "$ID" 1; fi
  lab_nginx "$ID" rs1 80
  lab_nginx "$ID" rs2 80
  local rules sock log
  rules=$(lab_dir "$ID")/rules
  sock=$(lab_dir "$ID")/xlvsd.sock
  log=$(lab_dir "$ID")/xlvsd.log
  cat > "$rules" <<RULES
-A -t $LAB_VIP:80 -s rr
-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 $method -w 1
-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 $method -w 1
RULES
  echo "rules ($rules):"; sed 's/^/    /' "$rules"
  local ifaces=(--iface "$LAB_DIR_EXT")
  [ "$LAB_DIR_INT" != "$LAB_DIR_EXT" ] && ifaces+=(--iface "$LAB_DIR_INT")
  if [ "$mode" = NAT ]; then
    # Like a real NIC, a veth takes XDP redirects once its peer runs NAPI (GRO on): then
    # xlvsd's XDP fast path is on by default (LVS-DR below runs without it).
    ip netns exec "$LAB_CLI_NS" ethtool -K eth0 gro on >/dev/null
    ip netns exec "$LAB_SW_NS" ethtool -K p-dir gro on >/dev/null
  fi
  echo "starting: xlvsd ${ifaces[*]} --rules $rules --control $sock"
  lab_exec "$ID" dir "$XLVSD" "${ifaces[@]}" --rules "$rules" --control "$sock" 2>"$log" &
  XPID=$!
  local i
  for i in $(seq 1 100); do grep -q 'xlvsd: ready' "$log" && break; sleep 0.1; done
  grep -q 'xlvsd: ready' "$log" || { echo "xlvsd did not start:"; cat "$log"; exit 1; }
  sed 's/^/    /' "$log"

  say "$N requests from the client to http://$LAB_VIP/ (a new TCP connection each)"
  local out
  out=$(for i in $(seq 1 "$N"); do
          lab_exec "$ID" cli curl -sS --max-time 5 "http://$LAB_VIP/" || echo FAILED
        done)
  echo "$out" | sort | uniq -c | sed 's/^/    /'
  if [ "$mode" = NAT ]; then
    say "200 requests on one keep-alive connection: once established, the XDP program forwards its frames itself"
    local urls=()
    for i in $(seq 1 200); do urls+=("http://$LAB_VIP/"); done
    echo "    $(lab_exec "$ID" cli curl -sS --max-time 20 "${urls[@]}" | grep -c .) answers on one connection"
    echo "    xlvsadm --xdp-stats (offloaded: frames the XDP program forwarded itself):"
    "$XLVSADM" --control "$sock" --xdp-stats | sed 's/^/      /'
  fi

  say "xlvsadm -L -n"
  "$XLVSADM" --control "$sock" -L -n
  say "xlvsadm --workers"
  "$XLVSADM" --control "$sock" --workers

  kill "$XPID"; wait "$XPID" 2>/dev/null || true; XPID=
  lab_down "$ID"
}

# await_master SOCK: waits (at most 10 s) until the xlvsd at SOCK has heard MASTER from
# keepalived; prints the VRRP state it last heard.
await_master() {
  local i st=-
  for i in $(seq 1 200); do
    st=$("$XLVSADM" --control "$1" -L --daemon --json |
      python3 -c 'import json,sys; v=json.load(sys.stdin)["vrrp"]; print(v["state"] if v else "-")')
    [ "$st" = MASTER ] && break
    sleep 0.05
  done
  echo "$st"
}

# The HA pair: d1 and d2 both run xlvsd (sync both ways) and keepalived -P with the shipped
# nat-pair.conf; d1 is MASTER. 20 downloads run; d1 dies hard; d2 carries them on.
ha_pair() {
  say "HA pair: two LVS-NAT directors, connection sync, keepalived VRRP (docs/keepalived/nat-pair.conf)"
  LAB_PAIR_FLOATING=0 lab_nat_pair_up "$ID"
  lab_nginx "$ID" rs1 80
  lab_nginx "$ID" rs2 80
  local d rules bpf role sock peer n i st t0 ka
  d=$(lab_dir "$ID")
  rules=$d/rules
  bpf=$(lab_bpffs "$ID")
  printf '%s\n' "-A -t $LAB_VIP:80 -s rr" "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -m -w 1" \
    "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 -m -w 1" >"$rules"
  for role in dir d2; do
    if [ "$role" = dir ]; then peer=$LAB_D2_INT_IP n=1; else peer=$LAB_DIR_INT_IP n=2; fi
    sock=$d/$role.sock
    echo "d$n: xlvsd --iface ext0 --iface int0 --rules $rules --start-daemon master --start-daemon backup --mcast-interface int0 --syncid 7 --sync-peer $peer"
    lab_exec "$ID" "$role" "$XLVSD" --iface ext0 --iface int0 --rules "$rules" --control "$sock" \
      --start-daemon master --start-daemon backup --mcast-interface int0 --syncid 7 \
      --sync-peer "$peer" --pin-dir "$bpf/$role" 2>"$d/$role.log" &
    PAIR_PIDS+=($!)
    disown $!
    for i in $(seq 1 100); do grep -q 'xlvsd: ready' "$d/$role.log" && break; sleep 0.1; done
    sed -e "s|/usr/sbin/xlvsadm|$XLVSADM --control $sock|" \
      -e "s/router_id xlvs-d1/router_id xlvs-d$n/" \
      -e "$([ "$n" = 2 ] && echo 's/priority 150/priority 100/' || echo 's/^//')" \
      docs/keepalived/nat-pair.conf >"$d/ka$n.conf"
  done
  echo "keepalived -P on both (d1 priority 150, d2 100)"
  for role in dir d2; do
    n=1; [ "$role" = d2 ] && n=2
    lab_exec "$ID" "$role" keepalived -n -l -G -P -f "$d/ka$n.conf" -p "$d/ka$n.pid" \
      -r "$d/ka$n-vrrp.pid" >"$d/ka$n.log" 2>&1 &
    PAIR_PIDS+=($!)
    disown $!
  done
  st=$(await_master "$d/dir.sock")
  echo "d1 is $st (it holds the VIP $LAB_VIP and the realservers' gateway $LAB_GW_IP)"
  head -c 1000000 /dev/urandom >"$(lab_wwwdir "$ID" rs1)/file"
  cp "$(lab_wwwdir "$ID" rs1)/file" "$(lab_wwwdir "$ID" rs2)/file"
  say "20 downloads of 1 MB at 200 kB/s through the VIP"
  mkdir -p "$d/dl"
  local urls=()
  for i in $(seq 1 20); do urls+=(-o "$d/dl/$i" "http://$LAB_VIP/file"); done
  lab_exec "$ID" cli curl -sS --no-progress-meter --parallel --parallel-immediate --parallel-max 20 \
    --limit-rate 200k --max-time 40 "${urls[@]}" &
  local dl=$!
  sleep 1.5
  echo "d2 holds, by sync: $("$XLVSADM" --control "$d/d2.sock" -L -n -c | grep -c ESTABLISHED) established connections"
  say "d1 dies: its links drop everything, its keepalived and xlvsd are SIGKILLed"
  t0=$(date +%s%3N)
  lab_pair_kill_dir "$ID"
  kill -KILL "$(cat "$d/ka1.pid")" "$(cat "$d/ka1-vrrp.pid")" "${PAIR_PIDS[0]}" 2>/dev/null || true
  st=$(await_master "$d/d2.sock")
  echo "d2 is $st $(($(date +%s%3N) - t0)) ms after the kill (keepalived's notify)"
  wait "$dl" && echo "curl: every download finished" || echo "curl failed"
  local sum good
  sum=$(sha256sum "$(lab_wwwdir "$ID" rs1)/file" | awk '{ print $1 }')
  good=$(sha256sum "$d"/dl/* | awk -v s="$sum" '$1 == s' | wc -l)
  echo "$good of 20 downloads byte-exact (sha256 ${sum:0:16}...)"
  say "xlvsadm -L -n on d2, the new master"
  "$XLVSADM" --control "$d/d2.sock" -L -n
  for p in "${PAIR_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  PAIR_PIDS=()
  lab_down "$ID"
}

run_mode NAT -m
run_mode DR -g
[ "${DEMO_HA:-1}" = 0 ] || ha_pair
say "Done. Everything was torn down."
