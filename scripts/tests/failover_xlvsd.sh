#!/usr/bin/env bash
# xlvsd dies while keepalived lives (LVS-DR pair, docs/keepalived/dr-pair.conf, real
# keepalived -P): d1's xlvsd is SIGKILLed under load; its host, links and keepalived stay up
# and d1 keeps the VIP until keepalived's track script (`xlvsadm --check --watch 800`)
# fails. Meanwhile the XDP program, pinned (--pin-dir), outlives xlvsd and drops the VIP's
# frames instead of handing them to d1's stack, which holds the VIP and would reset every
# connection it does not know. Then:
#  - d1 goes FAULT and d2 MASTER; the kill to d2's first forwarded frame within 1.5 s (goal
#    1 s), printed with the kill to d1's FAULT and to d2's MASTER notify;
#  - every download completes byte-exact, wrk sees no socket error, and the client's
#    capture holds no RST from the VIP;
#  - d1's interface still carries XDP (the pinned link) after its xlvsd's death.
# Needs root, keepalived, tshark, curl, wrk and target/release/{xlvsd,xlvsadm}.
# xlvs-test: alone
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/failover.sh
. "$HERE/../lib/failover.sh"
command -v keepalived >/dev/null || fail "keepalived not installed (scripts/setup.sh)"

test_init fx
fo_pair dr
fo_keepalived "$TESTLIB_ROOT/docs/keepalived/dr-pair.conf"
# Both stacks must stay silent: d1 keeps the VIP after its xlvsd dies.
export FO_STACKS="dir d2"
D2MAC=$(ip -n "$LAB_D2_NS" link show eth0 | awk '/link\/ether/ { print $2 }')
fo_captures p-d2 "tcp and ether src $D2MAC"
fo_downloads 800000
fo_wrk 8
sleep 2

log "d1's xlvsd dies (SIGKILL); its keepalived, host and links live on"
T0=$(date +%s%3N)
kill -KILL "$XLVSD_PID"
wait "$XLVSD_PID" 2>/dev/null || true
XLVSD_PID=
[ "${FO_NOPIN:-0}" = 1 ] || ip -n "$LAB_DIR_NS" link show eth0 | has " xdp" || fail "XDP left d1's eth0 with its xlvsd"
fo_wait - MASTER 5
NOTIFY_MS=$(($(date +%s%3N) - FO_SINCE2 - T0))
fault=$(python3 - "$D/ka1.log" "$T0" <<'PY'
import re, sys, datetime
# keepalived -l -D logs "Sun Dec  6 12:33:21 2026: (VI_DR) Entering FAULT STATE" (seconds);
# its first line after the kill says when, to the second.
for line in open(sys.argv[1]):
    if "Entering FAULT STATE" in line:
        t = datetime.datetime.strptime(line.split(": ")[0], "%a %b %d %H:%M:%S %Y")
        if t.timestamp() * 1000 >= int(sys.argv[2]) - 1000:
            print("yes"); break
PY
)
[ "$fault" = yes ] || fail "d1's keepalived did not enter FAULT: $(grep -Ev 'gratuitous' "$D/ka1.log" | tail -n 8)"
log "d1's keepalived: FAULT (track script); d2: MASTER notify $NOTIFY_MS ms after the kill"
fo_wrk_verdict
fo_verdict
pass
