#!/usr/bin/env bash
# xlvs-test: alone
# The fuzz targets (scripts/fuzz.sh), 20 s each, so a regression in a decoder surfaces in CI:
# no crash, no hang, each target executes. Built by scripts/test.sh before the end-to-end
# tests (FUZZ_NO_BUILD here). Runs alone: libFuzzer takes a whole CPU. Prints PASS/FAIL fuzz.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"
command -v cargo-fuzz >/dev/null || [ -x "$HOME/.cargo/bin/cargo-fuzz" ] ||
  fail "cargo-fuzz not installed (scripts/setup.sh)"
work=$(mktemp -d /tmp/xlvs-fuzz-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
rc=0
out=$(FUZZ_WORK=$work FUZZ_NO_BUILD=${FUZZ_NO_BUILD:-1} bash "$TESTLIB_ROOT/scripts/fuzz.sh" "${FUZZ_SECS:-20}" 2>&1) || rc=$?
printf '%s\n' "$out" | sed 's/^/# /'
[ "$rc" -eq 0 ] || fail "a fuzz target crashed (above)"
n=$(printf '%s\n' "$out" | grep -c ' executions in ' || true)
want=$(find "$TESTLIB_ROOT/fuzz/fuzz_targets" -maxdepth 1 -name '*.rs' | wc -l)
[ "$n" -eq "$want" ] || fail "only $n of $want fuzz targets ran"
pass
