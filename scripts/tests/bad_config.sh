#!/usr/bin/env bash
# Every kind of bad configuration input, one case each, against a running xlvsd (NAT lab):
# xlvsadm commands, -R restores, --rules and keepalived.conf files reloaded by SIGHUP, and
# files given at start. Each case must fail with a clear message (printed: the table of
# docs/RELIABILITY.md) and leave the running state as it was: `xlvsadm -S -n` and the
# service's answers are the same after every case, and xlvsd keeps running. A start with a
# bad file exits non-zero before touching an interface.
# Needs root, curl and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init bc
web_lab_up nat 1
V=$LAB_VIP R1=$LAB_RS1_IP R2=$LAB_RS2_IP
GOOD=("-A -t $V:80 -s rr" "-a -t $V:80 -r $R1:80 -m -w 1" "-a -t $V:80 -r $R2:80 -m -w 1")
write_rules "$D/rules" "${GOOD[@]}"
cat >"$D/ka.conf" <<EOF
virtual_server $V 8080 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server $R1 80 {
        weight 1
    }
}
EOF
start_xlvsd "$ID" --iface "$LAB_DIR_EXT" --iface "$LAB_DIR_INT" --rules "$D/rules" --keepalived-conf "$D/ka.conf"
BASE=$(xadm "$ID" -S -n)
n=0
same() { # WHAT
  local now
  now=$(xadm "$ID" -S -n)
  [ "$now" = "$BASE" ] || fail "$1 changed the table:
$(diff <(echo "$BASE") <(echo "$now"))"
  xlvsd_alive "after $1"
  n=$((n + 1))
}
row() { printf '# | %-16s | %-52s | %s\n' "$1" "$2" "$3"; }
row "source" "input" "what xlvs says"

# xlvsadm: each must exit non-zero with a message.
while IFS= read -r args; do
  [ -n "$args" ] || continue
  rc=0
  # shellcheck disable=SC2086
  out=$(xlvsadm "$ID" $args 2>&1) || rc=$?
  [ "$rc" != 0 ] && [ -n "$out" ] || fail "xlvsadm $args: exit $rc, '$out'"
  row "xlvsadm (exit $rc)" "$args" "$(head -1 <<<"$out")"
  same "xlvsadm $args"
done <<EOF
-A -t $V:80 -s rr
-A -t $V:81 -s bogus
-A -t 300.1.2.3:80 -s rr
-A -t $V:99999 -s rr
-A -t $V -s rr
-a -t $V:82 -r $R1:80 -m
-a -t $V:80 -r $R1:80 -m
-a -t $V:80 -r $R1:80 -m -w -1
-a -t $V:80 -r 10.10.0.13:80 -m -w 70000
-a -t $V:80 -r [2001:db8::13]:80 -m
-d -t $V:80 -r 10.10.0.99:80
-D -t $V:83
-E -t $V:83 -s rr
-A -t $V:84 -s rr -p 0
-A -t $V:84 -s rr -p 60 -M 255.0.255.0
-A -f 0 -s rr
-A -t $V:84 -s mh -b bogus-flag
-e -t $V:80 -r $R1:80 -m -x 10 -y 20
--frobnicate
-L -t $V:85
EOF

# -R: all or nothing; a bad line anywhere changes nothing.
for input in "-A -t $V:86 -s rr
-a -t $V:86 -r $R1:80 -m
-a -t $V:86 -r $R1:80 -m" "-A -t $V:87 -s rr
this is not a rule"; do
  rc=0
  out=$(printf '%s\n' "$input" | "$XLVSADM" --control "$(xlvs_sock "$ID")" -R 2>&1) || rc=$?
  [ "$rc" != 0 ] || fail "-R of a bad input succeeded"
  row "xlvsadm -R (exit $rc)" "$(tr '\n' ';' <<<"$input" | cut -c1-52)" "$(head -1 <<<"$out")"
  same "-R"
done

