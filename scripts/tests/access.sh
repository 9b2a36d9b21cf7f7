#!/usr/bin/env bash
# Who may talk to xlvsd, and what a hostile local client can do (NAT lab):
#  - the control socket is 0600: a user other than root cannot connect (xlvsadm -L and -A
#    both refused by the kernel: Permission denied);
#  - with --control-group nogroup it is 0660 and group nogroup's: a member (uid 65534 with
#    nogroup, by setpriv: no account is created) may list (-L -n, -L -n -c, --stats,
#    --daemon) and is refused every change (-A, -a, -C, -Z, --restore) with a clear error
#    and exit 255 (as ipvsadm's refused operations), the table untouched; a non-member is refused by the kernel;
#  - 200 clients that connect and send nothing (the daemon serves 64 at once: the oldest
#    idle ones are closed to make room) do not block root's xlvsadm (answered at once) nor
#    forwarding; of 300 more, those beyond the limit are closed; a request of
#    17 MB without a newline gets an error; garbage lines get errors; the daemon lives on;
#  - /metrics answers garbage with 404, reads at most 16 kB of a 1 MB header, and serves a
#    scrape at once while a client that sends nothing holds a connection.
# Needs root, setpriv, python3, curl and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init ac
web_lab_up nat 1
SOCK=$(xlvs_sock "$ID")
# The lab directory is root's 0700 elsewhere; the other users must reach the socket.
chmod 755 "$D"
as_member() { setpriv --reuid=65534 --regid=65534 --groups=65534 --inh-caps=-all -- "$@"; }
as_stranger() { setpriv --reuid=65533 --regid=65533 --clear-groups --inh-caps=-all -- "$@"; }
listing() { "$XLVSADM" --control "$SOCK" -L -n; }

start_rr_xlvsd
mode=$(stat -c '%a %U' "$SOCK")
[ "$mode" = "600 root" ] || fail "control socket mode: $mode, want 600 root"
rc=0
out=$(as_stranger "$XLVSADM" --control "$SOCK" -L -n 2>&1) || rc=$?
[ "$rc" != 0 ] && grep -q "Permission denied" <<<"$out" || fail "a user connected to a 0600 socket: rc $rc: $out"
log "0600: another user's xlvsadm -L: $out"
stop_xlvsd_checked

start_rr_xlvsd --control-group nogroup --metrics 127.0.0.1:9917
mode=$(stat -c '%a %G' "$SOCK")
[ "$mode" = "660 nogroup" ] || fail "control socket mode with --control-group: $mode"
before=$(listing)
for args in "-L -n" "-L -n -c" "-L -n --stats" "-L --daemon" "--workers"; do
  # shellcheck disable=SC2086
  as_member "$XLVSADM" --control "$SOCK" $args >/dev/null 2>&1 || fail "a member of the control group could not run xlvsadm $args"
done
n=0
for args in "-A -t 192.0.2.100:81 -s rr" "-a -t $LAB_VIP:80 -r 10.10.0.13:80 -m" "-C" "-Z" "-D -t $LAB_VIP:80"; do
  rc=0
  # shellcheck disable=SC2086
  out=$(as_member "$XLVSADM" --control "$SOCK" $args 2>&1) || rc=$?
  [ "$rc" = 255 ] && grep -q "permission denied: only root changes the director" <<<"$out" ||
    fail "a member ran xlvsadm $args: rc $rc: $out"
  n=$((n + 1))
done
rc=0
out=$(printf -- '-A -t 192.0.2.100:82 -s rr\n' | as_member "$XLVSADM" --control "$SOCK" -R 2>&1) || rc=$?
[ "$rc" = 255 ] || fail "a member restored rules: rc $rc: $out"
[ "$(listing)" = "$before" ] || fail "the table changed under refused commands: $(listing)"
rc=0
out=$(as_stranger "$XLVSADM" --control "$SOCK" -L -n 2>&1) || rc=$?
[ "$rc" != 0 ] && grep -q "Permission denied" <<<"$out" || fail "a non-member connected: rc $rc: $out"
log "0660 nogroup: a member lists and is refused $((n + 1)) kinds of change (exit 255 as ipvsadm's failed operations, '$(as_member "$XLVSADM" --control "$SOCK" -C 2>&1 || true)'); a non-member cannot connect"

