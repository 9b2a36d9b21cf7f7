#!/usr/bin/env bash
# Persistence (NAT lab, rr over rs1/rs2, -p 60): two client addresses
# (192.0.2.2 and .3 in the client netns). Without persistence rr would
# alternate; with it, each client's 20 new connections all go to one
# realserver, and the two clients (two templates, scheduled rr) land on
# different ones. `-E ... -p 60 -M 255.255.255.0` groups both clients (one
# /24, one template): both then go to one realserver.
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL persistence.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init ps
web_lab_up nat 1
CIP2=192.0.2.3
ip -n "$(lab_ns "$ID" cli)" addr add "$CIP2/24" dev eth0 || fail "adding $CIP2 to the client"
start_rr_xlvsd
SVC="TCP $LAB_VIP:80"
xadm "$ID" -E -t "$LAB_VIP:80" -s rr -p 60 >/dev/null
L=$(xadm "$ID" -L -n)
grep -Eq "^TCP +$LAB_VIP:80 rr persistent 60\$" <<<"$L" || fail "-L -n does not show 'rr persistent 60'; listing:
$L"

# burst_one SRC: 20 requests from SRC; all must reach one realserver,
# printed (rs1|rs2).
burst_one() {
  http_burst "$ID" "http://$LAB_VIP/" 20 4 "$D/burst" "$1" || fail "20 requests from $1: timed out"
  check_burst "$D/burst" 20 "20 requests from $1"
  if [ "$BURST_RS1" -eq 20 ]; then echo rs1
  elif [ "$BURST_RS2" -eq 20 ]; then echo rs2
  else fail "persistence: client $1 was spread: rs1=$BURST_RS1 rs2=$BURST_RS2"
  fi
}

A=$(burst_one "$LAB_CLIENT_IP")
B=$(burst_one "$CIP2")
log "per-client: $LAB_CLIENT_IP → $A, $CIP2 → $B"
[ "$A" != "$B" ] || fail "both clients went to $A: templates are scheduled rr, the second client should get the other realserver"
# The first client comes back to its realserver.
A2=$(burst_one "$LAB_CLIENT_IP")
[ "$A2" = "$A" ] || fail "client $LAB_CLIENT_IP moved from $A to $A2 within the persistence timeout"

xadm "$ID" -E -t "$LAB_VIP:80" -s rr -p 60 -M 255.255.255.0 >/dev/null
L=$(xadm "$ID" -L -n)
grep -Eq "^TCP +$LAB_VIP:80 rr persistent 60 mask 255.255.255.0\$" <<<"$L" || fail "-L -n does not show the mask; listing:
$L"
S=$(xadm "$ID" -S -n)
grep -q -- "^-A -t $LAB_VIP:80 -s rr -p 60 -M 255.255.255.0\$" <<<"$S" || fail "-S -n: $S"
A=$(burst_one "$LAB_CLIENT_IP")
B=$(burst_one "$CIP2")
log "one /24: $LAB_CLIENT_IP → $A, $CIP2 → $B"
[ "$A" = "$B" ] || fail "-M 255.255.255.0: clients of one /24 went to $A and $B"
pass
