#!/usr/bin/env bash
# The Debian package and how xlvsd runs under systemd:
#  - scripts/package.sh builds target/deb/xlvs_*.deb; lintian reports no error (its other
#    tags are printed);
#  - the package installs with dpkg into a mount namespace whose /usr, /etc and /var are
#    overlays of the host's (nothing reaches the host): xlvsadm --version and xlvsd --help
#    run from /usr/sbin, `man` renders xlvsd(8) and xlvsadm(8) without a warning, the
#    conffiles are in /etc, `systemd-analyze verify` finds nothing wrong with the unit and
#    `systemd-analyze security` gives its exposure score (printed); it removes and purges;
#  - xlvsd starts with exactly the unit's capability bounding set (setpriv), not as full
#    root, and refuses to start without CAP_BPF, naming it;
#  - Type=notify: with $NOTIFY_SOCKET xlvsd sends READY=1 once it forwards, RELOADING=1 and
#    READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM; with $JOURNAL_STREAM its log
#    lines carry syslog priorities and no timestamps.
# Needs root, dpkg, lintian, man-db, systemd (systemd-analyze), util-linux (unshare, setpriv).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
for t in dpkg-deb lintian man systemd-analyze unshare setpriv; do
  command -v "$t" >/dev/null || fail "$t not installed (scripts/setup.sh)"
done

test_init pk
lab_nat_up "$ID" 1 || fail "lab_nat_up"
D=$(lab_dir "$ID")

DEB=$(cd "$TESTLIB_ROOT" && bash scripts/package.sh | tail -1)
DEB=$TESTLIB_ROOT/$DEB
[ -f "$DEB" ] || fail "no package built: $DEB"
log "built $(basename "$DEB") ($(du -k "$DEB" | cut -f1) kB)"
L=$(timeout 300 lintian --tag-display-limit 0 "$DEB" 2>&1 | grep -v 'root privileges' || true)
if grep -q '^E:' <<<"$L"; then fail "lintian errors:
$L"; fi
log "lintian: $([ -n "$L" ] && echo "$L" | tr '\n' ';' || echo "no tags")"

# Installed in a mount namespace of its own, over overlays of /usr, /etc and /var.
mkdir -p "$D/ov"
cat >"$D/inside.sh" <<'INSIDE'
set -euo pipefail
for d in usr etc var; do
  mkdir -p "$OV/$d.up" "$OV/$d.work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$OV/$d.up,workdir=$OV/$d.work" "/$d"
done
# No daemon is started by a package here (as in a chroot).
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
dpkg -i "$DEB" >/dev/null
echo "version: $(/usr/sbin/xlvsadm --version)"
grep -q -- '--iface' <<<"$(/usr/sbin/xlvsd --help)" || { echo "xlvsd --help lacks --iface"; exit 1; }
for m in xlvsd xlvsadm; do
  w=$(MANWIDTH=80 man --warnings "$m" 2>&1 >/dev/null || true)
  [ -z "$w" ] || { echo "man $m warns: $w"; exit 1; }
  grep -q "^NAME" <<<"$(MANWIDTH=80 man "$m" 2>/dev/null)" || { echo "man $m: no NAME section"; exit 1; }
done
for f in /etc/default/xlvs /etc/xlvs/rules /etc/xlvs/keepalived-nat-pair.conf; do
  [ -f "$f" ] || { echo "missing $f"; exit 1; }
done
v=$(systemd-analyze verify /lib/systemd/system/xlvsd.service 2>&1 || true)
[ -z "$v" ] || { echo "systemd-analyze verify: $v"; exit 1; }
echo "security: $(systemd-analyze security --offline=true /lib/systemd/system/xlvsd.service 2>&1 | grep -o 'Overall exposure level.*')"
dpkg -r xlvs >/dev/null
[ ! -e /usr/sbin/xlvsd ] || { echo "xlvsd left after dpkg -r"; exit 1; }
[ -f /etc/xlvs/rules ] || { echo "conffile gone after dpkg -r"; exit 1; }
dpkg -P xlvs >/dev/null
[ ! -e /etc/xlvs/rules ] || { echo "conffile left after purge"; exit 1; }
echo installed-and-removed
INSIDE
out=$(OV="$D/ov" DEB="$DEB" unshare --mount --propagation private bash "$D/inside.sh" 2>&1) ||
  fail "install in a throwaway root: $out"
