#!/usr/bin/env bash
# Administration against a running xlvsd (NAT lab, 1 queue):
#  (a) SIGHUP re-reads --rules and applies only the difference: the
#      unchanged service VIP:80 keeps its rr position, and a download through
#      it keeps running, arrives intact and is still listed by -L -c; a
#      deleted service goes, a new one answers; -S then gives the file's table;
#  (b) a file that fails to parse, or to apply, changes nothing and the log
#      names the line;
#  (c) -S output restored with -R (after -C) gives the identical table and
#      listing; a bad -R input changes nothing;
#  (d) errors and exit codes as ipvsadm's: unknown service, duplicate
#      realserver, bad address, bad weight, unknown option; --daemon lists
#      nothing, --stop-daemon without a daemon says so.
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL reload.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init rl
web_lab_up nat 1
SUM=$(make_big "$ID" "$D/big.orig")
V=$LAB_VIP R1=$LAB_RS1_IP R2=$LAB_RS2_IP
RULES=(
  "-A -t $V:80 -s rr"
  "-a -t $V:80 -r $R1:80 -m -w 1"
  "-a -t $V:80 -r $R2:80 -m -w 1"
  "-A -t $V:8080 -s wlc"
  "-a -t $V:8080 -r $R1:80 -m -w 1"
)
write_rules "$D/rules" "${RULES[@]}"
start_xlvsd "$ID" --iface "$LAB_DIR_EXT" --iface "$LAB_DIR_INT" --rules "$D/rules"

log "(a) SIGHUP with a download running through $V:80"
start_slow_download
# The unchanged service must keep its scheduler: rr carries on where it was,
# while a rebuilt rr would start again at the head of its list (rs2, added
# last). Make rs2 the last pick before the reload, so the next must be rs1.
for i in 1 2; do
  last=$(lab_exec "$ID" cli curl -sS --max-time 5 "http://$V/") || fail "request before the reload"
  [ "$last" = rs2 ] && break
done
[ "$last" = rs2 ] || fail "two rr requests, none answered by rs2"
write_rules "$D/rules" "${RULES[@]:0:3}" \
  "-A -t $V:81 -s rr" \
  "-a -t $V:81 -r $R2:80 -m -w 1"
sighup_and_wait "reload of $D/rules: [0-9]* change(s) applied"
download_running "before the reload could be checked"
next=$(lab_exec "$ID" cli curl -sS --max-time 5 "http://$V/") || fail "request after the reload"
[ "$next" = rs1 ] || fail "after the reload rr picked '$next', want rs1: the unchanged service was rebuilt"
grep -q "reload of $D/rules: 3 change(s) applied" "$XLVSD_LOG" \
  || fail "want 3 changes (-D :8080, -A :81, -a :81): $(grep 'change(s) applied' "$XLVSD_LOG")"
xadm "$ID" -S -n >"$D/saved"
diff -u "$D/rules" "$D/saved" >&2 || fail "-S after the reload differs from the rules file"
lab_exec "$ID" cli curl -sS --max-time 5 "http://$V:81/" >"$D/81" 2>&1 || fail "new service $V:81: $(cat "$D/81")"
[ "$(cat "$D/81")" = rs2 ] || fail "new service $V:81 answered '$(cat "$D/81")', want rs2"
if lab_exec "$ID" cli curl -sS --max-time 2 "http://$V:8080/" >/dev/null 2>&1; then
  fail "deleted service $V:8080 still answers"
fi
C=$(xadm "$ID" -L -n -c)
printf '%s\n' "$C" | has -E "^TCP [0-9]{2}:[0-9]{2}  ESTABLISHED $LAB_CLIENT_IP:[0-9]+ +$V:80 +$VICTIM_IP:80\$" \
  || fail "the download's connection is not listed after the reload:
$C"
download_running "after the reload (the check above proved nothing)"
finish_slow_download

