#!/usr/bin/env bash
# baresip (Debian package) and the `ua` example call each other on loopback:
#
#   1. baresip dials `ua --answer`: the ua answers (200 with SDP), baresip reports the call
#      established, and when baresip quits (-t) its BYE ends the call on the ua
#      ("ended" RemoteBye).
#   2. `ua --call` dials baresip (account with answermode=auto): baresip answers, the ua hangs
#      up after 2 s and exits 0.
#
# No audio device: baresip's source is a sine (ausine), its player a file sink (aufile).
# Bounded in time; fails when baresip or its modules are missing. Logs: $BARESIP_OUT
# (default /tmp/baresip-ua). Ports: ua 16170, baresip 16180.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v baresip >/dev/null 2>&1; then
  echo "baresip-ua: baresip not found (apt-get install baresip-core)" >&2
  exit 1
fi
MODULES="${BARESIP_MODULES:-/usr/lib/baresip/modules}"
for m in account menu g711 ausine aufile; do
  if [ ! -f "$MODULES/$m.so" ]; then
    echo "baresip-ua: no $MODULES/$m.so (set BARESIP_MODULES)" >&2
    exit 1
  fi
done

BIN="${UA_BIN:-target/release/examples/ua}"
if [ -z "${UA_BIN:-}" ]; then
  cargo build --release --example ua
fi

IP=127.0.0.1
UA_PORT=16170
BS_PORT=16180
OUT="${BARESIP_OUT:-/tmp/baresip-ua}"
rm -rf "$OUT"
mkdir -p "$OUT/baresip"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASS=0
FAIL=0
RESULTS=()
ok() { PASS=$((PASS + 1)); RESULTS+=("PASS  $1"); }
ko() { FAIL=$((FAIL + 1)); RESULTS+=("FAIL  $1"); }
wait_for() {
  local file=$1 pattern=$2 secs=$3 deadline=$((SECONDS + $3))
  while [ "$SECONDS" -lt "$deadline" ]; do
    grep -qE -- "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

cat >"$OUT/baresip/config" <<EOF
poll_method		epoll
sip_listen		$IP:$BS_PORT
module_path		$MODULES
module			g711.so
module			ausine.so
module			aufile.so
module_app		account.so
module_app		menu.so
audio_source		ausine,440
audio_player		aufile,$OUT/baresip/played.wav
audio_alert		aufile,$OUT/baresip/alert.wav
ausrc_srate		48000
auplay_srate		48000
ausrc_channels		2
auplay_channels		2
EOF
# No registration (regint=0); calls are answered at once.
cat >"$OUT/baresip/accounts" <<EOF
<sip:carol@$IP:$BS_PORT>;regint=0;answermode=auto;audio_codecs=PCMU
EOF

# 1. baresip -> ua --answer
"$BIN" --bind "$IP:$UA_PORT" --aor sip:bob@example.com --answer --json >"$OUT/answer.ua.log" 2>&1 &
UA=$!
PIDS+=("$UA")
wait_for "$OUT/answer.ua.log" '"started"' 10 || true
timeout 30 baresip -f "$OUT/baresip" -t 6 -e "/dial sip:bob@$IP:$UA_PORT" \
  >"$OUT/baresip-dial.out" 2>&1 || true
if wait_for "$OUT/answer.ua.log" '"event":"answered"' 5; then
  ok "baresip -> ua: the ua answered"
else
  ko "baresip -> ua: the ua answered"
fi
if grep -qiE "established" "$OUT/baresip-dial.out"; then
  ok "baresip -> ua: baresip reports the call established"
else
  ko "baresip -> ua: baresip reports the call established"
fi
if wait_for "$OUT/answer.ua.log" '"cause":"RemoteBye"' 5; then
  ok "baresip -> ua: baresip's BYE ended the call on the ua"
else
  ko "baresip -> ua: baresip's BYE ended the call on the ua"
fi
kill -TERM "$UA" 2>/dev/null || true
wait "$UA" 2>/dev/null || true

# 2. ua --call -> baresip
baresip -f "$OUT/baresip" -t 20 >"$OUT/baresip-answer.out" 2>&1 &
BS=$!
PIDS+=("$BS")
sleep 1
RC=0
timeout 40 "$BIN" --bind "$IP:$UA_PORT" --aor sip:alice@example.com \
  --call "sip:carol@$IP:$BS_PORT" --duration 2 --json >"$OUT/call.ua.log" 2>&1 || RC=$?
if [ "$RC" = 0 ]; then
  ok "ua -> baresip: answered, hung up after 2 s, exit 0"
else
  ko "ua -> baresip: ua --call exit $RC"
fi
kill "$BS" 2>/dev/null || true
wait "$BS" 2>/dev/null || true

echo
echo "=== baresip <-> ua"
printf '  %s\n' "${RESULTS[@]}"
echo "  passed $PASS, failed $FAIL"
if [ "$FAIL" -ne 0 ]; then
  for f in "$OUT"/*.log "$OUT"/*.out; do
    echo "--- $f" >&2
    tail -n 30 "$f" >&2
  done
fi
[ "$FAIL" -eq 0 ]
