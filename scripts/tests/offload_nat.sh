#!/usr/bin/env bash
# The XDP fast path (`xlvsd --offload`), LVS-NAT: an established connection's frames are
# forwarded by the XDP program itself; it outlives a short ESTABLISHED timeout while the
# program forwards it, its download is byte-exact, its FIN still reaches a worker, and short
# requests keep working (scripts/lib/offload.sh says how). Prints the figures.
# Needs root and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
# shellcheck source=../lib/offload.sh
. "$HERE/../lib/offload.sh"

test_init onat
offload_run nat
pass
