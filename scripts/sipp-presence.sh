#!/usr/bin/env bash
# SIPp suite of `proxy --presence` (issue 14): presence (PUBLISH, SUBSCRIBE, NOTIFY with PIDF,
# SIP-If-Match, unsubscribe), an im topic with three subscribers and ten messages, and MESSAGE
# store-and-forward to a user who registers later. Loopback (127.0.0.3) only, bounded in time;
# fails on any failure, and when sipp is missing (install the Debian package sip-tester).
#
#   scripts/sipp-presence.sh               # builds `--release --example proxy` first
#   PROXY_BIN=path scripts/sipp-presence.sh
#   KEEP_LOGS=1 scripts/sipp-presence.sh   # keep the proxy and SIPp logs
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v sipp >/dev/null 2>&1; then
  echo "sipp-presence: sipp not found (apt-get install sip-tester)" >&2
  exit 1
fi

BIN="${PROXY_BIN:-target/release/examples/proxy}"
if [ -z "${PROXY_BIN:-}" ]; then
  cargo build --release --example proxy
fi

IP=127.0.0.3
PORT=5260
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

timeout 600 "$BIN" --udp "$IP:$PORT" --realm localhost --open --presence --stats 1 \
  >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  if grep -q "listening" "$WORK/proxy.log" 2>/dev/null; then break; fi
  if ! kill -0 "${PIDS[0]}" 2>/dev/null; then break; fi
  sleep 0.1
done
if ! grep -q "listening" "$WORK/proxy.log"; then
  echo "proxy did not start:" >&2
  cat "$WORK/proxy.log" >&2
  exit 1
fi

SCEN="$PWD/tests/sipp/presence"
PASS=0
FAIL=0
RESULTS=()
N=0
TRACE=()
if [ "${SIPP_TRACE:-0}" = 1 ]; then TRACE=(-trace_msg); fi

# sipp_bg DIR LPORT ARGS...: one bounded SIPp run in its own directory, in the background;
# its pid is in $!.
sipp_bg() {
  local dir=$1 lport=$2
  shift 2
  mkdir -p "$dir"
  (cd "$dir" && exec timeout 60 sipp -i "$IP" -p "$lport" -t u1 -m 1 -l 1 -timeout 45s \
    -timeout_error -recv_timeout 15000 -trace_err "${TRACE[@]}" -nostdin "$@" >sipp.out 2>&1) &
}

# outcome LABEL PID:DIR...: waits for every SIPp run of a case; PASS when all passed.
outcome() {
  local label=$1 ok=1
  shift
  for c in "$@"; do
    local pid=${c%%:*} dir=${c#*:}
    if ! wait "$pid"; then
      ok=0
      echo "--- $label: $(basename "$dir") failed" >&2
      cat "$dir"/*_errors.log >&2 2>/dev/null || tail -n 20 "$dir/sipp.out" >&2
    fi
  done
  if [ $ok = 1 ]; then
    PASS=$((PASS + 1))
    RESULTS+=("PASS  $label")
  else
    FAIL=$((FAIL + 1))
    RESULTS+=("FAIL  $label")
  fi
}

# 1. Presence: PUBLISH open, SUBSCRIBE (NOTIFY open), PUBLISH closed with SIP-If-Match (NOTIFY
#    closed), unsubscribe (NOTIFY terminated).
N=$((N + 1)); d="$WORK/$N-presence"
sipp_bg "$d" 5271 "$IP:$PORT" -sf "$SCEN/presence_flow.xml" -s bob
outcome "presence: PUBLISH open -> NOTIFY open; SIP-If-Match closed -> NOTIFY closed; unsubscribe -> terminated" "$!:$d"

# 2. Three subscribers on the im topic "news", then ten MESSAGEs published to it: each
#    subscriber gets all ten, in order.
subs=()
for p in 5272 5273 5274; do
  N=$((N + 1)); d="$WORK/$N-im-sub-$p"
  sipp_bg "$d" "$p" "$IP:$PORT" -sf "$SCEN/im_subscriber.xml" -s news
  subs+=("$!:$d")
done
# The publisher starts once the broker has the three subscribers (its stats line says so).
for _ in $(seq 100); do
  if sed 's/\x1b\[[0-9;]*m//g' "$WORK/proxy.log" | grep -q "event stats topics=1 subscriptions=3 "; then
    break
  fi
  sleep 0.1
done
N=$((N + 1)); d="$WORK/$N-im-pub"
sipp_bg "$d" 5275 "$IP:$PORT" -sf "$SCEN/im_publisher.xml" -s news
outcome "im: three subscribers of one topic get ten MESSAGEs, in order" "$!:$d" "${subs[@]}"

# 3. MESSAGE store-and-forward: two MESSAGEs to olga (no binding: 202 each); olga registers
#    from 5276, then takes both from 5276, oldest first (the first may be sent while the
#    REGISTER run still holds the port: its retransmission reaches the recipient).
N=$((N + 1)); d="$WORK/$N-offline-send"
sipp_bg "$d" 5277 "$IP:$PORT" -sf "$SCEN/message_offline.xml" -s olga
pre_ok=1
if ! wait "$!"; then pre_ok=0; echo "--- offline MESSAGEs not answered 202" >&2; cat "$d"/*_errors.log >&2 2>/dev/null || true; fi
N=$((N + 1)); d="$WORK/$N-olga-register"
sipp_bg "$d" 5276 "$IP:$PORT" -sf "$SCEN/register.xml" -s olga
if ! wait "$!"; then pre_ok=0; echo "--- olga's REGISTER failed" >&2; cat "$d"/*_errors.log >&2 2>/dev/null || true; fi
N=$((N + 1)); d="$WORK/$N-olga-recv"
sipp_bg "$d" 5276 -sf "$SCEN/message_recipient.xml"
label="MESSAGE to an offline user: 202, delivered oldest first after REGISTER"
if [ $pre_ok = 1 ]; then
  outcome "$label" "$!:$d"
else
  wait "$!" || true
  FAIL=$((FAIL + 1))
  RESULTS+=("FAIL  $label")
fi

echo
printf '%s\n' "${RESULTS[@]}"
echo "sipp-presence: $PASS passed, $FAIL failed"
if [ "$FAIL" -gt 0 ]; then
  echo "--- proxy log (tail)" >&2
  tail -n 40 "$WORK/proxy.log" >&2
  exit 1
fi
