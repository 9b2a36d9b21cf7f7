# shellcheck shell=bash
# xlvs end-to-end test helpers, on top of scripts/lib/lab.sh.
#
# Source it from a test in scripts/tests/ (it sources lab.sh itself):
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib/testlib.sh"
#   test_init nh                  # lab ID "nh$$", traps, root check
#   lab_nat_up "$ID" || fail "lab_nat_up"
#   start_xlvsd "$ID" --iface ext0 --iface int0 --rules "$RULES"
#   xlvsadm "$ID" -L -n
#   ...
#   pass                          # stops xlvsd (must exit 0, XDP detached)
#
# Conventions: every wait is bounded, every client command runs under
# `timeout`. fail prints "FAIL <test>: MSG" and the xlvsd log tail, then
# exits 1; the EXIT trap stops xlvsd (SIGTERM, bounded wait, then SIGKILL),
# kills recorded background jobs and tears the lab down.
#
# Environment:
#   XLVSD / XLVSADM      binaries (default target/release/{xlvsd,xlvsadm})
#   XLVS_TEST_LOGDIR     where a failed test's full xlvsd log is copied
#                        (default /tmp/xlvs-test-logs)
#   XLVS_READY_TIMEOUT   seconds to wait for "xlvsd: ready" (default 30)

TESTLIB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=lab.sh
. "$TESTLIB_ROOT/scripts/lib/lab.sh"

XLVSD=${XLVSD:-$TESTLIB_ROOT/target/release/xlvsd}
XLVSADM=${XLVSADM:-$TESTLIB_ROOT/target/release/xlvsadm}
XLVS_TEST_LOGDIR=${XLVS_TEST_LOGDIR:-/tmp/xlvs-test-logs}

TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
ID=
XLVSD_PID=
XLVSD_LOG=
XLVSD_IFACES=
XLVSD_STOP_MSG=
TEST_BG_PIDS=()
_TEST_FAILED=0
_TEST_DONE=0
_TEST_FAILMARK=${TMPDIR:-/tmp}/xlvs-test-failed.$$

# ---------------------------------------------------------------- basics

log() { printf '# %s\n' "$*"; }

# Last lines of the xlvsd log, indented (nothing if there is none).
xlvsd_log_tail() { # [LINES]
  if [ -n "$XLVSD_LOG" ] && [ -f "$XLVSD_LOG" ]; then
    echo "--- xlvsd log tail ($XLVSD_LOG) ---"
    tail -n "${1:-25}" "$XLVSD_LOG" | sed 's/^/  | /'
    echo "--- end of xlvsd log ---"
  fi
}

# fail MSG: report and exit 1. Writes to stderr and leaves a marker file, so
# it also works from inside $(...) (the subshell exits, set -e stops the
# test, and the EXIT trap does not report a second failure).
fail() {
  _TEST_FAILED=1
  : >"$_TEST_FAILMARK" 2>/dev/null || true
  {
    echo "FAIL $TEST_NAME: $*"
    if [ -n "$XLVSD_PID" ] && ! kill -0 "$XLVSD_PID" 2>/dev/null; then
      echo "(xlvsd pid $XLVSD_PID is no longer running)"
    fi
    xlvsd_log_tail 25
  } >&2
  exit 1
}

# test_init PREFIX: lab ID = PREFIX + $$ (at most 12 chars), EXIT trap.
test_init() {
  [ "$(id -u)" -eq 0 ] || { echo "FAIL $TEST_NAME: must run as root" >&2; exit 1; }
  rm -f "$_TEST_FAILMARK"
  ID="${1}$$"
  ID=${ID:0:12}
  trap _test_cleanup EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  echo "# lab $ID ($TEST_NAME)"
}

