#!/usr/bin/env bash
# SIPp suite of the example proxy (issue 13): calls, forking, CANCEL, MESSAGE and a 407
# challenge through `proxy`, with SIPp as caller and callees. Loopback only, bounded in time;
# fails on any failure, and when sipp is missing (install the Debian package sip-tester).
#
#   scripts/sipp-proxy.sh               # builds `--release --example proxy` first
#   PROXY_BIN=path scripts/sipp-proxy.sh
#   KEEP_LOGS=1 scripts/sipp-proxy.sh   # keep the proxy and SIPp logs
#
# Two proxies (realm localhost): 5200 open, 5202 with --users (407 for the realm's users).
# Callees register from the port they then answer on (5211, 5212, 5213), so their contact is
# where the REGISTER came from. Every callee is a SIPp instance that must end its scenario too.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v sipp >/dev/null 2>&1; then
  echo "sipp-proxy: sipp not found (apt-get install sip-tester)" >&2
  exit 1
fi

BIN="${PROXY_BIN:-target/release/examples/proxy}"
if [ -z "${PROXY_BIN:-}" ]; then
  cargo build --release --example proxy
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

cat >"$WORK/users.txt" <<'EOF'
alice:localhost:secret
erin:localhost:secret
EOF

# start NAME PORT ARGS...: a proxy in the background; waits until it listens (at most 10 s).
start() {
  local name=$1 port=$2
  shift 2
  timeout 600 "$BIN" --udp "127.0.0.1:$port" --tcp "127.0.0.1:$port" --realm localhost \
    --stats 0 "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do
    if grep -q "listening.*TCP" "$WORK/$name.log" 2>/dev/null; then return 0; fi
    if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "proxy $name did not start:" >&2
  cat "$WORK/$name.log" >&2
  exit 1
}

start open 5200 --open
start auth 5202 --users "$WORK/users.txt"

SCEN=tests/sipp/proxy
REG=tests/sipp/registrar
PASS=0
FAIL=0
RESULTS=()
N=0
TRACE=()
if [ "${SIPP_TRACE:-0}" = 1 ]; then TRACE=(-trace_msg); fi

# sipp_run DIR ARGS...: one bounded SIPp run in its own directory.
sipp_run() {
  local dir=$1
  shift
  mkdir -p "$dir"
  (cd "$dir" && timeout 40 sipp -i 127.0.0.1 -m 1 -l 1 -timeout 30s -timeout_error \
    -recv_timeout 10000 -trace_err "${TRACE[@]}" -nostdin "$@" >sipp.out 2>&1)
}

# register PROXY_PORT USER LPORT [-au U -ap P]: REGISTER from LPORT (contact on LPORT).
register() {
  local proxy=$1 user=$2 lport=$3
  shift 3
  local scen=register_noauth
  if [ $# -gt 0 ]; then scen=register_digest; fi
  N=$((N + 1))
  sipp_run "$WORK/$N-reg-$user-$lport" "127.0.0.1:$proxy" -sf "$PWD/$REG/$scen.xml" \
    -p "$lport" -t u1 -s "$user" "$@"
}

CALLEES=()
# callee SCENARIO LPORT: a SIPp callee in the background, for one call.
callee() {
  local scen=$1 lport=$2
  N=$((N + 1))
  local dir="$WORK/$N-callee-$scen-$lport"
  mkdir -p "$dir"
  (cd "$dir" && timeout 40 sipp -sf "$OLDPWD/$SCEN/$scen.xml" -i 127.0.0.1 -p "$lport" -t u1 \
    -m 1 -timeout 30s -timeout_error -trace_err "${TRACE[@]}" -nostdin >sipp.out 2>&1) &
  CALLEES+=("$!:$dir")
}

# case LABEL PROXY_PORT SCENARIO ARGS...: the caller, then every callee started for it.
case_run() {
  local label=$1 proxy=$2 scen=$3
  shift 3
  sleep 0.3 # the callees bind their ports
  N=$((N + 1))
  local dir="$WORK/$N-caller-$scen"
  local ok=1
  if ! sipp_run "$dir" "127.0.0.1:$proxy" -sf "$PWD/$SCEN/$scen.xml" -p 5220 -t u1 "$@"; then
    ok=0
    echo "--- $label: caller failed" >&2
    cat "$dir"/*_errors.log >&2 2>/dev/null || tail -n 20 "$dir/sipp.out" >&2
  fi
  for c in "${CALLEES[@]}"; do
    local pid=${c%%:*} cdir=${c#*:}
    if ! wait "$pid"; then
      ok=0
      echo "--- $label: callee $(basename "$cdir") failed" >&2
      cat "$cdir"/*_errors.log >&2 2>/dev/null || tail -n 20 "$cdir/sipp.out" >&2
    fi
  done
  CALLEES=()
  if [ $ok = 1 ]; then
    PASS=$((PASS + 1))
    RESULTS+=("PASS  $label")
  else
    FAIL=$((FAIL + 1))
    RESULTS+=("FAIL  $label")
  fi
}

# 1. A call with Record-Route: the ACK and the BYE reach the callee through the proxy.
register 5200 carol 5211
callee uas_answer 5211
case_run "call with Record-Route, ACK and BYE through the proxy" 5200 uac_call -s carol

# 2. Two contacts: 486 and 200 -> the caller gets the 200.
register 5200 bob1 5211
register 5200 bob1 5212
callee uas_busy 5211
callee uas_answer 5212
case_run "fork: 486 and 200, caller gets 200" 5200 uac_call -s bob1

# 3. Two contacts: one rings only, the other answers -> the ringing one is CANCELled (487).
register 5200 bob2 5211
register 5200 bob2 5212
callee uas_ring_cancel 5211
callee uas_answer 5212
case_run "fork: 200 and ringing, ringing one CANCELled, one 200" 5200 uac_call -s bob2

# 4. Both ring, the caller CANCELs -> both CANCELled, the caller gets 487.
register 5200 bob3 5211
register 5200 bob3 5212
callee uas_ring_cancel 5211
callee uas_ring_cancel 5212
case_run "fork: caller CANCELs while both ring, both CANCELled, 487" 5200 uac_cancel -s bob3

# 5. MESSAGE to a registered user, and to an unknown one.
register 5200 dora 5211
callee uas_message 5211
case_run "MESSAGE to a registered user" 5200 uac_message -s dora
case_run "MESSAGE to an unknown user: 404" 5200 uac_message_404 -s nobody

# 6. A 407 challenge answered: alice calls erin through the authenticating proxy.
register 5202 erin 5213 -au erin -ap secret
callee uas_answer 5213
# SIPp puts sip:REMOTE_IP:PORT in the digest uri unless told the Request-URI.
case_run "407 challenge answered, call completes" 5202 uac_call_auth -s erin -key caller alice \
  -au alice -ap secret -auth_uri erin@localhost

echo
printf '%s\n' "${RESULTS[@]}"
echo "sipp-proxy: $PASS passed, $FAIL failed"
if [ "$FAIL" -gt 0 ]; then
  echo "--- proxy logs (tail)" >&2
  tail -n 30 "$WORK/open.log" "$WORK/auth.log" >&2
  exit 1
fi
