#!/usr/bin/env bash
# Deleting a dest live (NAT lab, rr over rs1/rs2): a rate-limited 50 MB
# download runs through the VIP; its dest (the one with ActiveConn >= 1) is
# deleted with `xlvsadm -d`; 20 new requests must all go to the other dest,
# and the running download must still complete intact (sha256).
# Needs root and target/release/{xlvsd,xlvsadm}. Prints PASS/FAIL del_dest.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init dd
web_lab_up nat 1
SUM=$(make_big "$ID" "$D/big.orig")
start_rr_xlvsd
start_slow_download
download_running "before the dest could be deleted"

xadm "$ID" -d -t "$LAB_VIP:80" -r "$VICTIM_IP:80" >/dev/null
L=$(xadm "$ID" -L -n)
[ -z "$(lvs_dest_field "$L" "TCP $LAB_VIP:80" "$VICTIM_IP:80" Forward)" ] ||
  fail "$VICTIM_IP:80 still listed after xlvsadm -d; listing:
$L"
download_running "before the new requests"

log "20 requests after deleting $VICTIM"
expect_all_on "$OTHER" 20 "20 requests after deleting $VICTIM"
finish_slow_download
pass
