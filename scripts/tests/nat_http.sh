#!/usr/bin/env bash
# NAT forwarding of HTTP through xlvsd (1 queue, rr over rs1/rs2):
#  (a) 1000 requests, each a new TCP connection: all answered, 450..550 each;
#  (b) a 50 MB download through the VIP arrives intact (sha256);
#  (c) `xlvsadm -L -n` lists both dests as Masq.
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL nat_http.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init nh
web_lab_up nat 1
SUM=$(make_big "$ID" "$D/big.orig")
start_rr_xlvsd
http_suite Masq
pass
