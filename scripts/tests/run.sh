#!/usr/bin/env bash
# xlvs end-to-end test runner.
#
#   bash scripts/tests/run.sh [--no-build] [TEST...]
#
# Builds target/release/{xlvsd,xlvsadm,xlvs-bench} (cargo build --release --locked -p
# xlvs-control -p xlvs-bench; skipped with --no-build or XLVS_SKIP_BUILD=1), then runs
# every scripts/tests/*.sh except itself in sorted order, or only the named
# TESTs (with or without .sh). At most XLVS_TEST_JOBS (default 2) tests run
# at once (each test uses its own lab ID), each limited to XLVS_TEST_TIMEOUT
# (default 300) seconds; a test marked "# xlvs-test: alone" runs after the
# others, by itself (it measures a deadline). Output of each test goes to
# $XLVS_TEST_LOGDIR/NAME.log (default /tmp/xlvs-test-logs). Prints
# "PASS name (Ns)" or "FAIL name (Ns)" plus the log tail per test, and as
# its last line "N passed, M failed"; exits 1 if any test failed.
# Needs root.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SELF=$(basename "${BASH_SOURCE[0]}")
export XLVS_TEST_LOGDIR=${XLVS_TEST_LOGDIR:-/tmp/xlvs-test-logs}
JOBS=${XLVS_TEST_JOBS:-2}
TMO=${XLVS_TEST_TIMEOUT:-300}
BUILD=1
[ "${XLVS_SKIP_BUILD:-0}" = 1 ] && BUILD=0

usage() { echo "usage: $0 [--no-build] [TEST...]" >&2; exit 2; }

names=()
for a in "$@"; do
  case "$a" in
    --no-build) BUILD=0 ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) names+=("${a%.sh}") ;;
  esac
done
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: bad XLVS_TEST_JOBS '$JOBS'" >&2; exit 2; }
[[ $TMO =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: bad XLVS_TEST_TIMEOUT '$TMO'" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run.sh: must run as root" >&2; exit 2; }

# The test list.
tests=()
if [ ${#names[@]} -eq 0 ]; then
  while IFS= read -r f; do
    b=$(basename "$f" .sh)
    [ "$b.sh" = "$SELF" ] && continue
    tests+=("$b")
  done < <(find "$HERE" -maxdepth 1 -type f -name '*.sh' | LC_ALL=C sort)
else
  for n in "${names[@]}"; do
    n=$(basename "$n")
    if [ "$n.sh" = "$SELF" ] || [ ! -f "$HERE/$n.sh" ]; then
      echo "run.sh: no such test: $n" >&2
      exit 2
    fi
    tests+=("$n")
  done
fi
[ ${#tests[@]} -gt 0 ] || { echo "run.sh: no tests" >&2; exit 2; }

mkdir -p "$XLVS_TEST_LOGDIR"

if [ "$BUILD" = 1 ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
  echo "building release binaries (cargo build --release --locked -p xlvs-control -p xlvs-bench --bins) ..."
  if ! (cd "$ROOT" && cargo build --release --locked -p xlvs-control -p xlvs-bench --bins) >"$XLVS_TEST_LOGDIR/build.log" 2>&1; then
    echo "build failed; tail of $XLVS_TEST_LOGDIR/build.log:"
    tail -n 30 "$XLVS_TEST_LOGDIR/build.log" | sed 's/^/    /'
    echo "0 passed, ${#tests[@]} failed"
    exit 1
  fi
fi

passed=0 failed=0
declare -A pid_name=() pid_start=()

# A test killed by the timeout may not have torn its lab down: the test
# prints "# lab ID (name)" first, so clean up after it here.
reap_lab() { # LOG
  local id
  id=$(sed -n 's/^# lab \([A-Za-z0-9]\{1,12\}\) (.*)$/\1/p' "$1" | sed -n 1p)
  if [ -n "$id" ]; then
    (
      # shellcheck source=../lib/lab.sh
      . "$ROOT/scripts/lib/lab.sh"
      lab_down "$id"
    ) >/dev/null 2>&1 || true
  fi
}

start_test() { # NAME
  local name=$1 log="$XLVS_TEST_LOGDIR/$1.log"
  rm -f "$XLVS_TEST_LOGDIR/$name.xlvsd.log"
  (
    cd "$ROOT"
    rc=0
    # timeout puts the test in its own process group; its pid (= pgid) is
    # recorded so that an interrupted runner can stop the whole test.
    TEST_NAME=$name timeout -k 15 "$TMO" bash "$HERE/$name.sh" </dev/null >"$log" 2>&1 &
    echo $! >"$XLVS_TEST_LOGDIR/.$name.pgid"
    wait $! || rc=$?
    rm -f "$XLVS_TEST_LOGDIR/.$name.pgid"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      echo "run.sh: $name timed out after ${TMO}s (rc=$rc)" >>"$log"
      reap_lab "$log"
    fi
    exit "$rc"
  ) &
  pid_name[$!]=$name
  pid_start[$!]=$SECONDS
}

# Wait for one running test to finish and report it.
finish_one() {
  local pid rc=0 name secs log
  wait -n -p pid || rc=$?
  name=${pid_name[$pid]}
  secs=$((SECONDS - pid_start[$pid]))
  unset "pid_name[$pid]" "pid_start[$pid]"
  log="$XLVS_TEST_LOGDIR/$name.log"
  if [ "$rc" -eq 0 ] && grep -qx "PASS $name" "$log"; then
    echo "PASS $name (${secs}s)"
    passed=$((passed + 1))
  else
    echo "FAIL $name (${secs}s) rc=$rc, log $log:"
    tail -n 40 "$log" | sed 's/^/    /'
    failed=$((failed + 1))
  fi
}

# Interrupted: stop the running tests (their EXIT traps tear the labs down).
on_signal() {
  local f g
  trap - INT TERM
  echo "run.sh: interrupted, stopping running tests" >&2
  for f in "$XLVS_TEST_LOGDIR"/.*.pgid; do
    [ -f "$f" ] || continue
    g=$(cat "$f" 2>/dev/null || true)
    [[ $g =~ ^[0-9]+$ ]] && kill -TERM -- "-$g" 2>/dev/null || true
  done
  wait || true
  exit 130
}
trap on_signal INT TERM

# Tests with a deadline to measure (a line "# xlvs-test: alone") run last,
# one at a time, with no other test competing for the CPU.
alone=()
for t in "${tests[@]}"; do
  if grep -qx '# xlvs-test: alone' "$HERE/$t.sh"; then
    alone+=("$t")
    continue
  fi
  while [ ${#pid_name[@]} -ge "$JOBS" ]; do finish_one; done
  start_test "$t"
done
while [ ${#pid_name[@]} -gt 0 ]; do finish_one; done
for t in "${alone[@]}"; do
  start_test "$t"
  finish_one
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
