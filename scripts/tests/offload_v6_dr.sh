#!/usr/bin/env bash
# The XDP fast path over IPv6, LVS-DR (on by default, the lab's IPv6 VIP, client and
# realservers): what offload_nat checks, over IPv6. An established connection's frames
# (the client's ACKs; the data goes straight back) are forwarded by the XDP program itself;
# the connection outlives a short ESTABLISHED timeout while the program forwards it; the
# download is byte-exact; its FIN still reaches a worker; the realserver's counters have
# what the program forwarded, live; short requests keep working; UDP datagrams (whose
# checksum IPv6 makes mandatory) are rewritten intact (scripts/lib/offload.sh says how).
# Needs root and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/offload.sh
. "$HERE/../lib/offload.sh"

test_init o6d
offload_run dr 6
pass