log "(b) files that fail change nothing"
printf '%s\n' "-A -t $V:80 -s rr" "-a -t $V:80 -r 10.10.0.300:80 -m" >"$D/rules"
sighup_and_wait "reload failed, nothing changed: $D/rules: line 2: illegal real server address\[:port\] specified"
printf '%s\n' "-A -t $V:80 -s rr" "-A -t $V:82 -s rr" "-a -t $V:83 -r $R1:80 -m" >"$D/rules"
sighup_and_wait "reload failed, nothing changed: $D/rules: line 3: Service not defined"
xadm "$ID" -S -n >"$D/saved2"
diff -u "$D/saved" "$D/saved2" >&2 || fail "a failed reload changed the table"

log "(c) -S, -C, -R"
xadm "$ID" -a -t "$V:81" -r "$R1:80" -m -w 3 -x 100 -y 10 >/dev/null
xadm "$ID" -A -t "$V:90" -s sh -b sh-port -p 120 -M 255.255.255.0 >/dev/null
xadm "$ID" -A -u "$V:53" -s wlc >/dev/null
xadm "$ID" -a -u "$V:53" -r "$R2:53" -m -w 2 >/dev/null
# -L -n without the connection counts (TIME_WAIT entries of the requests
# above expire while the test runs).
layout() { xadm "$ID" -L -n | awk '$1 == "->" { $5 = $6 = "" } { print }'; }
xadm "$ID" -S -n >"$D/s1"
layout >"$D/l1"
xadm "$ID" -C >/dev/null
[ "$(xadm "$ID" -S -n)" = "" ] || fail "-C left rules"
xlvsadm "$ID" -R <"$D/s1" || fail "-R of the saved rules failed"
xadm "$ID" -S -n >"$D/s2"
layout >"$D/l2"
diff -u "$D/s1" "$D/s2" >&2 || fail "-S after -C and -R differs"
diff -u "$D/l1" "$D/l2" >&2 || fail "-L -n after -C and -R differs"
printf '%s\n' "-A -t $V:99 -s rr" "-a -t $V:80 -r $R1:80 -m" |
  xlvsadm_rc "$ID" 255 "line 2: Destination already exists; nothing restored" -R
[ "$(xadm "$ID" -S -n)" = "$(cat "$D/s1")" ] || fail "a failed -R changed the table"
lab_exec "$ID" cli curl -sS --max-time 5 "http://$V/" >/dev/null || fail "VIP:80 after -R"

log "(d) errors and exit codes"
xlvsadm_rc "$ID" 255 "Service not defined" -a -t "$V:7" -r "$R1:80" -m
xlvsadm_rc "$ID" 255 "No such service" -D -t "$V:7"
xlvsadm_rc "$ID" 1 "No such service" -L -n -t "$V:7"
xlvsadm_rc "$ID" 255 "Destination already exists" -a -t "$V:80" -r "$R1:80" -m
xlvsadm_rc "$ID" 255 "Service already exists" -A -t "$V:80"
xlvsadm_rc "$ID" 2 "illegal virtual server address[:port] specified" -A -t 192.0.2.300:80
xlvsadm_rc "$ID" 2 "illegal real server address[:port] specified" -a -t "$V:80" -r bogus -m
xlvsadm_rc "$ID" 2 "illegal weight specified" -e -t "$V:80" -r "$R1:80" -m -w 70000
xlvsadm_rc "$ID" 2 "illegal weight specified" -e -t "$V:80" -r "$R1:80" -m -w x
xlvsadm_rc "$ID" 255 "Scheduler or persistence engine not found" -E -t "$V:80" -s bogus
xlvsadm_rc "$ID" 255 "xlvsadm: invalid option -- 'Q'
Try \`xlvsadm -h' or 'xlvsadm --help' for more information." -Q
xlvsadm_rc "$ID" 255 "No daemon is running" --stop-daemon master
xlvsadm_rc "$ID" 2 "illegal start-daemon parameter specified" --start-daemon primary
[ "$(xadm "$ID" -L --daemon)" = "" ] || fail "-L --daemon listed something"
[ "$(xadm "$ID" -S -n)" = "$(cat "$D/s1")" ] || fail "a refused command changed the table"
pass
