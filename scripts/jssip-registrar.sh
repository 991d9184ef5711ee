#!/usr/bin/env bash
# JsSIP, the browser softphone library, registers to the example registrar over SIP over
# WebSocket (RFC 7118), in Node with the `ws` package as its WebSocket (no browser runs here):
# 200 to its REGISTER, 415 to a MESSAGE on the same socket (the registrar takes only GB28181
# keepalives), then it exits without unregistering and the registrar must drop the binding when
# the socket closes.
# Loopback only, bounded in time. Installs jssip and ws from the npm registry into a temporary
# folder (pinned versions).
#
#   scripts/jssip-registrar.sh        # builds `--release --example registrar` first
#   REGISTRAR_BIN=path scripts/jssip-registrar.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "jssip-registrar: node and npm needed (apt-get install nodejs npm)" >&2
  exit 1
fi
BIN="${REGISTRAR_BIN:-target/release/examples/registrar}"
if [ -z "${REGISTRAR_BIN:-}" ]; then
  cargo build --release --example registrar
fi

WS_PORT=5097
UDP_PORT=5098
WORK="$(mktemp -d)"
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$WORK" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent jssip@3.13.8 ws@8.23.0)
cp tests/jssip/register.js "$WORK/"

RUST_LOG=info timeout 60 "$BIN" --ws "127.0.0.1:$WS_PORT" --udp "127.0.0.1:$UDP_PORT" --open \
  --stats 0 >"$WORK/registrar.log" 2>&1 &
PID=$!
# Ready when the WebSocket listener is logged.
for _ in $(seq 1 100); do
  sed 's/\x1b\[[0-9;]*m//g' "$WORK/registrar.log" | grep -q "transport=WS" && break
  sleep 0.1
done

(cd "$WORK" && timeout 20 node register.js "ws://127.0.0.1:$WS_PORT")
# The registrar handles the close right after the socket goes; give it a bounded moment.
for _ in $(seq 1 50); do
  grep -q "flow closed: binding offline" "$WORK/registrar.log" && break
  sleep 0.1
done
if ! grep -q "flow closed: binding offline" "$WORK/registrar.log"; then
  echo "jssip-registrar: the binding was not dropped when the WebSocket closed" >&2
  sed 's/\x1b\[[0-9;]*m//g' "$WORK/registrar.log" | tail -20 >&2
  exit 1
fi
echo "jssip-registrar: registered over WS, MESSAGE answered on the socket, binding dropped on close"
echo "3 passed, 0 failed"
