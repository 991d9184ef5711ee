#!/usr/bin/env bash
# IM broker load through `proxy --presence` (issue 14): 1000 subscribers over 10 im topics
# (examples/presence_load.rs, 10 watcher endpoints of 100 subscriptions), then MESSAGEs
# published round-robin to the topics at a fixed rate, each fanned out to the topic's 100
# subscribers. Prints NOTIFYs/s, the p50/p99/max delivery latency (MESSAGE sent -> NOTIFY
# received), the server's RSS growth per subscription, and its own heap count per
# subscription (EventServer::subscription_bytes, from its stats line). Loopback only
# (127.0.0.5 server, 127.0.0.6 clients); bounded: SECS of publishing plus a 5 s drain.
#
#   scripts/load-presence.sh                     # SUBSCRIBERS=1000 TOPICS=10 RATE=20 SECS=10
#   RATE=50 SECS=20 scripts/load-presence.sh
#   QUICK=1 scripts/load-presence.sh             # CI: RATE=10 SECS=3; exits 1 below 99.9 %
set -euo pipefail
cd "$(dirname "$0")/.."

SUBSCRIBERS="${SUBSCRIBERS:-1000}"
TOPICS="${TOPICS:-10}"
if [ "${QUICK:-0}" = 1 ]; then
  RATE="${RATE:-10}"
  SECS="${SECS:-3}"
else
  RATE="${RATE:-20}"
  SECS="${SECS:-10}"
fi
ADDR=127.0.0.5:5290

if [ -z "${PROXY_BIN:-}" ]; then
  cargo build --release --example proxy --example presence_load
fi
BIN="${PROXY_BIN:-target/release/examples/proxy}"
LOAD="${LOAD_BIN:-target/release/examples/presence_load}"

WORK="$(mktemp -d)"
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

"$BIN" --udp "$ADDR" --realm localhost --open --presence --stats 1 \
  >"$WORK/proxy.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
  if grep -q "listening" "$WORK/proxy.log" 2>/dev/null; then break; fi
  sleep 0.1
done

status=0
timeout $((SECS + 120)) "$LOAD" --server "$ADDR" --pid "$PID" --subscribers "$SUBSCRIBERS" \
  --topics "$TOPICS" --rate "$RATE" --secs "$SECS" --local 127.0.0.6 || status=$?
# The server's own count, from its last stats line while the subscriptions were live.
sed 's/\x1b\[[0-9;]*m//g' "$WORK/proxy.log" | grep "event stats" \
  | grep -o "subscriptions=$SUBSCRIBERS .*heap_bytes_per_subscription=[0-9]*" | tail -n 1 \
  | sed 's/.*heap_bytes_per_subscription=/server heap bytes per subscription (EventServer::subscription_bytes): /' || true
exit "$status"
