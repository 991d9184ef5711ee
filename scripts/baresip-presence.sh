#!/usr/bin/env bash
# baresip's presence module sees another baresip's status through `proxy --presence` (issue
# 14): alice and bob register; alice SUBSCRIBEs to bob's presence (Event: presence) and lists
# her contacts every second; bob PUBLISHes open (/presence_online), then closed
# (/presence_offline). Alice's list must show bob Online, then Offline: the server composed
# his PUBLISHes into PIDF and NOTIFYed her. Loopback only (127.0.0.9), bounded in time; fails
# when baresip is missing.
#
#   scripts/baresip-presence.sh            # builds `--release --example proxy` first
#   PROXY_BIN=path scripts/baresip-presence.sh
#
# baresip 1.0 publishes only with the account parameter `pubint`; its `presence=p2p` contact
# parameter makes it SUBSCRIBE (through its outbound proxy, here the server).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v baresip >/dev/null 2>&1; then
  echo "baresip-presence: baresip not found (apt-get install baresip-core)" >&2
  exit 1
fi
MODULES="${BARESIP_MODULES:-/usr/lib/baresip/modules}"
for m in account contact presence menu stdio g711; do
  [ -f "$MODULES/$m.so" ] || { echo "baresip-presence: no $MODULES/$m.so" >&2; exit 1; }
done
BIN="${PROXY_BIN:-target/release/examples/proxy}"
if [ -z "${PROXY_BIN:-}" ]; then
  cargo build --release --example proxy
fi

HOST=127.0.0.9
PORT=5480
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

# Ports: alice 5484, bob 5491 (baresip also binds the next port for TLS).
for ua in alice bob; do
  mkdir -p "$WORK/$ua"
  port=5484
  peer=bob
  [ "$ua" = bob ] && { port=5491; peer=alice; }
  {
    printf 'poll_method\t\tepoll\n'
    printf 'sip_listen\t\t%s:%s\n' "$HOST" "$port"
    printf 'module_path\t\t%s\n' "$MODULES"
    printf 'module\t\t\t%s\n' g711.so menu.so stdio.so
    printf 'module_app\t\t%s\n' account.so contact.so presence.so
  } >"$WORK/$ua/config"
  echo "<sip:$ua@localhost;transport=udp>;outbound=\"sip:$HOST:$PORT;transport=udp\";regint=300;pubint=60" \
    >"$WORK/$ua/accounts"
  echo "\"${peer^}\" <sip:$peer@localhost>;presence=p2p" >"$WORK/$ua/contacts"
done

timeout 40 "$BIN" --udp "$HOST:$PORT" --realm localhost --open --presence --stats 0 \
  >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  sed 's/\x1b\[[0-9;]*m//g' "$WORK/proxy.log" | grep -q "listening" && break
  sleep 0.1
done

# Alice lists her contacts every second; bob goes online after 4 s, offline after 10 s.
( for _ in $(seq 1 18); do sleep 1; printf '/contacts\n'; done ) |
  timeout 25 baresip -f "$WORK/alice" -t 20 >"$WORK/alice.out" 2>&1 &
PIDS+=($!)
( sleep 4; printf '/presence_online\n'; sleep 6; printf '/presence_offline\n'; sleep 6 ) |
  timeout 25 baresip -f "$WORK/bob" -t 17 >"$WORK/bob.out" 2>&1 &
PIDS+=($!)

plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
PASS=0
FAIL=0
# seen PATTERN [AFTER]: PATTERN in alice's output (after the first line matching AFTER).
seen() {
  plain "$WORK/alice.out" | awk -v p="$1" -v a="${2:-}" 'a == "" || index($0, a) { on = 1 } on && index($0, p) { f = 1 } END { exit !f }'
}
check() { # LABEL PATTERN SECONDS [AFTER]
  local deadline=$((SECONDS + $3))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if seen "$2" "${4:-}"; then
      PASS=$((PASS + 1)); echo "  PASS  $1"; return 0
    fi
    sleep 0.3
  done
  FAIL=$((FAIL + 1)); echo "  FAIL  $1"
}
echo "=== baresip presence through proxy --presence"
check "alice sees bob Online after his PUBLISH (open)" "Online Bob <sip:bob@localhost>" 15
check "then Offline after his PUBLISH (closed)" "Offline Bob <sip:bob@localhost>" 12 "Online Bob <sip:bob@localhost>"
echo "  passed $PASS, failed $FAIL"
if [ "$FAIL" -ne 0 ]; then
  echo "--- alice" >&2; plain "$WORK/alice.out" | grep -av "^$" | tail -20 >&2
  echo "--- bob" >&2; plain "$WORK/bob.out" | grep -av "^$" | tail -20 >&2
  echo "--- proxy" >&2; plain "$WORK/proxy.log" | tail -20 >&2
fi
[ "$FAIL" -eq 0 ]