_test_cleanup() {
  local rc=$? p
  trap - EXIT TERM INT
  set +e
  if [ -e "$_TEST_FAILMARK" ]; then
    _TEST_FAILED=1
    rm -f "$_TEST_FAILMARK"
  fi
  for p in "${TEST_BG_PIDS[@]}"; do
    kill "$p" 2>/dev/null
  done
  if [ -n "$XLVSD_PID" ]; then
    _stop_xlvsd >/dev/null 2>&1
  fi
  if [ "$rc" -ne 0 ] || [ "$_TEST_FAILED" = 1 ]; then
    if [ "$_TEST_FAILED" = 0 ] && [ "$_TEST_DONE" = 0 ]; then
      # died without calling fail (set -e, signal, timeout)
      { echo "FAIL $TEST_NAME: aborted (exit status $rc)"; xlvsd_log_tail 25; } >&2
    fi
    if [ -n "$XLVSD_LOG" ] && [ -f "$XLVSD_LOG" ]; then
      mkdir -p "$XLVS_TEST_LOGDIR" 2>/dev/null &&
        cp -f "$XLVSD_LOG" "$XLVS_TEST_LOGDIR/$TEST_NAME.xlvsd.log" 2>/dev/null &&
        echo "# full xlvsd log: $XLVS_TEST_LOGDIR/$TEST_NAME.xlvsd.log"
    fi
    # A peer director's log, and keepalived's, beside it.
    for p in "$(lab_dir "$ID" 2>/dev/null)"/xlvsd-*.log "$(lab_dir "$ID" 2>/dev/null)"/ka*.log; do
      [ -f "$p" ] || continue
      mkdir -p "$XLVS_TEST_LOGDIR" 2>/dev/null &&
        cp -f "$p" "$XLVS_TEST_LOGDIR/$TEST_NAME.$(basename "$p")" 2>/dev/null &&
        echo "# also: $XLVS_TEST_LOGDIR/$TEST_NAME.$(basename "$p")"
    done
  fi
  [ -n "$ID" ] && lab_down "$ID"
  [ "$_TEST_FAILED" = 1 ] && [ "$rc" -eq 0 ] && rc=1
  exit "$rc"
}

# Record a background PID to be killed at cleanup.
bg_track() { TEST_BG_PIDS+=("$@"); }

# capture_started FILE: waits (10 s at most) until a capture writing FILE (tshark -w) has
# opened its interface: dumpcap writes the file's header then. A fixed sleep is not enough
# when other tests load the machine (tshark takes seconds to start).
capture_started() {
  local i
  for i in $(seq 1 100); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  fail "capture $1 did not start in 10 s"
}

# ---------------------------------------------------------------- xlvsd

# Print the control socket path of lab ID.
xlvs_sock() { printf '%s/xlvsd.sock\n' "$(lab_dir "$1")"; }

# start_xlvsd ID ARGS...: run xlvsd in the director netns with
# `--control <labdir>/xlvsd.sock ARGS...` (ARGS carry --iface/--rules), wait
# (bounded, XLVS_READY_TIMEOUT s) for "xlvsd: ready" in its stderr log.
start_xlvsd() {
  local id=$1 ns sock i limit a prev= st before
  shift
  [ -x "$XLVSD" ] || fail "xlvsd binary not found: $XLVSD (build with cargo build --release)"
  [ -x "$XLVSADM" ] || fail "xlvsadm binary not found: $XLVSADM"
  ns=$(lab_ns "$id" dir) || fail "bad lab id $id"
  sock=$(xlvs_sock "$id")
  XLVSD_LOG="$(lab_dir "$id")/xlvsd.log"
  XLVSD_IFACES=
  for a in "$@"; do
    [ "$prev" = --iface ] && XLVSD_IFACES+=" $a"
    prev=$a
  done
  log "start: ip netns exec $ns $XLVSD --control $sock $*"
  # The log is appended to across restarts: this start's ready line is the next one.
  before=$(grep -c 'xlvsd: ready' "$XLVSD_LOG" 2>/dev/null || true)
  # `ip netns exec` execs the command, so $! is xlvsd itself.
  ip netns exec "$ns" "$XLVSD" --control "$sock" "$@" </dev/null >>"$XLVSD_LOG" 2>&1 &
  XLVSD_PID=$!
  limit=$((${XLVS_READY_TIMEOUT:-30} * 10))
  for ((i = 0; i < limit; i++)); do
    if [ "$(grep -c 'xlvsd: ready' "$XLVSD_LOG" 2>/dev/null || true)" -gt "${before:-0}" ]; then
      log "xlvsd ready (pid $XLVSD_PID) after $((i / 10)).$((i % 10))s"
      return 0
    fi
    if ! kill -0 "$XLVSD_PID" 2>/dev/null; then
      st=0
      wait "$XLVSD_PID" 2>/dev/null || st=$?
      fail "xlvsd exited (status $st) before printing 'xlvsd: ready'"
    fi
    sleep 0.1
  done
  fail "xlvsd did not print 'xlvsd: ready' within ${XLVS_READY_TIMEOUT:-30}s"
}