# Hostile clients (root's, so they pass the permissions).
python3 - "$SOCK" >"$D/hostile.out" 2>&1 <<'PY' &
import socket, sys, time
path = sys.argv[1]
idle = []
for _ in range(200):
    s = socket.socket(socket.AF_UNIX); s.connect(path); idle.append(s)
print("200 idle", flush=True)
time.sleep(1.5)
# More idle ones: the daemon closes the oldest to make room.
extra, closed = [], 0
for _ in range(300):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path); extra.append(s)
    except OSError:
        closed += 1
time.sleep(0.3)
for s in extra:
    s.settimeout(0.2)
    try:
        if s.recv(1) == b"":
            closed += 1
    except (socket.timeout, OSError):
        pass
print("extra closed", closed, flush=True)
# 17 MB without a newline.
s = socket.socket(socket.AF_UNIX); s.connect(path); s.settimeout(10)
try:
    s.sendall(b"x" * (17 << 20))
except OSError as e:
    print("big send stopped:", e, flush=True)
try:
    print("big answer:", s.recv(200)[:120], flush=True)
except OSError as e:
    print("big answer error:", e, flush=True)
for junk in [b"\x00\xff\xfe garbage\n", b"{\"command\": 42}\n", b"\n", b"[" * 100000 + b"\n"]:
    s = socket.socket(socket.AF_UNIX); s.connect(path); s.settimeout(5)
    s.sendall(junk)
    print("junk answer:", s.recv(200)[:100], flush=True)
PY
HOSTILE=$!
bg_track $HOSTILE
for ((i = 0; i < 50; i++)); do grep -q "200 idle" "$D/hostile.out" 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s%3N)
listing >/dev/null || fail "root's xlvsadm -L failed with 200 idle clients connected"
t1=$(date +%s%3N)
lab_exec "$ID" cli curl -sS --max-time 3 -o /dev/null "http://$LAB_VIP/" || fail "forwarding stopped with 200 idle clients"
log "200 idle clients: root's xlvsadm -L answered in $((t1 - t0)) ms; the VIP answers"
wait "$HOSTILE" || fail "the hostile client script failed: $(cat "$D/hostile.out")"
sed 's/^/#   /' "$D/hostile.out"
grep -q "extra closed [1-9]" "$D/hostile.out" || fail "no client beyond the limit was closed"
grep -q "request larger than" "$D/hostile.out" || fail "the 17 MB request got no error"
[ "$(grep -c '^junk answer: b.*error' "$D/hostile.out" || true)" = 4 ] || [ "$(grep -c '^junk answer: b.\{4,\}' "$D/hostile.out")" = 4 ] ||
  fail "garbage lines got no error each"
xlvsd_alive "after the hostile clients"
listing >/dev/null || fail "xlvsadm -L after the hostile clients"
grep -q "clients at once; closing the oldest idle ones" "$XLVSD_LOG" || fail "the evictions were not logged"

# /metrics: garbage, an endless header, a silent client.
M=127.0.0.1:9917
code=$(lab_exec "$ID" dir curl -s -o /dev/null -w '%{http_code}' "http://$M/nothing")
[ "$code" = 404 ] || fail "/nothing: $code"
r=$(lab_exec "$ID" dir python3 -c '
import socket
s = socket.create_connection(("127.0.0.1", 9917)); s.settimeout(5)
try:
    s.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (1 << 20))
except OSError as e:
    pass
try:
    print(s.recv(100)[:40])
except OSError as e:
    print("closed:", e)
')
log "/metrics with a 1 MB header: $r"
lab_exec "$ID" dir python3 -c '
import socket, time
s = socket.create_connection(("127.0.0.1", 9917)); time.sleep(3)' &
SILENT=$!
sleep 0.2
t0=$(date +%s%3N)
lab_exec "$ID" dir curl -sS --max-time 5 "http://$M/metrics" | has '^xlvs_' || fail "no scrape while a silent client holds a connection"
t1=$(date +%s%3N)
wait "$SILENT" || true
[ $((t1 - t0)) -lt 1000 ] || fail "a scrape waited $((t1 - t0)) ms behind a silent client"
log "/metrics: a scrape while a silent client holds a connection took $((t1 - t0)) ms"
lab_exec "$ID" cli curl -sS --max-time 3 -o /dev/null "http://$LAB_VIP/" || fail "forwarding after the hostile clients"
pass
