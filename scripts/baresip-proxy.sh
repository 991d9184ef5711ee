#!/usr/bin/env bash
# baresip calls baresip through the example proxy (issue 13), both registered with passwords:
# bob answers automatically, alice dials sip:bob@localhost, answers the proxy's 407 with her
# password, the call is established (RTP flows between them), and when alice quits her BYE
# reaches bob along Record-Route. Loopback only, bounded in time; fails when baresip is missing.
#
#   scripts/baresip-proxy.sh            # builds `--release --example proxy` first
#   PROXY_BIN=path scripts/baresip-proxy.sh
#
# Ports: proxy 5140 (UDP+TCP), alice 5151, bob 5161 (baresip also binds the next port for TLS).
# baresip 1.0 only answers MD5 challenges, so the proxy runs with `--algorithms md5`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v baresip >/dev/null 2>&1; then
  echo "baresip-proxy: baresip not found (apt-get install baresip-core)" >&2
  exit 1
fi
MODULES="${BARESIP_MODULES:-/usr/lib/baresip/modules}"
for m in account menu g711 aubridge; do
  if [ ! -f "$MODULES/$m.so" ]; then
    echo "baresip-proxy: no $MODULES/$m.so (set BARESIP_MODULES)" >&2
    exit 1
  fi
done

BIN="${PROXY_BIN:-target/release/examples/proxy}"
if [ -z "${PROXY_BIN:-}" ]; then
  cargo build --release --example proxy
fi

PORT=5140
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

printf 'alice:localhost:secret\nbob:localhost:secret\n' >"$WORK/users.txt"
# Headless: G.711 and an in-process audio bridge instead of sound devices; menu for /dial.
for ua in alice bob; do
  mkdir -p "$WORK/$ua"
  port=5151
  [ "$ua" = bob ] && port=5161
  {
    printf 'poll_method\t\tepoll\n'
    printf 'sip_listen\t\t127.0.0.1:%s\n' "$port"
    printf 'module_path\t\t%s\n' "$MODULES"
    printf 'module\t\t\t%s\n' g711.so aubridge.so menu.so
    printf 'module_app\t\taccount.so\n'
    printf '%s\t\taubridge,%s\n' audio_player "$ua" audio_source "$ua" audio_alert "$ua"
  } >"$WORK/$ua/config"
done
echo "<sip:alice@localhost;transport=udp>;auth_pass=secret;outbound=\"sip:127.0.0.1:$PORT;transport=udp\";regint=300" \
  >"$WORK/alice/accounts"
echo "<sip:bob@localhost;transport=udp>;auth_pass=secret;outbound=\"sip:127.0.0.1:$PORT;transport=udp\";regint=300;answermode=auto" \
  >"$WORK/bob/accounts"

LOG="$WORK/proxy.log"
timeout 120 "$BIN" --udp "127.0.0.1:$PORT" --tcp "127.0.0.1:$PORT" --realm localhost \
  --users "$WORK/users.txt" --algorithms md5 --stats 1 >"$LOG" 2>&1 &
PIDS+=($!)

plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
# wait_for FILE PATTERN SECONDS
wait_for() {
  local deadline=$((SECONDS + $3))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if plain "$1" | grep -qE -- "$2"; then return 0; fi
    sleep 0.2
  done
  return 1
}
PASS=0
FAIL=0
RESULTS=()
check() { # LABEL FILE PATTERN SECONDS
  if wait_for "$2" "$3" "$4"; then
    PASS=$((PASS + 1))
    RESULTS+=("PASS  $1")
  else
    FAIL=$((FAIL + 1))
    RESULTS+=("FAIL  $1")
  fi
}

wait_for "$LOG" "listening transport=TCP" 10 || { cat "$LOG" >&2; echo "proxy did not start" >&2; exit 1; }

baresip -f "$WORK/bob" -t 20 >"$WORK/bob.out" 2>&1 &
PIDS+=($!)
check "bob registers with digest" "$LOG" "registered aor=sip:bob@localhost" 10
baresip -f "$WORK/alice" -t 6 -e "/dial sip:bob@localhost" >"$WORK/alice.out" 2>&1 &
ALICE=$!
PIDS+=($ALICE)
check "alice registers with digest" "$LOG" "registered aor=sip:alice@localhost" 10
check "bob answers alice's call (auto answer)" "$WORK/bob.out" "answering call .* from sip:alice@localhost with 200" 10
check "alice: call established (her INVITE answered the 407)" "$WORK/alice.out" "Call established: sip:bob@localhost" 10
check "proxy: 407 challenge sent and answered" "$LOG" "auth_challenges=[1-9][0-9]* authenticated=[1-9]" 10
wait "$ALICE" 2>/dev/null || true
check "alice quits: her BYE reaches bob through the proxy" "$WORK/bob.out" "Call with sip:alice@localhost terminated" 10

echo
echo "=== baresip through the proxy"
printf '  %s\n' "${RESULTS[@]}"
echo "  passed $PASS, failed $FAIL"
if [ "$FAIL" -ne 0 ]; then
  echo "--- proxy log" >&2
  plain "$LOG" | grep -v " stats " >&2
  echo "--- alice" >&2
  tail -n 30 "$WORK/alice.out" >&2
  echo "--- bob" >&2
  tail -n 30 "$WORK/bob.out" >&2
fi
[ "$FAIL" -eq 0 ]