# start_peer_xlvsd ROLE ARGS...: another xlvsd, in ROLE's netns (a director
# pair's second director), with control socket $(lab_dir)/xlvsd-ROLE.sock and
# log xlvsd-ROLE.log; waits (bounded) for "xlvsd: ready". Its pid is in
# PEER_PID (killed at cleanup; stop it with stop_peer_xlvsd).
start_peer_xlvsd() {
  local role=$1 ns sock log i before
  shift
  ns=$(lab_ns "$ID" "$role") || fail "bad role $role"
  sock="$(lab_dir "$ID")/xlvsd-$role.sock"
  log="$(lab_dir "$ID")/xlvsd-$role.log"
  before=$(grep -c 'xlvsd: ready' "$log" 2>/dev/null || true)
  log "start: ip netns exec $ns $XLVSD --control $sock $*"
  ip netns exec "$ns" "$XLVSD" --control "$sock" "$@" </dev/null >>"$log" 2>&1 &
  PEER_PID=$!
  bg_track "$PEER_PID"
  for ((i = 0; i < ${XLVS_READY_TIMEOUT:-30} * 10; i++)); do
    [ "$(grep -c 'xlvsd: ready' "$log" 2>/dev/null || true)" -gt "${before:-0}" ] && return 0
    kill -0 "$PEER_PID" 2>/dev/null || fail "xlvsd in $role exited before ready: $(tail -n 5 "$log")"
    sleep 0.1
  done
  fail "xlvsd in $role not ready within ${XLVS_READY_TIMEOUT:-30}s"
}

# stop_peer_xlvsd: SIGTERM the peer xlvsd; it must exit within 10 s.
stop_peer_xlvsd() {
  local i
  kill -TERM "$PEER_PID" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$PEER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$PEER_PID" 2>/dev/null && fail "peer xlvsd still running 10 s after SIGTERM"
  wait "$PEER_PID" 2>/dev/null || true
}

# xadm_at ROLE ARGS...: xlvsadm against ROLE's xlvsd (start_peer_xlvsd); must
# succeed; prints its stdout.
xadm_at() {
  local role=$1 out rc=0
  shift
  out=$(timeout 10 "$XLVSADM" --control "$(lab_dir "$ID")/xlvsd-$role.sock" "$@" 2>&1) || rc=$?
  [ "$rc" -eq 0 ] || fail "xlvsadm ($role) $* failed (rc=$rc): $out"
  printf '%s\n' "$out"
}

# Fail unless xlvsd is still running.
xlvsd_alive() {
  [ -n "$XLVSD_PID" ] || fail "xlvsd was never started"
  if ! kill -0 "$XLVSD_PID" 2>/dev/null; then
    local rc=0
    wait "$XLVSD_PID" 2>/dev/null || rc=$?
    fail "xlvsd died (exit status $rc)${1:+ $1}"
  fi
}

# SIGTERM, wait up to 10 s, then SIGKILL. Sets XLVSD_STOP_MSG; returns 0
# only if xlvsd exited by itself within 10 s with status 0. Must not run in
# a subshell ($(...)): xlvsd is a child of the test's main shell.
_stop_xlvsd() {
  local i rc=0 pid=$XLVSD_PID
  XLVSD_STOP_MSG=
  [ -n "$pid" ] || return 0
  XLVSD_PID=
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    XLVSD_STOP_MSG="still running 10s after SIGTERM (killed)"
    return 1
  fi
  wait "$pid" 2>/dev/null || rc=$?
  XLVSD_STOP_MSG="exit status $rc"
  [ "$rc" -eq 0 ]
}

