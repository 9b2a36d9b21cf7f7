#!/usr/bin/env bash
# wlc.sh with every (interface, queue) in a thread of its own (`xlvsd --threads per-socket`):
# the workers then defer their changes to realservers' connection counts in their own shards
# (core/stats.rs). wlc on the client side's worker still sends all 50 new connections to the
# idle rs2, and the listing stays exact (rs1 ActiveConn 5; rs2 ActiveConn 0, InActConn 50).
# Needs root and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WLC_XLVSD_ARGS="--threads per-socket" exec bash "$HERE/wlc.sh"
