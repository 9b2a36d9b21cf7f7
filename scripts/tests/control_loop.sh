#!/usr/bin/env bash
# The control thread (NAT lab, 1 queue):
#  (a) xlvsadm needs no daemon for -h, --version and syntax errors (ipvsadm's
#      messages and exit codes); without a daemon anything else says so;
#  (b) a SIGHUP reload changes only what the --rules file owns: a service
#      added with xlvsadm stays, a file-owned service edited with xlvsadm
#      gets the file's version back (and the edit was logged as such);
#  (c) an admin client that connects and sends nothing blocks no one, and
#      is dropped after its deadline;
#  (d) a realserver that does not answer ARP blocks no one: -a returns after
#      the settle time, the loop answers other clients meanwhile, and once
#      the address exists the kernel's neighbour event resolves it (traffic
#      through it succeeds within a bounded wait).
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL control_loop.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init cl

log "(a) xlvsadm without a daemon"
nosock=/tmp/xlvs-no-such-daemon-$$.sock
XLVS_CONTROL=$nosock "$XLVSADM" -h >/tmp/xlvs-cl-help.$$ || fail "-h without a daemon failed"
grep -q '^Usage:' /tmp/xlvs-cl-help.$$ || fail "-h printed no usage: $(cat /tmp/xlvs-cl-help.$$)"
rm -f /tmp/xlvs-cl-help.$$
XLVS_CONTROL=$nosock "$XLVSADM" --version | has '^xlvsadm ' || fail "--version without a daemon"
rc=0 err=$(XLVS_CONTROL=$nosock "$XLVSADM" -A -t 192.0.2.300:80 2>&1) || rc=$?
[ "$rc" = 2 ] && [ "$err" = "illegal virtual server address[:port] specified" ] \
  || fail "syntax error without a daemon: rc=$rc '$err'"
rc=0 err=$(XLVS_CONTROL=$nosock "$XLVSADM" -Q 2>&1) || rc=$?
[ "$rc" = 255 ] || fail "unknown option without a daemon: rc=$rc '$err'"
rc=0 err=$(XLVS_CONTROL=$nosock "$XLVSADM" -L -n 2>&1) || rc=$?
[ "$rc" = 2 ] && [[ "$err" == "xlvsadm: cannot talk to xlvsd at $nosock"* ]] \
  || fail "-L without a daemon: rc=$rc '$err'"

web_lab_up nat 1
V=$LAB_VIP R1=$LAB_RS1_IP R2=$LAB_RS2_IP
write_rules "$D/rules" \
  "-A -t $V:80 -s rr" \
  "-a -t $V:80 -r $R1:80 -m -w 1" \
  "-a -t $V:80 -r $R2:80 -m -w 1"
start_xlvsd "$ID" --iface "$LAB_DIR_EXT" --iface "$LAB_DIR_INT" --rules "$D/rules"

log "(b) a reload changes only what its file owns"
xadm "$ID" -A -t "$V:81" -s wlc >/dev/null
xadm "$ID" -a -t "$V:81" -r "$R2:80" -m >/dev/null
xadm "$ID" -e -t "$V:80" -r "$R1:80" -m -w 5 >/dev/null
grep -q -- "changed what $D/rules configures: its next reload restores the file's version" "$XLVSD_LOG" \
  || fail "the edit of a file-owned service was not logged as such"
# One change: the file's weight back.
sighup_and_wait "reload of $D/rules: 1 change(s) applied"
S=$(xadm "$ID" -S -n)
printf '%s\n' "$S" | has -x -- "-a -t $V:80 -r $R1:80 -m -w 1" || fail "file's weight not restored: $S"
printf '%s\n' "$S" | has -x -- "-A -t $V:81 -s wlc" || fail "the admin's service went on reload: $S"
[ "$(lab_exec "$ID" cli curl -sS --max-time 5 "http://$V:81/")" = rs2 ] || fail "admin service :81 after the reload"

log "(c) a silent admin client blocks no one"
sock=$(xlvs_sock "$ID")
python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(4)' "$sock" &
bg_track $!
sleep 0.3
t0=$(date +%s%N)
timeout 1 "$XLVSADM" --control "$sock" -L -n >/dev/null || fail "-L -n while a silent client is connected"
log "answered in $((($(date +%s%N) - t0) / 1000000)) ms beside a silent client"
for ((i = 0; i < 50; i++)); do
  grep -q "control client too slow; dropped" "$XLVSD_LOG" && break
  sleep 0.1
done
grep -q "control client too slow; dropped" "$XLVSD_LOG" || fail "the silent client was not dropped after its deadline"

log "(d) a realserver that does not answer ARP blocks no one"
R3=10.10.0.13
xadm "$ID" -A -t "$V:82" -s rr >/dev/null
xadm "$ID" -a -t "$V:82" -r "$R3:80" -m &
ADD=$!
bg_track $ADD
sleep 0.2
t0=$(date +%s%N)
timeout 1 "$XLVSADM" --control "$sock" -L -n -t "$V:82" | has "$R3:80" \
  || fail "-L did not show $R3 (or did not answer) while -a waited for its MAC"
log "answered in $((($(date +%s%N) - t0) / 1000000)) ms while -a waited for $R3's MAC"
wait "$ADD" || fail "-a of an unresolved realserver failed"
lab_exec "$ID" rs2 ip addr add "$R3/24" dev eth0
ok=
for ((i = 0; i < 40; i++)); do
  if [ "$(lab_exec "$ID" cli curl -sS --max-time 1 "http://$V:82/" 2>/dev/null)" = rs2 ]; then
    ok=1
    break
  fi
  sleep 0.1
done
[ -n "$ok" ] || fail "$V:82 via $R3 not answering 5 s after $R3 came up"
pass
