#!/usr/bin/env bash
# SIPp interop suite for the UserAgent and the `ua` example (issue #12).
#
#   a. ua --call -> SIPp UAS (built-in `-sn uas`), over UDP and over TCP: the ua hangs up
#      (BYE from the ua's side) and exits 0.
#   b. SIPp UAC (built-in `-sn uac`) -> ua --answer: $UA_CALLS calls at $UA_RATE calls/s, every
#      one must succeed (BYE from SIPp's side).
#   c. SIPp UAC with a re-INVITE in the dialog (tests/sipp/ua/uac_reinvite.xml) -> ua --answer.
#   d. ua --call -> SIPp UAS that hangs up itself (tests/sipp/ua/uas_bye.xml): the ua exits 0.
#   e. ua --call -> SIPp UAS that rings forever (tests/sipp/ua/uas_cancel.xml); the ua gets
#      SIGINT while ringing and must CANCEL; SIPp checks CANCEL/200/487/ACK.
#   f. ua --call -> SIPp UAS playing a forking proxy (tests/sipp/ua/uas_forked.xml): two 180s
#      with different To-tags, a 200 from one (ACKed with its tag), a late 200 from the other
#      (ACKed and ended with BYE), the answered one hung up later.
#
#   g. ua --call --prack -> SIPp UAS sending a reliable 183 (tests/sipp/ua/uas_prack.xml):
#      the INVITE requires 100rel, the PRACK carries the right RAck (RFC 3262).
#   h. SIPp UAC requiring 100rel (tests/sipp/ua/uac_prack.xml) -> ua --answer --prack: reliable
#      183 with SDP, PRACK answered 200, the 200 to the INVITE held until then.
#   i. ua --call --session-timer 90 -> SIPp UAS with session timers
#      (tests/sipp/ua/uas_session_timer.xml): 422 with Min-SE: 100, the INVITE again with
#      Session-Expires/Min-SE 100, then the ua's refresh (UPDATE) at 50 s, then SIPp's BYE.
#      About 52 s (the interval cannot go below 90 s, RFC 4028 §4).
#
# Loopback only; every sipp runs with -m N -timeout Xs -timeout_error; every background process
# is ended on exit. Fails (does not skip) when sipp is missing. Logs: $SIPP_OUT
# (default /tmp/sipp-ua). Knobs: UA_CALLS (default 1000), UA_RATE (50), SIPP_BASE_PORT (16070).
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS="${UA_CALLS:-1000}"
RATE="${UA_RATE:-50}"
BASE="${SIPP_BASE_PORT:-16070}"
OUT="${SIPP_OUT:-/tmp/sipp-ua}"
SCEN=tests/sipp/ua
BIN="${CARGO_TARGET_DIR:-target}/release/examples"
IP=127.0.0.1
UA_PORT=$BASE              # ua --answer / ua --call
SIPP_UAC_PORT=$((BASE + 1)) # SIPp as UAC
SIPP_UAS_PORT=$((BASE + 10)) # SIPp as UAS

if ! command -v sipp >/dev/null 2>&1; then
  echo "FAIL: sipp is not installed (Debian/Ubuntu: apt-get install -y sip-tester)" >&2
  exit 1
fi
echo "sipp: $(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*' || echo unknown)"

echo "=== cargo build --release --example ua"
cargo build --release --example ua

rm -rf "$OUT"
mkdir -p "$OUT"

PIDS=()
cleanup() {
  local p i
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do
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

# Starts a command in the background (output to a file), its pid in $BG.
bg() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  BG=$!
  PIDS+=("$BG")
}

# Waits up to $2 seconds for pid $1 to end (killing it otherwise); its status in $RC.
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

wait_log() {
  local file=$1 pattern=$2 i
  for ((i = 0; i < 100; i++)); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "  (no '$pattern' in $file after 10s)"
  return 1
}

sipp_count() { grep "$2" "$1" | tail -n 1 | awk -F'|' '{gsub(/ /, "", $3); print $3}'; }

# SIPp in the background: name, timeout seconds, sipp args... (pid in $BG).
start_sipp() {
  local name=$1 secs=$2
  shift 2
  bg "$OUT/$name.screen.log" timeout $((secs + 15)) sipp "$@" -i $IP -nostdin \
    -timeout "${secs}s" -timeout_error -trace_err -error_file "$OUT/$name.errors.log"
}

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
    tail -n 20 "$OUT/$name.errors.log" 2>/dev/null || true
  fi
}

UA=("$BIN/ua" --bind "$IP:$UA_PORT" --aor sip:alice@example.com --json)