# stop_xlvsd_checked: stop xlvsd and check it exited cleanly (status 0
# within 10 s of SIGTERM) and left no XDP program on its interfaces (unless it said it
# left it pinned for a restart, --restart-hold: then it must be there).
stop_xlvsd_checked() {
  local pid=$XLVSD_PID dev ns
  [ -n "$pid" ] || return 0
  if ! _stop_xlvsd; then
    fail "xlvsd did not stop cleanly on SIGTERM: $XLVSD_STOP_MSG"
  fi
  ns=$(lab_ns "$ID" dir)
  if tail -n 3 "$XLVSD_LOG" | has "XDP stays attached"; then
    for dev in $XLVSD_IFACES; do
      ip -n "$ns" link show dev "$dev" | has " xdp" ||
        fail "xlvsd said it left XDP on $dev for a restart, but $dev has none"
    done
    return 0
  fi
  for dev in $XLVSD_IFACES; do
    if ip -n "$ns" -d link show dev "$dev" 2>/dev/null |
      grep -Eqw 'xdp|xdpgeneric|xdpdrv|xdpoffload|xdpmulti|prog/xdp[a-z]*'; then
      fail "XDP program still attached to $dev after xlvsd exited: $(ip -n "$ns" -d link show dev "$dev" | tr '\n' ' ')"
    fi
  done
}

# pass: stop xlvsd (checked), print PASS.
pass() {
  stop_xlvsd_checked
  _TEST_DONE=1
  echo "PASS $TEST_NAME"
}

# xlvsadm ID ARGS...: run xlvsadm against lab ID's daemon (10 s limit).
xlvsadm() {
  local id=$1
  shift
  timeout 10 "$XLVSADM" --control "$(xlvs_sock "$id")" "$@"
}

# xdp_stat ID NAME: counter NAME of `xlvsadm --xdp-stats` (steered, passed,
# redirect_failed, offloaded).
xdp_stat() {
  xadm "$1" --xdp-stats | awk -v k="$2" '$1 == k { print $2 }'
}

# xadm ID ARGS...: xlvsadm that must succeed; prints its stdout.
xadm() {
  local out rc=0 id=$1
  shift
  out=$(xlvsadm "$id" "$@" 2>&1) || rc=$?
  [ "$rc" -eq 0 ] || fail "xlvsadm $* failed (rc=$rc): $out"
  printf '%s\n' "$out"
}

# lvs_dest_field LISTING SERVICE DEST COL: from `xlvsadm -L -n` output,
# column COL (Forward|Weight|ActiveConn|InActConn; from `-L -n --stats`:
# Conns|InPkts|OutPkts|InBytes|OutBytes) of DEST (addr:port) under SERVICE
# ("TCP 192.0.2.100:80" / "UDP ..."). Prints nothing if absent.
lvs_dest_field() {
  local col
  case "$4" in
    Forward) col=3 ;; Weight) col=4 ;; ActiveConn) col=5 ;; InActConn) col=6 ;;
    Conns) col=3 ;; InPkts) col=4 ;; OutPkts) col=5 ;; InBytes) col=6 ;; OutBytes) col=7 ;;
    *) fail "lvs_dest_field: bad column $4" ;;
  esac
  printf '%s\n' "$1" | awk -v svc="$2" -v dest="$3" -v col="$col" '
    $1 == "TCP" || $1 == "UDP" || $1 == "FWM" { cur = $1 " " $2; next }
    $1 == "->" && cur == svc && $2 == dest && !n++ { print $col }'
}

# sighup_and_wait PATTERN: SIGHUP xlvsd, wait (bounded) for a new log line
# matching PATTERN.
sighup_and_wait() {
  local before i
  before=$(wc -l <"$XLVSD_LOG")
  kill -HUP "$XLVSD_PID"
  for ((i = 0; i < 50; i++)); do
    tail -n +"$((before + 1))" "$XLVSD_LOG" | has -- "$1" && return 0
    sleep 0.1
  done
  fail "no log line matching '$1' within 5 s of SIGHUP; new lines: $(tail -n +"$((before + 1))" "$XLVSD_LOG")"
}

# ---------------------------------------------------------------- files

# write_rules FILE LINE...: one rule per argument.
write_rules() {
  local f=$1
  shift
  printf '%s\n' "$@" > "$f" || fail "cannot write $f"
}

# ---------------------------------------------------------------- clients

