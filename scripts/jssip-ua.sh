#!/usr/bin/env bash
# A browser softphone and the `ua` example exchange MESSAGEs through the example proxy (RFC 7118
# and RFC 3428, issue 16): JsSIP registers as alice over WebSocket, bob (`ua --answer`) over
# UDP; alice's MESSAGE reaches bob (200), and a MESSAGE from a third `ua` reaches alice over her
# WebSocket flow. JsSIP runs in headless Chromium (Debian's `chromium`, driven by playwright-core,
# JsSIP bundled for the browser by esbuild) when Chromium is installed, else in Node over the
# `ws` package (JSSIP_NODE=1 forces Node). Loopback only, bounded in time; the npm packages
# (pinned) go into a temporary folder.
#
#   scripts/jssip-ua.sh            # builds the proxy and ua examples first
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "jssip-ua: node and npm needed (apt-get install nodejs npm)" >&2
  exit 1
fi
cargo build --release --example proxy --example ua
PROXY=target/release/examples/proxy
UA=target/release/examples/ua

UDP=127.0.0.1:5391
WS=127.0.0.1:5392
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

CHROMIUM="$(command -v chromium || true)"
[ "${JSSIP_NODE:-0}" = 1 ] && CHROMIUM=""
if [ -n "$CHROMIUM" ]; then
  (cd "$WORK" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent \
    jssip@3.13.8 playwright-core@1.64.1 esbuild@0.25.10)
  (cd "$WORK" && npx esbuild node_modules/jssip/lib/JsSIP.js --bundle --format=iife \
    --global-name=JsSIP --log-level=warning --outfile=jssip.js)
  cp tests/browser/message.mjs "$WORK/"
  RUNNER=(node message.mjs "$CHROMIUM" jssip.js)
  WHO=browser
else
  (cd "$WORK" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent jssip@3.13.8 ws@8.23.0)
  cp tests/jssip/message.js "$WORK/"
  RUNNER=(node message.js)
  WHO=jssip
fi

RUST_LOG=info timeout 90 "$PROXY" --udp "$UDP" --ws "$WS" --realm example.com --open --stats 0 \
  >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  sed 's/\x1b\[[0-9;]*m//g' "$WORK/proxy.log" | grep -q "transport=WS" && break
  sleep 0.1
done

timeout 80 "$UA" --bind 127.0.0.1:5393 --aor sip:bob@example.com --registrar "$UDP" --answer \
  --json >"$WORK/bob.json" 2>"$WORK/bob.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
  grep -q "Registered" "$WORK/bob.json" 2>/dev/null && break
  sleep 0.1
done
grep -q "Registered" "$WORK/bob.json" || { echo "jssip-ua: bob did not register" >&2; cat "$WORK/bob.log" >&2; exit 1; }

TEXT="hello alice from ua"
(cd "$WORK" && timeout 60 "${RUNNER[@]}" "ws://$WS" "$TEXT" >"$WORK/jssip.out" 2>&1) &
NODE=$!
PIDS+=($NODE)
for _ in $(seq 1 400); do
  grep -q "$WHO: ready" "$WORK/jssip.out" 2>/dev/null && break
  kill -0 "$NODE" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "$WHO: ready" "$WORK/jssip.out"; then
  echo "jssip-ua: JsSIP did not register or its MESSAGE to bob failed" >&2
  cat "$WORK/jssip.out" >&2
  sed 's/\x1b\[[0-9;]*m//g' "$WORK/proxy.log" | tail -20 >&2
  exit 1
fi
timeout 20 "$UA" --bind 127.0.0.1:5394 --aor sip:carol@example.com --proxy "$UDP" \
  --message sip:alice@example.com --text "$TEXT" --json >"$WORK/carol.json" 2>"$WORK/carol.log" ||
  { echo "jssip-ua: carol's MESSAGE to alice failed" >&2; cat "$WORK/carol.json" "$WORK/carol.log" >&2; exit 1; }
if ! wait "$NODE"; then
  echo "jssip-ua: JsSIP did not get carol's MESSAGE" >&2
  cat "$WORK/jssip.out" >&2
  exit 1
fi
cat "$WORK/jssip.out"
grep -q '"hello bob from \(JsSIP\|Chromium\)"' "$WORK/bob.json" ||
  { echo "jssip-ua: bob did not log alice's MESSAGE" >&2; cat "$WORK/bob.json" >&2; exit 1; }
echo "jssip-ua: JsSIP ($WHO) over WebSocket <-> ua over UDP, MESSAGE both ways through the proxy"
echo "2 passed, 0 failed"
