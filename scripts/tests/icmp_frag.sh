#!/usr/bin/env bash
# ICMP errors and IP fragments through LVS-NAT (1 queue, UDP echo on rs1):
# (a) a 3868-byte datagram to VIP:9000 (MTU 1500: fragmented) is echoed back
#     intact, fragmented too; both ends' kernels count reassemblies;
# (b) a datagram to VIP:9001, where rs1 has no listener: rs1's "port
#     unreachable" (about CIP → RIP:9001) must reach the client rewritten to
#     VIP:9001, so the client's connected socket gets "Connection refused";
# (c) the client's own "port unreachable" about a reply from VIP:9000 reaches
#     rs1 (rewritten to RIP), with a valid checksum.
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL icmp_frag.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init if
lab_nat_up "$ID" 1 || fail "lab_nat_up"
D=$(lab_dir "$ID")
lab_udp_echo "$ID" rs1 9000 || fail "lab_udp_echo rs1"
write_rules "$D/rules" \
  "-A -u $LAB_VIP:9000 -s rr" \
  "-a -u $LAB_VIP:9000 -r $LAB_RS1_IP:9000 -m -w 1" \
  "-A -u $LAB_VIP:9001 -s rr" \
  "-a -u $LAB_VIP:9001 -r $LAB_RS1_IP:9001 -m -w 1"
start_xlvsd "$ID" --iface ext0 --iface int0 --rules "$D/rules"

# counter ROLE NAME: a kernel SNMP counter in ROLE's netns.
counter() {
  lab_exec "$ID" "$1" nstat -asz "$2" | awk -v n="$2" '$1 == n { print $2 }'
}

log "(a) a fragmented datagram each way"
head -c 2900 /dev/urandom | base64 -w0 >"$D/payload"
cli_reasm0=$(counter cli IpReasmOKs) rs_reasm0=$(counter rs1 IpReasmOKs)
rc=0
lab_exec "$ID" cli timeout 5 socat -t 2 -T 3 - "UDP4:$LAB_VIP:9000" <"$D/payload" >"$D/echo" 2>"$D/socat.err" || rc=$?
{ printf 'rs1:'; cat "$D/payload"; } >"$D/want"
cmp -s "$D/echo" "$D/want" || fail "echo of $(stat -c %s "$D/payload") bytes: got $(stat -c %s "$D/echo") bytes back (socat rc=$rc: $(head -c 200 "$D/socat.err")), want $(stat -c %s "$D/want")"
cli_reasm=$(counter cli IpReasmOKs) rs_reasm=$(counter rs1 IpReasmOKs)
[ "$rs_reasm" -gt "$rs_reasm0" ] && [ "$cli_reasm" -gt "$cli_reasm0" ] ||
  fail "no reassembly counted (rs1 IpReasmOKs $rs_reasm0 → $rs_reasm, client $cli_reasm0 → $cli_reasm): the datagram was not fragmented"

log "(b) port unreachable from rs1 to the client"
rc=0
echo probe | lab_exec "$ID" cli timeout 10 socat -t 3 -T 5 - "UDP4:$LAB_VIP:9001" >/dev/null 2>"$D/refused.err" || rc=$?
grep -q "Connection refused" "$D/refused.err" ||
  fail "the client's socket to $LAB_VIP:9001 got no 'Connection refused' (socat rc=$rc: $(head -c 300 "$D/refused.err")): rs1's ICMP error was not delivered as from the VIP"

log "(c) port unreachable from the client to rs1"
unreach0=$(counter rs1 IcmpInDestUnreachs)
csum0=$(counter rs1 IcmpInCsumErrors)
# Send only, and close at once: rs1's echo then hits a closed port.
echo gone | lab_exec "$ID" cli timeout 5 socat -u - "UDP4:$LAB_VIP:9000" 2>/dev/null || true
for ((i = 0; i < 30; i++)); do
  [ "$(counter rs1 IcmpInDestUnreachs)" -gt "$unreach0" ] && break
  sleep 0.1
done
[ "$(counter rs1 IcmpInDestUnreachs)" -gt "$unreach0" ] || fail "rs1 received no port unreachable for its reply to a closed client port"
[ "$(counter rs1 IcmpInCsumErrors)" = "$csum0" ] || fail "rs1 counted ICMP checksum errors"
xlvsd_alive "after the ICMP exchanges"
pass