# http_burst ID URL N PAR OUT [SRC]: N GETs of URL from the client netns,
# each a separate curl process (new TCP connection), PAR in parallel, from
# source address SRC if given. OUT gets one line per request: the body
# ("rs1") or "ERR rc=R req=I". curl's stderr goes to OUT.err. Returns
# non-zero only if the whole run timed out.
http_burst() {
  local id=$1 url=$2 n=$3 par=$4 out=$5 src=${6:-}
  # shellcheck disable=SC2016
  lab_exec "$id" cli timeout 300 bash -c '
    seq "$2" | xargs -P "$3" -n 1 sh -c '\''
      curl -g -sS --max-time 10 ${2:+--interface "$2"} "$1" || echo "ERR rc=$? req=$3"'\'' sh "$1" "$4"
  ' _ "$url" "$n" "$par" "$src" >"$out" 2>"$out.err"
}

# check_burst OUT N WHAT: all N lines of OUT must be rs1 or rs2 (else fail
# with samples). Sets BURST_RS1 / BURST_RS2 counts.
check_burst() {
  local out=$1 n=$2 what=$3 lines bad
  lines=$(wc -l <"$out")
  BURST_RS1=$(grep -cx rs1 "$out" || true)
  BURST_RS2=$(grep -cx rs2 "$out" || true)
  bad=$(grep -vx -e rs1 -e rs2 "$out" | head -n 5 || true)
  if [ "$lines" -ne "$n" ] || [ -n "$bad" ] || [ $((BURST_RS1 + BURST_RS2)) -ne "$n" ]; then
    fail "$what: $lines answers of $n, rs1=$BURST_RS1 rs2=$BURST_RS2, $(grep -vxc -e rs1 -e rs2 "$out" || true) bad; samples: $(printf '%s' "$bad" | tr '\n' '|') curl stderr: $(head -n 3 "$out.err" 2>/dev/null | tr '\n' '|')"
  fi
}

# make_big ID FILE: 50 MB of random data to FILE, hard-linked as "big" into
# rs1's and rs2's www dirs. Prints the sha256.
make_big() {
  local id=$1 f=$2 r
  head -c 50M /dev/urandom >"$f" || fail "cannot write $f"
  for r in rs1 rs2; do
    ln -f "$f" "$(lab_wwwdir "$id" "$r")/big" || fail "cannot link big into $r"
  done
  sha256sum "$f" | awk '{ print $1 }'
}

# expect_all_on RS N WHAT [SRC]: N new requests (4 in parallel) must all be
# answered, and all by RS (rs1|rs2).
expect_all_on() {
  local rs=$1 n=$2 what=$3 got
  http_burst "$ID" "http://$LAB_VIP/" "$n" 4 "$D/burst" "${4:-}" || fail "$what: timed out"
  check_burst "$D/burst" "$n" "$what"
  got=$BURST_RS1
  [ "$rs" = rs2 ] && got=$BURST_RS2
  [ "$got" -eq "$n" ] || fail "$what: rs1=$BURST_RS1 rs2=$BURST_RS2, want all $n on $rs; listing:
$(xadm "$ID" -L -n)"
}

# ---------------------------------------------------------------- slow download

