#!/usr/bin/env bash
# Kernel pktgen for real, LVS-NAT: Debian's kernel under qemu (it has pktgen.ko, this
# machine's kernel has none) runs scripts/pktgen.sh, the script users run on real NICs, as the
# client of an LVS-NAT lab: 20 000 64-byte UDP frames at 5 000 pps from random sources
# (198.18.0.1-198.18.3.254, random ports) to the VIP's port 9, rr over two realservers that
# count what reaches them in nftables. pktgen's own pkts-sofar, xlvs's InPkts (service and
# per realserver) and the realservers' counters must agree exactly; each random source is a
# connection of its own. Prints the figures.
# Needs root, qemu-system-x86, linux-image-amd64, busybox-static, nftables.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/kpeer.sh
. "$HERE/../lib/kpeer.sh"
# shellcheck source=../lib/pktgen_guest.sh
. "$HERE/../lib/pktgen_guest.sh"

test_init pnat
pg_guest_run nat 20000 5000
pg_guest_verdict nat 20000
pass
