#!/usr/bin/env bash
# baresip (Debian package) registers to the example registrar with a password over UDP and over
# TCP; the registrar logs both bindings. Then baresip is killed (SIGKILL: no un-REGISTER, the
# kernel just closes its TCP connection) and the TCP binding must go at once ("flow closed")
# while the UDP one stays; a second, graceful baresip run must unregister both. Loopback only,
# bounded in time; fails when baresip is missing.
#
#   scripts/baresip-registrar.sh        # builds `--release --example registrar` first
#   REGISTRAR_BIN=path scripts/baresip-registrar.sh
#
# Ports: registrar 5096 (UDP+TCP), baresip 5110. baresip 1.0 (libre) gives up on a 401 whose
# first challenge is SHA-256 ("Register: Function not implemented") even when MD5 is offered
# second (libre answers every challenge and fails on any it cannot do, whatever the order),
# so the registrar runs with `--algorithms md5` here.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v baresip >/dev/null 2>&1; then
  echo "baresip-registrar: baresip not found (apt-get install baresip-core)" >&2
  exit 1
fi
MODULES="${BARESIP_MODULES:-/usr/lib/baresip/modules}"
if [ ! -f "$MODULES/account.so" ]; then
  echo "baresip-registrar: no $MODULES/account.so (set BARESIP_MODULES)" >&2
  exit 1
fi

BIN="${REGISTRAR_BIN:-target/release/examples/registrar}"
if [ -z "${REGISTRAR_BIN:-}" ]; then
  cargo build --release --example registrar
fi

PORT=5096
UA_PORT=5110
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  # SIGTERM: `timeout` passes it on to the registrar it runs.
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

printf 'alice:localhost:secret\nbob:localhost:secret\n' >"$WORK/users.txt"
mkdir -p "$WORK/baresip"
# Minimal headless configuration: no audio or video device, no UI; the account module reads
# the accounts file.
cat >"$WORK/baresip/config" <<EOF
poll_method		epoll
sip_listen		127.0.0.1:$UA_PORT
module_path		$MODULES
module_app		account.so
EOF
cat >"$WORK/baresip/accounts" <<EOF
<sip:alice@localhost;transport=udp>;auth_pass=secret;outbound="sip:127.0.0.1:$PORT;transport=udp";regint=300
<sip:bob@localhost;transport=tcp>;auth_pass=secret;outbound="sip:127.0.0.1:$PORT;transport=tcp";regint=300
EOF

LOG="$WORK/registrar.log"
timeout 120 "$BIN" --udp "127.0.0.1:$PORT" --tcp "127.0.0.1:$PORT" --users "$WORK/users.txt" \
  --algorithms md5 --stats 1 >"$LOG" 2>&1 &
PIDS+=($!)

PASS=0
FAIL=0
RESULTS=()
ok() { PASS=$((PASS + 1)); RESULTS+=("PASS  $1"); }
ko() { FAIL=$((FAIL + 1)); RESULTS+=("FAIL  $1"); }
# The registrar's log without colours.
plain() { sed 's/\x1b\[[0-9;]*m//g' "$LOG"; }
# wait_for PATTERN SECONDS: until the registrar's log matches.
wait_for() {
  local deadline=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if plain | grep -qE -- "$1"; then return 0; fi
    sleep 0.2
  done
  return 1
}
count() { plain | grep -cE -- "$1" || true; }
# wait_stats N SECONDS: until the latest counters line shows N bindings.
wait_stats() {
  local deadline=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if plain | grep " stats " | tail -n 1 | grep -q " bindings=$1 "; then return 0; fi
    sleep 0.2
  done
  return 1
}

if ! wait_for "listening transport=TCP" 10; then
  cat "$LOG" >&2
  echo "registrar did not start" >&2
  exit 1
fi

# 1. baresip registers both accounts, then vanishes.
# Not under `timeout`: the SIGKILL below must reach baresip itself (-t bounds it).
baresip -f "$WORK/baresip" -t 50 >"$WORK/baresip-1.out" 2>&1 &
UA=$!
PIDS+=($UA)
if wait_for "registered aor=sip:alice@localhost contact=sip:alice-[^ ]*@127.0.0.1:$UA_PORT .*flow=UDP" 10; then
  ok "baresip registers alice over UDP with digest (registrar logs the binding)"
else
  ko "baresip registers alice over UDP with digest (registrar logs the binding)"
fi
if wait_for "registered aor=sip:bob@localhost contact=sip:bob-[^ ]*;transport=tcp .*flow=TCP" 10; then
  ok "baresip registers bob over TCP with digest (registrar logs the binding)"
else
  ko "baresip registers bob over TCP with digest (registrar logs the binding)"
fi
if grep -q "alice@localhost: {0/UDP/v4} 200 OK" "$WORK/baresip-1.out" &&
  grep -q "bob@localhost: {0/TCP/v4} 200 OK" "$WORK/baresip-1.out"; then
  ok "baresip reports 200 OK for both accounts"
else
  ko "baresip reports 200 OK for both accounts"
fi
if wait_stats 2 5; then ok "counters: bindings=2"; else ko "counters: bindings=2"; fi

kill -9 "$UA" 2>/dev/null || true
wait "$UA" 2>/dev/null || true
if wait_for "flow closed: binding offline aor=sip:bob@localhost" 5; then
  ok "baresip killed: its TCP flow closed, bob's binding removed"
else
  ko "baresip killed: its TCP flow closed, bob's binding removed"
fi
if [ "$(count 'unregistered aor=sip:bob@localhost')" -eq 0 ]; then
  ok "(bob was not unregistered by baresip: removal came from the flow)"
else
  ko "(bob was not unregistered by baresip: removal came from the flow)"
fi
if wait_stats 1 5; then
  ok "counters after the kill: bindings=1 (alice over UDP stays until it expires)"
else
  ko "counters after the kill: bindings=1 (alice over UDP stays until it expires)"
fi

# 2. A graceful run: baresip re-registers both, and on quit (-t) unregisters both.
timeout 30 baresip -f "$WORK/baresip" -t 3 >"$WORK/baresip-2.out" 2>&1 || true
if [ "$(count 'unregistered aor=sip:alice@localhost')" -ge 1 ] &&
  [ "$(count 'unregistered aor=sip:bob@localhost')" -ge 1 ]; then
  ok "baresip quits: both bindings unregistered"
else
  ko "baresip quits: both bindings unregistered"
fi
# baresip's contact user changes per run, so alice's UDP binding from the killed run is another
# contact: it stays until it expires (or an OPTIONS probe finds it dead, with --probe).
if wait_stats 1 5; then
  ok "counters: bindings=1 (only the killed run's UDP contact is left)"
else
  ko "counters: bindings=1 (only the killed run's UDP contact is left)"
fi

echo
echo "=== baresip registrar test"
printf '  %s\n' "${RESULTS[@]}"
echo "  passed $PASS, failed $FAIL"
if [ "$FAIL" -ne 0 ]; then
  echo "--- registrar log" >&2
  plain | grep -v " stats " >&2
  echo "--- baresip output" >&2
  cat "$WORK"/baresip-*.out >&2
fi
[ "$FAIL" -eq 0 ]
