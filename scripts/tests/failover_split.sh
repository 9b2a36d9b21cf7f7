#!/usr/bin/env bash
# Split brain (LVS-NAT pair, docs/keepalived/nat-pair.conf, real keepalived -P): the path
# between the directors breaks twice for 5 s under load, each time both become MASTER,
# each forwards what reaches it, and the path heals:
#  1. VRRP only (sync still flows both ways): d2 takes the VIP and the gateway and carries
#     the traffic; 10 downloads opened meanwhile are synced to d1 as usual;
#  2. VRRP and sync (and resync): 10 downloads opened meanwhile are known to d2 alone.
# On each heal d2 returns to BACKUP, and leaving MASTER it asks d1 to pull its table (the
# resync "pull me" ask); then the clients' and realservers' neighbour caches are flushed, as
# an ARP refresh would, so everything moves back to d1, which must hold every connection.
# The partition drops VRRP (protocol 112), sync (UDP 8848) and resync (TCP 8849) at both
# directors' ingress, before their stacks, after XDP (which steers none of them).
# Checks: every download (100 from before, 20 opened during the partitions) completes
# byte-exact, wrk (8 keep-alive connections) sees no socket error or non-2xx, and the
# client's capture holds no RST from the VIP. Prints the conflicts each side counted.
# Needs root, keepalived, tshark, curl, wrk and target/release/{xlvsd,xlvsadm}.
# xlvs-test: alone
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/failover.sh
. "$HERE/../lib/failover.sh"
command -v keepalived >/dev/null || fail "keepalived not installed (scripts/setup.sh)"

test_init fs
fo_pair nat
fo_keepalived "$TESTLIB_ROOT/docs/keepalived/nat-pair.conf"
fo_captures p-d2int "tcp and src host $LAB_CLIENT_IP"
fo_downloads 2200000
fo_wrk 20
for r in rs1 rs2; do head -c 800000 /dev/urandom >"$(lab_wwwdir "$ID" "$r")/split"; done
SPLIT_SUMS="$(sha256sum "$(lab_wwwdir "$ID" rs1)/split" "$(lab_wwwdir "$ID" rs2)/split" | awk '{ print $1 }')"
SPLIT=()
mkdir -p "$D/split"

# partition WHAT: drop VRRP (and with WHAT=all sync and resync) at both directors.
partition() {
  local role dev extra=
  [ "$1" = all ] && extra='udp dport 8848 drop
    tcp dport 8849 drop
    tcp sport 8849 drop'
  for role in dir d2; do
    for dev in ext0 int0; do
      ip netns exec "$(lab_ns "$ID" "$role")" nft -f - <<NFT || fail "nft partition"
table netdev part_$dev {
  chain in {
    type filter hook ingress device $dev priority -400; policy accept;
    ip protocol vrrp drop
    $extra
  }
}
NFT
    done
  done
}

heal() {
  local role dev
  for role in dir d2; do
    for dev in ext0 int0; do
      ip netns exec "$(lab_ns "$ID" "$role")" nft delete table netdev "part_$dev"
    done
  done
}

# split_downloads TAG: 10 downloads through the VIP, opened now.
split_downloads() {
  local i
  for i in $(seq 1 10); do
    lab_exec "$ID" cli timeout 60 curl -sS --limit-rate 100k --max-time 50 \
      -o "$D/split/$1$i" "http://$LAB_VIP/split" </dev/null 2>"$D/split/$1$i.err" &
    SPLIT+=($!)
    bg_track $!
  done
}

for what in vrrp all; do
  sleep 1
  t0=$(date +%s%3N)
  partition "$what"
  fo_wait MASTER MASTER 5
  log "partition ($what): both MASTER after $(($(date +%s%3N) - t0)) ms"
  sleep 0.5
  split_downloads "$what"
  sleep $((5 - ($(date +%s%3N) - t0) / 1000))
  heal
  t1=$(date +%s%3N)
  fo_wait MASTER BACKUP 10
  log "healed: d1 MASTER, d2 BACKUP after $(($(date +%s%3N) - t1)) ms"
  sleep 1
  # Everything back to d1 (what an ARP refresh does).
  for r in cli rs1 rs2; do ip -n "$(lab_ns "$ID" "$r")" neigh flush all; done
done

for i in "${!SPLIT[@]}"; do
  rc=0
  wait "${SPLIT[$i]}" || rc=$?
  [ "$rc" -eq 0 ] || fail "a download opened during a partition: curl exit $rc: $(cat "$D"/split/*.err | head -c 300)"
done
bad=0
for f in "$D"/split/vrrp* "$D"/split/all*; do
  case $f in *.err) continue ;; esac
  grep -qx "$(sha256sum "$f" | awk '{ print $1 }')" <<<"$SPLIT_SUMS" || bad=$((bad + 1))
done
[ "$bad" = 0 ] || fail "$bad downloads opened during a partition arrived corrupted"
log "20 downloads opened during the partitions: complete, byte-exact"
for role in dir d2; do
  if [ "$role" = dir ]; then j=$(xadm "$ID" -L --daemon --json); else j=$(xadm_at d2 -L --daemon --json); fi
  log "$role: $(printf '%s' "$j" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("entries from peers:", j["injected"], "; resync pulls:", j["resync"]["pulls"], "; asked by peers:", (j["resync"]["server"] or {}).get("asks"))')"
done
fo_wrk_verdict
fo_verdict_downloads
log "100 downloads from before the partitions intact, 0 RSTs"
pass