# start_slow_download: with start_rr_xlvsd running and "big" in place
# (make_big), start a 50 MB download at 5 MB/s (~10 s) through the VIP and
# find its dest: the one with ActiveConn >= 1 (bounded, 5 s), cross-checked
# with the realserver's sockets. Sets DL (pid), VICTIM (rs1|rs2),
# VICTIM_IP, OTHER.
start_slow_download() {
  local svc="TCP $LAB_VIP:80" a1= a2= i est L
  log "starting a rate-limited 50 MB download"
  # The client's receive buffer at 1 MB (0.2 s of the download), so that the download stays
  # on the wire for its ~10 s. With the default (up to 32 MB) the realserver could send it
  # all in 3 s while curl still read for 7: the connection then sat idle on the wire, and
  # with a short ESTABLISHED timeout it expired before curl's FIN, as in IPVS.
  lab_exec "$ID" cli sysctl -qw net.ipv4.tcp_rmem="4096 131072 1048576" ||
    fail "capping the client's TCP receive buffer"
  lab_exec "$ID" cli timeout 90 curl -sS --max-time 80 --limit-rate 5M \
    -o "$D/big.got" "http://$LAB_VIP/big" </dev/null >/dev/null 2>"$D/dl.err" &
  DL=$!
  bg_track "$DL"
  VICTIM=
  for ((i = 0; i < 25; i++)); do
    L=$(xadm "$ID" -L -n)
    a1=$(lvs_dest_field "$L" "$svc" "$LAB_RS1_IP:80" ActiveConn)
    a2=$(lvs_dest_field "$L" "$svc" "$LAB_RS2_IP:80" ActiveConn)
    if [[ $a1 =~ ^[0-9]+$ && $a2 =~ ^[0-9]+$ ]]; then
      if [ "$a1" -ge 1 ] && [ "$a2" -eq 0 ]; then VICTIM=rs1; break; fi
      if [ "$a2" -ge 1 ] && [ "$a1" -eq 0 ]; then VICTIM=rs2; break; fi
      [ "$a1" -ge 1 ] && [ "$a2" -ge 1 ] && fail "both dests show ActiveConn >= 1 with one download running; listing:
$L"
    fi
    sleep 0.2
  done
  [ -n "$VICTIM" ] || fail "no dest shows ActiveConn >= 1 within 5 s of starting the download (rs1='$a1' rs2='$a2'); listing:
$L"
  if [ "$VICTIM" = rs1 ]; then VICTIM_IP=$LAB_RS1_IP OTHER=rs2; else VICTIM_IP=$LAB_RS2_IP OTHER=rs1; fi
  log "download served by $VICTIM ($VICTIM_IP) according to xlvsadm"
  est=$(lab_exec "$ID" "$VICTIM" ss -Htn state established '( sport = :80 )' | wc -l)
  [ "$est" -ge 1 ] || fail "xlvsadm says $VICTIM serves the download, but $VICTIM has no established connection on :80"
}

# download_running WHEN: fail unless the slow download is still running.
download_running() {
  kill -0 "$DL" 2>/dev/null || fail "download finished $1 (too fast for the test)"
}

# finish_slow_download: wait for the download; it must succeed intact ($SUM).
finish_slow_download() {
  local rc=0 got
  wait "$DL" || rc=$?
  TEST_BG_PIDS=()
  xlvsd_alive "after the download"
  [ "$rc" -eq 0 ] || fail "download through $VICTIM failed (curl/timeout rc=$rc): $(head -c 300 "$D/dl.err"); got $(stat -c %s "$D/big.got" 2>/dev/null || echo 0) bytes"
  got=$(sha256sum "$D/big.got" | awk '{ print $1 }')
  [ "$got" = "$SUM" ] || fail "sha256 of the download: got $got ($(stat -c %s "$D/big.got") bytes), want $SUM"
}

# ---------------------------------------------------------------- shared setups

# web_lab_up MODE QUEUES: the MODE (nat|dr) lab with nginx on rs1 and rs2
# port 80. Sets D (the lab dir).
# expect_tracked MIN WHAT: the connections xlvsd counts on rs1 and rs2 of
# VIP:80 (active + inactive, from `xlvsadm -L -n`) are at least MIN: the
# traffic really went through xlvs's connection table.
expect_tracked() {
  local min=$1 what=$2 L rs a i n=0
  L=$(xadm "$ID" -L -n)
  for rs in "$LAB_RS1_IP" "$LAB_RS2_IP"; do
    a=$(lvs_dest_field "$L" "TCP $LAB_VIP:80" "$rs:80" ActiveConn)
    i=$(lvs_dest_field "$L" "TCP $LAB_VIP:80" "$rs:80" InActConn)
    n=$((n + ${a:-0} + ${i:-0}))
  done
  [ "$n" -ge "$min" ] || fail "$what: xlvsd tracks $n connections, want >= $min; listing:
$L"
}

# ere_quote TEXT: TEXT with grep -E's special characters escaped ("[2001:db8::7]" as
# "\[2001:db8::7\]", "10.0.0.1" as "10\.0\.0\.1").
ere_quote() {
  sed 's/[][\.*^$+?(){}|]/\\&/g' <<<"$1"
}

# use_ipv6: after web_lab_up with LAB_IPV6=1, point LAB_VIP, LAB_RS1_IP and
# LAB_RS2_IP at the IPv6 addresses in ipvsadm's and curl's bracket form
# ("[2001:db8::100]"), so start_rr_xlvsd and http_suite run over IPv6.
use_ipv6() {
  LAB_VIP="[$LAB_VIP6]" LAB_RS1_IP="[$LAB_RS1_IP6]" LAB_RS2_IP="[$LAB_RS2_IP6]"
}