# SIGHUP reloads: the rules file and the keepalived.conf, each broken one way at a time.
reload_case() { # FILE CONTENT WHAT
  local before
  cp "$1" "$1.good"
  printf '%s\n' "$2" >"$1"
  before=$(wc -l <"$XLVSD_LOG")
  kill -HUP "$XLVSD_PID"
  for ((i = 0; i < 50; i++)); do
    tail -n +"$((before + 1))" "$XLVSD_LOG" | has "reload failed, nothing changed" && break
    sleep 0.1
  done
  msg=$(tail -n +"$((before + 1))" "$XLVSD_LOG" | grep -o "reload failed, nothing changed: .*" | sed -n 1p)
  [ -n "$msg" ] || fail "SIGHUP with $3: no refusal logged: $(tail -n +"$((before + 1))" "$XLVSD_LOG")"
  row "SIGHUP" "$3" "${msg#reload failed, nothing changed: }"
  same "SIGHUP with $3"
  mv "$1.good" "$1"
}
reload_case "$D/rules" "${GOOD[0]}
${GOOD[1]}
-a -t $V:80 -r $R2:80 -m -w banana" "rules: a bad weight on line 3"
reload_case "$D/rules" "${GOOD[0]}
-a -t $V:88 -r $R1:80 -m" "rules: a realserver of no service"
reload_case "$D/rules" "${GOOD[*]}" "rules: three rules on one line"
reload_case "$D/ka.conf" "virtual_server $V 8080 {
    lb_algo bogus
    lb_kind NAT
    protocol TCP
}" "keepalived.conf: lb_algo bogus"
reload_case "$D/ka.conf" "virtual_server $V 8080 {
    lb_algo rr
    real_server $R1 {
    }" "keepalived.conf: unbalanced braces"
reload_case "$D/ka.conf" "virtual_server $V 70000 {
    lb_algo rr
}" "keepalived.conf: port 70000"
mv "$D/rules" "$D/rules.away"
before=$(wc -l <"$XLVSD_LOG")
kill -HUP "$XLVSD_PID"
sleep 1
msg=$(tail -n +"$((before + 1))" "$XLVSD_LOG" | grep -o "reload failed, nothing changed: .*" | sed -n 1p)
[ -n "$msg" ] || fail "SIGHUP with the rules file gone: no refusal logged"
row "SIGHUP" "rules: the file is gone" "${msg#reload failed, nothing changed: }"
same "SIGHUP with the rules file gone"
mv "$D/rules.away" "$D/rules"
[ "$(lab_exec "$ID" cli curl -sS --max-time 3 "http://$V/")" != "" ] || fail "the service does not answer after the bad inputs"

# At start: a bad file stops xlvsd before it touches an interface.
for bad in "-A -t $V:80 -s nosuch" "-a -t $V:89 -r $R1:80 -m"; do
  printf '%s\n' "$bad" >"$D/bad.rules"
  rc=0
  out=$(ip netns exec "$LAB_DIR_NS" timeout 20 "$XLVSD" --control "$D/other.sock" --iface "$LAB_DIR_EXT" \
    --rules "$D/bad.rules" --pin-dir none 2>&1) || rc=$?
  [ "$rc" != 0 ] || fail "xlvsd started with --rules holding '$bad'"
  row "xlvsd (exit $rc)" "--rules: $bad" "$(grep -v '^\[' <<<"$out" | sed -n 1p)"
done
rc=0
out=$(ip netns exec "$LAB_DIR_NS" timeout 20 "$XLVSD" --control "$D/other.sock" --iface "$LAB_DIR_EXT" \
  --keepalived-conf "$D/nosuch.conf" --pin-dir none 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "xlvsd started with a missing keepalived.conf"
row "xlvsd (exit $rc)" "--keepalived-conf: a missing file" "$(grep -v '^\[' <<<"$out" | sed -n 1p)"
same "the refused starts"
log "$n bad inputs refused, the running table unchanged after each"
pass
