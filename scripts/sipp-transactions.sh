#!/usr/bin/env bash
# SIPp interop suite for the transaction layer and the Endpoint (issue #5, "Against SIPp").
#
#   a. SIPp UAC (tests/sipp/uac_options.xml, uac_invite.xml) -> examples/uas.rs
#   b. examples/uac.rs -> SIPp UAS (tests/sipp/uas_invite.xml)
#   c. a and b again through examples/lossy_relay.rs dropping 10 % of the datagrams in each
#      direction (seeded): every call must still complete through retransmissions.
#
# Loopback only. Every sipp runs with -m N -timeout Xs -timeout_error, every step is bounded
# by coreutils timeout, and every background process is killed on exit. Fails (does not skip)
# when sipp is missing. Logs: $SIPP_OUT (default /tmp/sipp-transactions).
#
# Knobs (environment): SIPP_CALLS (default 20), SIPP_LOSS (0.1), SIPP_SEED (5060),
# SIPP_BASE_PORT (15070), SIPP_OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS="${SIPP_CALLS:-20}"
LOSS="${SIPP_LOSS:-0.1}"
SEED="${SIPP_SEED:-5060}"
BASE="${SIPP_BASE_PORT:-15070}"
OUT="${SIPP_OUT:-/tmp/sipp-transactions}"
SCEN=tests/sipp
BIN="${CARGO_TARGET_DIR:-target}/release/examples"
IP=127.0.0.1

UAS_PORT=$BASE               # examples/uas
UAS_RELAY_PORT=$((BASE + 2)) # lossy relay in front of it
SIPP_UAC_PORT=$((BASE + 1))  # SIPp as UAC
SIPP_UAS_PORT=$((BASE + 10)) # SIPp as UAS
UAC_RELAY_PORT=$((BASE + 12)) # lossy relay in front of SIPp's UAS

if ! command -v sipp >/dev/null 2>&1; then
  echo "FAIL: sipp is not installed (Debian/Ubuntu: apt-get install -y sip-tester)" >&2
  exit 1
fi
echo "sipp: $(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*' || echo unknown)"

echo "=== cargo build --release --examples"
cargo build --release --examples

rm -rf "$OUT"
mkdir -p "$OUT"

PIDS=()
# Ends every background process: SIGTERM (the examples print their summary and stop within
# 2 s), then SIGKILL for anything still there after 10 s.
cleanup() {
  local p i
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for ((i = 0; i < 100; i++)); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SUMMARY=()
FAILED=0
pass() { SUMMARY+=("PASS  $1"); echo "PASS  $1"; }
fail() {
  SUMMARY+=("FAIL  $1")
  echo "FAIL  $1"
  FAILED=1
}

# Starts a command in the background (its output to a file), remembering its pid in $BG.
bg() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  BG=$!
  PIDS+=("$BG")
}

# Waits up to $2 seconds for pid $1 to end; kills it if it does not. Sets $RC.
wait_pid() {
  local pid=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "  (pid $pid still running after ${secs}s: killed)"
    kill "$pid" 2>/dev/null || true
  fi
  RC=0
  wait "$pid" 2>/dev/null || RC=$?
}

# Waits until a log line shows a listener is up.
wait_log() {
  local file=$1 pattern=$2 i
  for ((i = 0; i < 100; i++)); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "  (no '$pattern' in $file after 10s)"
  return 1
}

# The "Successful call" / "Failed call" cumulative counts of a SIPp screen dump.
sipp_count() { grep "$2" "$1" | tail -n 1 | awk -F'|' '{gsub(/ /, "", $3); print $3}'; }

# Runs SIPp in the foreground: name, timeout seconds, sipp args...
run_sipp() {
  local name=$1 secs=$2
  shift 2
  # In the background and waited for, so that a signal to this script is handled at once.
  bg "$OUT/$name.screen.log" timeout $((secs + 15)) sipp "$@" -t u1 -i $IP -nostdin \
    -timeout "${secs}s" -timeout_error -trace_err -error_file "$OUT/$name.errors.log"
  RC=0
  wait "$BG" || RC=$?
}

# Reports a SIPp run: name, expected successful calls, rc.
report_sipp() {
  local name=$1 want=$2 rc=$3 ok bad
  ok=$(sipp_count "$OUT/$name.screen.log" "Successful call")
  bad=$(sipp_count "$OUT/$name.screen.log" "Failed call")
  local line="$name: sipp rc=$rc successful=${ok:-?}/$want failed=${bad:-?}"
  if [ "$rc" = 0 ] && [ "${ok:-}" = "$want" ] && [ "${bad:-}" = 0 ]; then
    pass "$line"
  else
    fail "$line (see $OUT/$name.*.log)"
    sed -n '/Messages  Retrans/,/Test Terminated/p' "$OUT/$name.screen.log" | tail -n 20 || true
    grep -v 'receive timeout on message' "$OUT/$name.errors.log" 2>/dev/null | tail -n 20 || true
  fi
}

# Stops a relay and checks that it did lose datagrams both ways: pid, log, tag.
check_relay() {
  kill -TERM "$1" 2>/dev/null || true
  wait_pid "$1" 5
  local line up down
  line=$(grep 'summary' "$2" || true)
  echo "  $line"
  up=$(sed -n 's/.*to-server forwarded=[0-9]* dropped=\([0-9]*\).*/\1/p' <<<"$line")
  down=$(sed -n 's/.*to-client forwarded=[0-9]* dropped=\([0-9]*\).*/\1/p' <<<"$line")
  if [ "${up:-0}" -gt 0 ] && [ "${down:-0}" -gt 0 ]; then
    pass "$3: relay dropped $up to-server and $down to-client datagrams"
  else
    fail "$3: the relay lost nothing one way (to-server ${up:-?}, to-client ${down:-?}): loss not exercised"
  fi
}

