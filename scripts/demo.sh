#!/usr/bin/env bash
# xlvs demo: installs what it needs, builds, creates a network-namespace lab (a client, a
# director, two nginx realservers), runs xlvsd in LVS-NAT and then LVS-DR, sends requests through
# the VIP and shows how they were spread. Tears everything down at the end, also on Ctrl-C.
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
cleanup() {
  if [ -n "$XPID" ]; then kill "$XPID" 2>/dev/null || true; wait "$XPID" 2>/dev/null || true; fi
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

  say "xlvsadm -L -n"
  "$XLVSADM" --control "$sock" -L -n
  say "xlvsadm --workers"
  "$XLVSADM" --control "$sock" --workers

  kill "$XPID"; wait "$XPID" 2>/dev/null || true; XPID=
  lab_down "$ID"
}

run_mode NAT -m
run_mode DR -g
say "Done. Everything was torn down."
