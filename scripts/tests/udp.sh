#!/usr/bin/env bash
# UDP virtual service over NAT (1 queue, rr over rs1/rs2, echo servers on
# port 9000): 10 datagrams, each from a new client source port, each
# answered "rs1:hello" or "rs2:hello", both realservers seen.
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL udp.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init ud
lab_nat_up "$ID" 1 || fail "lab_nat_up"
D=$(lab_dir "$ID")
lab_udp_echo "$ID" rs1 9000 || fail "lab_udp_echo rs1"
lab_udp_echo "$ID" rs2 9000 || fail "lab_udp_echo rs2"

write_rules "$D/rules" \
  "-A -u $LAB_VIP:9000 -s rr" \
  "-a -u $LAB_VIP:9000 -r $LAB_RS1_IP:9000 -m -w 1" \
  "-a -u $LAB_VIP:9000 -r $LAB_RS2_IP:9000 -m -w 1"
start_xlvsd "$ID" --iface ext0 --iface int0 --rules "$D/rules"

n1=0 n2=0 answers=
for ((i = 1; i <= 10; i++)); do
  # a new socat process = a new ephemeral source port
  rc=0
  got=$(echo hello | lab_exec "$ID" cli timeout 5 socat -t 1.5 -T 3 - "UDP4:$LAB_VIP:9000" 2>"$D/socat.err") || rc=$?
  answers+="${got:-<none>} "
  case "$got" in
    rs1:hello) n1=$((n1 + 1)) ;;
    rs2:hello) n2=$((n2 + 1)) ;;
    *) fail "datagram $i: reply $(printf %q "$got") (socat rc=$rc: $(head -c 200 "$D/socat.err")), want rs1:hello or rs2:hello; replies so far: $answers" ;;
  esac
done
xlvsd_alive "after the UDP exchange"
log "replies: $answers"
[ "$n1" -gt 0 ] && [ "$n2" -gt 0 ] || fail "rr over UDP: rs1=$n1 rs2=$n2 of 10, want both seen; replies: $answers"

L=$(xadm "$ID" -L -n)
for rs in "$LAB_RS1_IP" "$LAB_RS2_IP"; do
  f=$(lvs_dest_field "$L" "UDP $LAB_VIP:9000" "$rs:9000" Forward)
  [ "$f" = Masq ] || fail "xlvsadm -L -n: UDP dest $rs:9000 Forward='$f', want Masq; listing:
$L"
done

pass