# a. SIPp UAC -> uas (through a relay with loss when $1 is "lossy").
sipp_uac_to_uas() {
  local mode=$1 target_port=$UAS_PORT relay=""
  local tag="sipp-uac->uas ($mode)"
  bg "$OUT/uas-$mode.log" timeout 150 "$BIN/uas" --udp "$IP:$UAS_PORT" --exit-after "$CALLS"
  local uas=$BG
  wait_log "$OUT/uas-$mode.log" "listening" || true
  if [ "$mode" = lossy ]; then
    bg "$OUT/relay-uas.log" "$BIN/lossy_relay" --listen "$IP:$UAS_RELAY_PORT" \
      --forward "$IP:$UAS_PORT" --loss "$LOSS" --seed "$SEED" --max-seconds 150
    relay=$BG
    wait_log "$OUT/relay-uas.log" "lossy_relay:" || true
    target_port=$UAS_RELAY_PORT
  fi

  echo "--- $tag: OPTIONS x5"
  run_sipp "a-options-$mode" 40 -sf "$SCEN/uac_options.xml" -p "$SIPP_UAC_PORT" \
    -m 5 -r 10 -l 5 "$IP:$target_port"
  report_sipp "a-options-$mode" 5 "$RC"

  echo "--- $tag: INVITE/ACK/BYE x$CALLS"
  run_sipp "a-invite-$mode" 60 -sf "$SCEN/uac_invite.xml" -p "$SIPP_UAC_PORT" \
    -m "$CALLS" -r 10 -l 10 "$IP:$target_port"
  report_sipp "a-invite-$mode" "$CALLS" "$RC"

  # The uas stops by itself after $CALLS calls (BYEs answered) and a 16 s linger.
  wait_pid "$uas" 30
  local uas_line
  uas_line=$(grep 'uas summary' "$OUT/uas-$mode.log" || true)
  echo "  $uas_line"
  if [ "$RC" = 0 ] && grep -q "calls=$CALLS " <<<"$uas_line" && grep -q " timeouts=0 " <<<"$uas_line"; then
    pass "$tag: uas exit 0, calls=$CALLS, no transaction timed out"
  else
    fail "$tag: uas rc=$RC (see $OUT/uas-$mode.log)"
  fi
  if [ -n "$relay" ]; then
    check_relay "$relay" "$OUT/relay-uas.log" "$tag"
  fi
}

# b. uac -> SIPp UAS (through a relay with loss when $1 is "lossy").
uac_to_sipp_uas() {
  local mode=$1 target_port=$SIPP_UAS_PORT relay=""
  local tag="uac->sipp-uas ($mode)"
  local name="b-uas-$mode"
  echo "--- $tag: OPTIONS + INVITE/ACK/BYE x$CALLS"
  # The OPTIONS counts as one SIPp call.
  bg "$OUT/$name.screen.log" timeout 110 sipp -sf "$SCEN/uas_invite.xml" -t u1 -i $IP \
    -p "$SIPP_UAS_PORT" -m $((CALLS + 1)) -nostdin -timeout 90s -timeout_error \
    -trace_err -error_file "$OUT/$name.errors.log"
  local sipp_pid=$BG
  sleep 0.5
  if [ "$mode" = lossy ]; then
    bg "$OUT/relay-sipp.log" "$BIN/lossy_relay" --listen "$IP:$UAC_RELAY_PORT" \
      --forward "$IP:$SIPP_UAS_PORT" --loss "$LOSS" --seed "$((SEED + 1))" --max-seconds 150
    relay=$BG
    wait_log "$OUT/relay-sipp.log" "lossy_relay:" || true
    target_port=$UAC_RELAY_PORT
  fi
  bg "$OUT/uac-$mode.log" timeout 90 "$BIN/uac" --target "$IP:$target_port" \
    --calls "$CALLS" --concurrent 4 --hold-ms 500 --max-seconds 75
  local uac_rc=0
  wait "$BG" || uac_rc=$?
  local uac_line
  uac_line=$(grep 'uac summary' "$OUT/uac-$mode.log" || true)
  echo "  $uac_line"
  if [ "$uac_rc" = 0 ]; then
    pass "$tag: uac exit 0, ok=$CALLS/$CALLS"
  else
    fail "$tag: uac rc=$uac_rc (see $OUT/uac-$mode.log)"
  fi
  wait_pid "$sipp_pid" 100
  report_sipp "$name" $((CALLS + 1)) "$RC"
  if [ -n "$relay" ]; then
    check_relay "$relay" "$OUT/relay-sipp.log" "$tag"
  fi
}

START=$SECONDS
echo "=== a. SIPp UAC -> Endpoint UAS (no loss)"
sipp_uac_to_uas direct
echo "=== b. Endpoint UAC -> SIPp UAS (no loss)"
uac_to_sipp_uas direct
echo "=== c. the same through the lossy relay: loss $LOSS each direction, seed $SEED"
sipp_uac_to_uas lossy
uac_to_sipp_uas lossy

echo
echo "=== SIPp transaction interop summary ($((SECONDS - START))s, calls=$CALLS, loss=$LOSS, seed=$SEED)"
printf '%s\n' "${SUMMARY[@]}"
if [ "$FAILED" != 0 ]; then
  echo "SIPp interop: FAILED (logs in $OUT)"
  exit 1
fi
echo "SIPp interop: all passed"