web_lab_up() {
  local mode=$1 queues=$2
  "lab_${mode}_up" "$ID" "$queues" || fail "lab_${mode}_up"
  D=$(lab_dir "$ID")
  lab_nginx "$ID" rs1 80 || fail "lab_nginx rs1"
  lab_nginx "$ID" rs2 80 || fail "lab_nginx rs2"
}

# start_rr_xlvsd [ARGS...]: rules "rr over rs1 and rs2 on VIP:80" (-m in the
# NAT lab, -g in the DR lab) in $D/rules, and xlvsd on the lab's director
# interfaces (with ARGS added).
start_rr_xlvsd() {
  local m=-m ifaces=(--iface "$LAB_DIR_EXT")
  [ "$LAB_MODE" = dr ] && m=-g
  [ "$LAB_DIR_INT" != "$LAB_DIR_EXT" ] && ifaces+=(--iface "$LAB_DIR_INT")
  write_rules "$D/rules" \
    "-A -t $LAB_VIP:80 -s rr" \
    "-a -t $LAB_VIP:80 -r $LAB_RS1_IP:80 $m -w 1" \
    "-a -t $LAB_VIP:80 -r $LAB_RS2_IP:80 $m -w 1"
  start_xlvsd "$ID" "${ifaces[@]}" --rules "$D/rules" "$@"
}

# xlvsadm_rc ID EXPECTED_RC EXPECTED_STDERR ARGS...: xlvsadm must fail with
# exactly this exit status and standard error.
xlvsadm_rc() {
  local id=$1 want_rc=$2 want_err=$3 rc=0 err
  shift 3
  err=$(xlvsadm "$id" "$@" 2>&1 >/dev/null) || rc=$?
  [ "$rc" = "$want_rc" ] && [ "$err" = "$want_err" ] \
    || fail "xlvsadm $*: exit $rc, stderr '$err'; want exit $want_rc, stderr '$want_err'"
}

# http_suite FORWARD: with start_rr_xlvsd running and SUM the sha256 of
# "big" (make_big), checks (a) 1000 requests, each a new TCP connection: all
# answered, 450..550 each; (b) a 50 MB download through the VIP arrives
# intact; (c) `xlvsadm -L -n` lists both dests with Forward = FORWARD.
http_suite() {
  local want=$1 rc=0 c rs f L GOT
  log "(a) 1000 requests, 8 in parallel"
  http_burst "$ID" "http://$LAB_VIP/" 1000 8 "$D/burst" || fail "1000 requests: timed out after 300 s"
  xlvsd_alive "after 1000 requests"
  check_burst "$D/burst" 1000 "1000 requests"
  log "rs1=$BURST_RS1 rs2=$BURST_RS2"
  for c in "$BURST_RS1" "$BURST_RS2"; do
    if [ "$c" -lt 450 ] || [ "$c" -gt 550 ]; then
      fail "rr split outside 450..550: rs1=$BURST_RS1 rs2=$BURST_RS2"
    fi
  done

  log "(b) 50 MB download through the VIP"
  lab_exec "$ID" cli timeout 120 curl -g -sS --max-time 110 -o "$D/big.got" "http://$LAB_VIP/big" 2>"$D/big.err" || rc=$?
  xlvsd_alive "after the 50 MB download"
  [ "$rc" -eq 0 ] || fail "download of /big failed (rc=$rc): $(head -c 300 "$D/big.err")"
  GOT=$(sha256sum "$D/big.got" | awk '{ print $1 }')
  [ "$GOT" = "$SUM" ] || fail "sha256 of /big: got $GOT ($(stat -c %s "$D/big.got") bytes), want $SUM"

  L=$(xadm "$ID" -L -n)
  for rs in "$LAB_RS1_IP" "$LAB_RS2_IP"; do
    f=$(lvs_dest_field "$L" "TCP $LAB_VIP:80" "$rs:80" Forward)
    [ "$f" = "$want" ] || fail "xlvsadm -L -n: dest $rs:80 Forward='$f', want $want; listing:
$L"
  done
}
