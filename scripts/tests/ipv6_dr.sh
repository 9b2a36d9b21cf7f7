#!/usr/bin/env bash
# LVS-DR over IPv6 (1 queue, rr over rs1/rs2 holding the VIP on lo,
# `-A -t [fd00:20::100]:80`): the DR HTTP suite through the IPv6 VIP:
#  (a) 1000 requests, each a new TCP connection: all answered, 450..550 each;
#  (b) a 50 MB download through the VIP arrives intact (sha256);
#  (c) `xlvsadm -L -n` lists both dests as "[fd00:20::1x]:80 Route".
#  (d) xlvsd's table holds those connections (>= 900 of them, in TIME_WAIT).
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL ipv6_dr.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init v6d
export LAB_IPV6=1
web_lab_up dr 1
use_ipv6
SUM=$(make_big "$ID" "$D/big.orig")
start_rr_xlvsd
http_suite Route
expect_tracked 900 "after 1000 IPv6 connections"
pass
