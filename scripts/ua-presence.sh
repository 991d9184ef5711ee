#!/usr/bin/env bash
# The `ua` example's subscriptions (issue 14), both roles, on loopback (127.0.0.14) only:
#
# 1. Through `proxy --presence`: alice watches bob (`ua --watch`). Bob is offline (closed),
#    registers (`ua --registrar --answer`: open, with his contact), then stops and
#    unregisters (closed). Alice then stops: her unsubscribe gets the terminating NOTIFY and
#    she exits 0.
# 2. Peer to peer: carol serves her own presence (`ua --presence open`); dave watches her
#    directly and sees open, then carol stops and dave sees the subscription terminated.
#
# Bounded in time; fails on any failure.
#
#   scripts/ua-presence.sh                          # builds the examples (release) first
#   PROXY_BIN=path UA_BIN=path scripts/ua-presence.sh
#   KEEP_LOGS=1 scripts/ua-presence.sh              # keep the logs
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY="${PROXY_BIN:-target/release/examples/proxy}"
UA="${UA_BIN:-target/release/examples/ua}"
if [ -z "${PROXY_BIN:-}" ] || [ -z "${UA_BIN:-}" ]; then
  cargo build --release --example proxy --example ua
fi

IP=127.0.0.14
PORT=5460
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

fail() {
  echo "ua-presence: $*" >&2
  for f in "$WORK"/*.log; do
    echo "--- $f" >&2
    tail -n 30 "$f" >&2
  done
  exit 1
}

# lines FILE PATTERN...: the lines of FILE that match every extended regex PATTERN (the
# JSON keys come in any order).
lines() {
  local file=$1
  shift
  local out
  out=$(cat "$file" 2>/dev/null || true)
  for p in "$@"; do out=$(grep -E -- "$p" <<<"$out" || true); done
  [ -n "$out" ] && printf '%s\n' "$out"
  return 0
}

# wait_for WHAT FILE PATTERN...: until a line of FILE matches every PATTERN (15 s).
wait_for() {
  local what=$1
  shift
  for _ in $(seq 150); do
    if [ -n "$(lines "$@")" ]; then return 0; fi
    sleep 0.1
  done
  fail "timed out waiting for $what"
}

# count FILE PATTERN...: how many lines of FILE match every PATTERN.
count() { lines "$@" | grep -c . || true; }

# stop PID: SIGTERM, then its exit status.
stop() {
  kill -TERM "$1"
  local rc=0
  wait "$1" || rc=$?
  return $rc
}

timeout 300 "$PROXY" --udp "$IP:$PORT" --realm localhost --open --presence \
  --notify-min-interval 50 --stats 0 >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
wait_for "the proxy to listen" "$WORK/proxy.log" "listening"

# 1. Through the presence server.
timeout 120 "$UA" --bind "$IP:5462" --aor sip:alice@localhost --proxy "$IP:$PORT" \
  --watch sip:bob@localhost --json >"$WORK/alice.log" 2>&1 &
ALICE=$!
PIDS+=($ALICE)
wait_for "alice to see bob closed" "$WORK/alice.log" '"event":"notify"' '"basic":"closed"'

timeout 120 "$UA" --bind "$IP:5464" --aor sip:bob@localhost --registrar "$IP:$PORT" \
  --answer --json >"$WORK/bob.log" 2>&1 &
BOB=$!
PIDS+=($BOB)
wait_for "alice to see bob open with his contact" "$WORK/alice.log" '"event":"notify"' \
  '"basic":"open"' '"contacts":\["sip:bob@127\.0\.0\.14:5464'
echo "ua-presence: alice sees bob open after his REGISTER"

closed_before=$(count "$WORK/alice.log" '"event":"notify"' '"basic":"closed"')
stop "$BOB" || fail "bob did not stop cleanly"
for _ in $(seq 150); do
  if [ "$(count "$WORK/alice.log" '"event":"notify"' '"basic":"closed"')" -gt "$closed_before" ]; then
    break
  fi
  sleep 0.1
done
[ "$(count "$WORK/alice.log" '"event":"notify"' '"basic":"closed"')" -gt "$closed_before" ] \
  || fail "alice did not see bob closed after he unregistered"
echo "ua-presence: alice sees bob closed after his unregister"

stop "$ALICE" || fail "alice's watch did not end cleanly"
[ -n "$(lines "$WORK/alice.log" '"event":"notify"' '"state":"terminated"')" ] \
  || fail "alice's unsubscribe got no terminating NOTIFY"
echo "ua-presence: alice's unsubscribe got the terminating NOTIFY"

# 2. Peer to peer: carol is her own presence notifier.
timeout 120 "$UA" --bind "$IP:5466" --aor sip:carol@localhost --presence open --json \
  >"$WORK/carol.log" 2>&1 &
CAROL=$!
PIDS+=($CAROL)
wait_for "carol to start" "$WORK/carol.log" '"event":"started"'
timeout 120 "$UA" --bind "$IP:5468" --aor sip:dave@localhost --watch "sip:carol@$IP:5466" \
  --json >"$WORK/dave.log" 2>&1 &
DAVE=$!
PIDS+=($DAVE)
wait_for "dave to see carol open" "$WORK/dave.log" '"event":"notify"' '"state":"active"' \
  '"basic":"open"'
wait_for "carol to log her watcher" "$WORK/carol.log" '"event":"watcher"' '"sip:dave@localhost"'
echo "ua-presence: dave sees carol open, peer to peer"
stop "$CAROL" || fail "carol did not stop cleanly"
wait_for "dave to see the subscription terminated when carol stops" "$WORK/dave.log" \
  '"event":"notify"' '"state":"terminated"'
echo "ua-presence: carol's stop terminates dave's subscription"
# Dave's watch ended with carol's terminating NOTIFY (not his unsubscribe): he exits 1.
rc=0
wait "$DAVE" || rc=$?
[ "$rc" = 1 ] || fail "dave exited with $rc after carol ended his subscription"

echo "ua-presence: all passed"
