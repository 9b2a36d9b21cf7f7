#!/usr/bin/env bash
# LVS-NAT over IPv6 (1 queue, rr over rs1/rs2, `-A -t [2001:db8::100]:80`):
# the NAT HTTP suite through the IPv6 VIP with curl -6 addresses:
#  (a) 1000 requests, each a new TCP connection: all answered, 450..550 each;
#  (b) a 50 MB download through the VIP arrives intact (sha256);
#  (c) `xlvsadm -L -n` lists both dests as "[fd00:10::1x]:80 Masq".
# The director's kernel does not forward (forwarding off) and nothing listens
# on the VIP: an answer can only come through xlvs.
#  (d) xlvsd's table holds those connections (>= 900 of them, in TIME_WAIT).
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL ipv6_nat.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init v6n
export LAB_IPV6=1
web_lab_up nat 1
use_ipv6
SUM=$(make_big "$ID" "$D/big.orig")
start_rr_xlvsd
http_suite Masq
expect_tracked 900 "after 1000 IPv6 connections"
pass