# ua --call against a SIPp UAS scenario: name, sipp scenario args, ua extra args
# (UA_SIPP_SECS: the run's time limit, default 30 s).
ua_calls_sipp_uas() {
  local name=$1 transport=$2 scenario=$3
  shift 3
  local t=u1 uri="sip:service@$IP:$SIPP_UAS_PORT"
  if [ "$transport" = tcp ]; then
    t=t1
    uri="$uri;transport=tcp"
  fi
  local secs=${UA_SIPP_SECS:-30}
  start_sipp "$name" "$secs" $scenario -t $t -p "$SIPP_UAS_PORT" -m 1
  local sipp=$BG
  sleep 0.5
  bg "$OUT/$name.ua.log" timeout $((secs + 30)) "${UA[@]}" --transport "$transport" --call "$uri" "$@"
  local ua=$BG
  wait_pid "$ua" $((secs + 30))
  local ua_rc=$RC
  wait_pid "$sipp" $((secs + 15))
  report_sipp "$name" 1 "$RC"
  if [ "$ua_rc" = 0 ]; then
    pass "$name: ua --call exit 0"
  else
    fail "$name: ua --call exit $ua_rc (see $OUT/$name.ua.log)"
    tail -n 20 "$OUT/$name.ua.log"
  fi
}

echo "--- a. ua --call -> sipp -sn uas (UDP, TCP)"
ua_calls_sipp_uas a-call-udp udp "-sn uas" --duration 1
ua_calls_sipp_uas a-call-tcp tcp "-sn uas" --duration 1

echo "--- b, c. SIPp UAC -> ua --answer"
bg "$OUT/answer.ua.log" "${UA[@]}" --aor sip:bob@example.com --answer
ANSWER=$BG
wait_log "$OUT/answer.ua.log" '"started"' || true
secs=$((CALLS / RATE + 40))
start_sipp b-uac "$secs" -sn uac -t u1 -p "$SIPP_UAC_PORT" -m "$CALLS" -r "$RATE" -l 200 \
  -d 500 "$IP:$UA_PORT"
wait_pid "$BG" $((secs + 20))
report_sipp b-uac "$CALLS" "$RC"
start_sipp c-reinvite 40 -sf "$SCEN/uac_reinvite.xml" -t u1 -p "$SIPP_UAC_PORT" -m 20 -r 10 \
  "$IP:$UA_PORT"
wait_pid "$BG" 60
report_sipp c-reinvite 20 "$RC"
kill -TERM "$ANSWER" 2>/dev/null || true
wait_pid "$ANSWER" 10
stopped=$(grep '"stopped"' "$OUT/answer.ua.log" || true)
echo "  $stopped"
if grep -q '"dialogs_live":0' <<<"$stopped"; then
  pass "ua --answer: stopped with no dialog left"
else
  fail "ua --answer: dialogs left or no clean stop (see $OUT/answer.ua.log)"
fi

echo "--- d. SIPp UAS hangs up"
ua_calls_sipp_uas d-remote-bye udp "-sf $SCEN/uas_bye.xml" --duration 10

echo "--- e. CANCEL of a ringing call"
start_sipp e-cancel 30 -sf "$SCEN/uas_cancel.xml" -t u1 -p "$SIPP_UAS_PORT" -m 1
SIPP=$BG
sleep 0.5
bg "$OUT/e-cancel.ua.log" timeout 60 "${UA[@]}" --aor sip:alice@example.com \
  --call "sip:service@$IP:$SIPP_UAS_PORT"
UAPID=$BG
if wait_log "$OUT/e-cancel.ua.log" '"ringing"'; then
  kill -INT "$UAPID" 2>/dev/null || true
fi
wait_pid "$UAPID" 40
wait_pid "$SIPP" 45
report_sipp e-cancel 1 "$RC"
if grep -q '"status":487' "$OUT/e-cancel.ua.log"; then
  pass "e-cancel: the call failed with 487 after the CANCEL"
else
  fail "e-cancel: no 487 in $OUT/e-cancel.ua.log"
fi

echo "--- f. forked answer"
ua_calls_sipp_uas f-forked udp "-sf $SCEN/uas_forked.xml" --duration 1

echo "--- g. ua --call --prack -> SIPp UAS sending a reliable 183"
ua_calls_sipp_uas g-prack-uas udp "-sf $SCEN/uas_prack.xml" --duration 1 --prack

echo "--- h. SIPp UAC requiring 100rel -> ua --answer --prack"
bg "$OUT/h-prack.ua.log" "${UA[@]}" --aor sip:bob@example.com --answer --prack
ANSWER=$BG
wait_log "$OUT/h-prack.ua.log" '"started"' || true
start_sipp h-prack-uac 40 -sf "$SCEN/uac_prack.xml" -t u1 -p "$SIPP_UAC_PORT" -m 10 -r 5 \
  "$IP:$UA_PORT"
wait_pid "$BG" 60
report_sipp h-prack-uac 10 "$RC"
kill -TERM "$ANSWER" 2>/dev/null || true
wait_pid "$ANSWER" 10

echo "--- i. ua --call --session-timer 90 -> SIPp UAS (422, then a refresh at 50 s)"
UA_SIPP_SECS=90 ua_calls_sipp_uas i-session-timer udp "-sf $SCEN/uas_session_timer.xml" --duration 120 \
  --session-timer 90
if [ "$(grep -c '"session_timer"' "$OUT/i-session-timer.ua.log")" -ge 2 ]; then
  pass "i-session-timer: negotiated, then refreshed"
else
  fail "i-session-timer: no refresh in $OUT/i-session-timer.ua.log"
fi

echo
echo "=== summary"
printf '%s\n' "${SUMMARY[@]}"
exit "$FAILED"