grep -q installed-and-removed <<<"$out" || fail "install in a throwaway root: $out"
log "installed, run, removed in a throwaway root: $(grep -E '^(version|security):' <<<"$out" | tr '\n' ';')"
[ -e /usr/sbin/xlvsd ] && fail "the test installed into the host"

# The unit's capabilities, and no more.
CAPS=$(sed -n 's/^CapabilityBoundingSet=//p' "$TESTLIB_ROOT/packaging/xlvsd.service" |
  tr 'A-Z' 'a-z' | sed 's/cap_//g; s/ /,+/g')
log "bounding set from the unit: +$CAPS"
cat >"$D/notify.py" <<'PY'
import socket, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
with open(sys.argv[2], "a") as log:
    while True:
        try:
            m = s.recv(4096).decode()
        except socket.timeout:
            break
        log.write(m + "\n")
        log.flush()
        if "STOPPING=1" in m:
            break
PY
python3 "$D/notify.py" "$D/notify.sock" "$D/notify.log" &
NPY=$!
bg_track $NPY
for i in $(seq 1 50); do [ -S "$D/notify.sock" ] && break; sleep 0.1; done
write_rules "$D/rules" "-A -t $LAB_VIP:80 -s rr" "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 -m -w 1"
lab_nginx "$ID" rs1 80 || fail "nginx rs1"
XLVSD_LOG=$D/xlvsd.log
ip netns exec "$LAB_DIR_NS" env NOTIFY_SOCKET="$D/notify.sock" JOURNAL_STREAM=8:1 \
  setpriv --bounding-set=-all,+"$CAPS" --inh-caps=-all \
  "$XLVSD" --iface ext0 --iface int0 --rules "$D/rules" --control "$D/xlvsd.sock" \
  --pin-dir none </dev/null >"$XLVSD_LOG" 2>&1 &
XLVSD_PID=$!
for i in $(seq 1 100); do grep -q 'READY=1' "$D/notify.log" 2>/dev/null && break; sleep 0.1; done
grep -q 'READY=1' "$D/notify.log" || fail "no READY=1 from xlvsd with the unit's capabilities: $(tail -5 "$XLVSD_LOG")"
bnd=$(awk '/^CapBnd/ { print $2 }' "/proc/$XLVSD_PID/status")
[ "$bnd" != "000001ffffffffff" ] || fail "xlvsd runs with every capability"
r=$(lab_exec "$ID" cli curl -sS --max-time 5 "http://$LAB_VIP/") || fail "no answer through the VIP"
log "READY=1 with bounding set $bnd; a request through the VIP: $r"
kill -HUP "$XLVSD_PID"
for i in $(seq 1 50); do [ "$(grep -c 'READY=1' "$D/notify.log")" -ge 2 ] && break; sleep 0.1; done
grep -q 'RELOADING=1' "$D/notify.log" || fail "no RELOADING=1 on SIGHUP"
[ "$(grep -c 'READY=1' "$D/notify.log")" -ge 2 ] || fail "no READY=1 after the reload"
kill -TERM "$XLVSD_PID"
wait "$XLVSD_PID" || true
XLVSD_PID=
wait "$NPY" 2>/dev/null || true
grep -q 'STOPPING=1' "$D/notify.log" || fail "no STOPPING=1 on SIGTERM: $(cat "$D/notify.log")"
grep -qE '^<6>' "$XLVSD_LOG" || fail "no <6> (info) priority prefixes under JOURNAL_STREAM: $(head -3 "$XLVSD_LOG")"
grep -qE '^\[20[0-9-]+T' "$XLVSD_LOG" && fail "timestamps under JOURNAL_STREAM: $(head -3 "$XLVSD_LOG")"
log "notify: $(tr '\n' ' ' <"$D/notify.log"); journal lines like: $(grep -m1 '^<6>' "$XLVSD_LOG")"

# Without CAP_BPF it refuses, naming what is missing.
nobpf=$(echo "$CAPS" | sed 's/,+bpf//; s/^bpf,+//')
out=$(ip netns exec "$LAB_DIR_NS" setpriv --bounding-set=-all,+"$nobpf" --inh-caps=-all \
  "$XLVSD" --iface ext0 --control "$D/x2.sock" --pin-dir none 2>&1) && fail "xlvsd started without CAP_BPF"
grep -q "CAP_BPF" <<<"$out" || fail "without CAP_BPF: $out"
log "without CAP_BPF: $(tail -1 <<<"$out")"
pass
