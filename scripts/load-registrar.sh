#!/usr/bin/env bash
# REGISTER load on the example registrar with SIPp over UDP loopback (issue 6): without and with
# digest, at stepped rates, each step bounded in count (rate x SECS calls) and time; prints per
# step the success ratio, the rate reached and the registrar's CPU time per successful
# registration (utime+stime of the process from /proc, before/after the step), then the highest
# rate with >= 99 % success. With Kamailio installed (5.6, `apt-get install kamailio`) it runs the
# same steps against Kamailio as a plain registrar (scripts/load/kamailio-registrar.cfg) too.
#
#   scripts/load-registrar.sh                       # RATES="2000 5000 10000 15000 20000 30000"
#   RATES="1000 2000" SECS=3 scripts/load-registrar.sh
#   KAMAILIO=0 scripts/load-registrar.sh            # skip Kamailio (default: when installed)
#   WORKERS=2 scripts/load-registrar.sh             # the registrar's --workers (default: cores)
#   OURS_ARGS=--no-inline scripts/load-registrar.sh # more flags for the registrar
#   SIPP_T=un WORKERS=2 scripts/load-registrar.sh    # SIPp on 16 source ports: both workers busy
#   OURS_LOG=info scripts/load-registrar.sh         # the registrar logging each new binding
#   MODES=noauth scripts/load-registrar.sh          # only the open registrar (or MODES=digest)
#   QUICK=1 scripts/load-registrar.sh               # smoke: 500 and 1000/s for 2 s, no Kamailio;
#                                                   # exits 1 when a step fails (CI smoke)
#
# Every call registers its own AOR (u1..uN from an injection file, the same users in the
# registrar's users file). A step passes with >= 99 % successful calls and >= 85 % of the
# offered rate actually reached (SIPp shares the 2 cores: past some rate it cannot offer more).
# Stepping stops at the first failing step. Not for CI: minutes long and load-dependent.
# The registrar runs with --max-transactions $MAX_TXNS (default 2 000 000, ~3 GB at worst):
# with the endpoint's default cap of 100 000, UDP REGISTERs are answered 503 beyond about
# 3 125/s sustained (1 560/s with digest) because answered transactions live 32 s (Timer J).
set -euo pipefail
cd "$(dirname "$0")/.."
# cpu_ticks, rss_kib
. scripts/lib/proc.sh

command -v sipp >/dev/null 2>&1 || { echo "load-registrar: sipp not found (apt-get install sip-tester)" >&2; exit 1; }

if [ "${QUICK:-0}" = 1 ]; then
  RATES="${RATES:-500 1000}"
  SECS="${SECS:-2}"
  KAMAILIO="${KAMAILIO:-0}"
else
  RATES="${RATES:-2000 5000 10000 15000 20000 30000}"
  SECS="${SECS:-5}"
fi
if [ -z "${KAMAILIO:-}" ]; then
  if command -v kamailio >/dev/null 2>&1; then KAMAILIO=1; else KAMAILIO=0; fi
fi
PORT=5098      # the example registrar (UDP)
MAX_TXNS="${MAX_TXNS:-2000000}"  # its transaction table (the default 100 000 holds 3 125/s)
KAM_PORT=5099  # Kamailio (UDP)
SIPP_PORT=5120

BIN="${REGISTRAR_BIN:-target/release/examples/registrar}"
if [ -z "${REGISTRAR_BIN:-}" ]; then
  cargo build --release --example registrar
fi

WORK="$(mktemp -d)"
SERVER_PID=""
SERVER_KIND=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
cleanup() {
  stop_server
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

max_rate=0
for r in $RATES; do [ "$r" -gt "$max_rate" ] && max_rate=$r; done
NUSERS=$((max_rate * SECS))
# The injection file: user; the [authentication] keyword for that user (SIPp 3.6 cannot nest
# [field0] inside [authentication ...], but it expands a field holding the whole keyword).
awk -v n="$NUSERS" 'BEGIN { print "SEQUENTIAL"; for (i = 1; i <= n; i++) printf "u%d;[authentication username=u%d password=pw]\n", i, i }' >"$WORK/users.csv"
awk -v n="$NUSERS" 'BEGIN { for (i = 1; i <= n; i++) printf "u%d:localhost:pw\n", i }' >"$WORK/users.txt"

reg_headers='      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[field0]@localhost>;tag=[pid]T[call_number]
      To: <sip:[field0]@localhost>
      Call-ID: [call_id]'
reg_tail='      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0'
# The Request-URI is sip:[remote_ip]:[remote_port]: SIPp puts that in the digest uri=.
cat >"$WORK/noauth.xml" <<EOF
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER load, no auth">
  <send retrans="500"><![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
$reg_headers
      CSeq: 1 REGISTER
$reg_tail

  ]]></send>
  <recv response="200"/>
</scenario>
EOF
cat >"$WORK/digest.xml" <<EOF
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER load, digest">
  <send retrans="500"><![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
$reg_headers
      CSeq: 1 REGISTER
$reg_tail

  ]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
$reg_headers
      CSeq: 2 REGISTER
      [field1]
$reg_tail

  ]]></send>
  <recv response="200"/>
</scenario>
EOF


start_ours() {  # $1: noauth|digest
  local extra=()
  if [ "$1" = digest ]; then extra=(--users "$WORK/users.txt" --algorithms md5); fi
  # Every UDP server transaction stays 32 s (Timer J) after its answer: the table must hold
  # rate x 32 s of them (x 2 with digest), or the endpoint answers 503 once it is full.
  # WORKERS=N passes --workers N (run-to-completion worker threads sharing the UDP port).
  if [ -n "${WORKERS:-}" ]; then extra+=(--workers "$WORKERS"); fi
  # OURS_ARGS: more registrar flags (e.g. --no-inline, the long way through the driver).
  # shellcheck disable=SC2206
  extra+=(${OURS_ARGS:-})
  # Logging as Kamailio's debug=0 logs: warnings and errors, no line per request. (The
  # registrar logs each new binding at info; every REGISTER here is a new binding, which
  # costs about a fifth of its instructions. OURS_LOG=info measures that.)
  RUST_LOG="${OURS_LOG:-warn,registrar=info}" \
    "$BIN" --udp "127.0.0.1:$PORT" --stats 0 --max-transactions "$MAX_TXNS" "${extra[@]}" \
    >"$WORK/registrar-$1.log" 2>&1 &
  SERVER_PID=$!
  SERVER_KIND="sip-stack"
  TARGET_PORT=$PORT
  for _ in $(seq 50); do
    grep -q "listening" "$WORK/registrar-$1.log" && return 0
    sleep 0.1
  done
  cat "$WORK/registrar-$1.log" >&2
  return 1
}

start_kamailio() {  # $1: noauth|digest
  local extra=()
  if [ "$1" = digest ]; then extra=(-A WITH_AUTH); fi
  mkdir -p "$WORK/kamrun"
  # -DD: the creator stays in the foreground (its workers are its children); killing it ends all.
  # Tuned as operators run it (-m 2048 -x tlsf): its default allocator is several times slower
  # and would flatter us.
  kamailio -f scripts/load/kamailio-registrar.cfg "${extra[@]}" -l "udp:127.0.0.1:$KAM_PORT" \
    -DD -E -m 2048 -M 32 -x tlsf -Y "$WORK/kamrun" -P "$WORK/kamrun/kamailio.pid" \
    >"$WORK/kamailio-$1.log" 2>&1 &
  SERVER_PID=$!
  SERVER_KIND="kamailio"
  TARGET_PORT=$KAM_PORT
  sleep 1.5
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/kamailio-$1.log" >&2; return 1; }
}

# SIPp's transport: u1 (one socket: every REGISTER from one source port, so the kernel hands
# them all to one SO_REUSEPORT worker) or un (SIPP_T=un: calls spread over SIPP_SOCKETS
# sockets, i.e. source ports, which the kernel spreads over the workers).
SIPP_T="${SIPP_T:-u1}"
SIPP_SOCKETS=()
if [ "$SIPP_T" = un ]; then SIPP_SOCKETS=(-max_socket "${SIPP_SOCKETS_N:-16}"); fi
SUMMARY=()
FAILED_STEP=0
# steps KIND MODE: runs the rates; appends the summary line.
steps() {
  local kind=$1 mode=$2 best=0 best_cpu="-" rate m before after t0 t1 succ fail out
  echo
  echo "=== $kind, REGISTER $mode (UDP, $SECS s per step)"
  printf '  %8s %9s %9s %8s %9s %12s %12s\n' offered calls ok% reached "cpu s" "us/call" "sipp cpu s"
  for rate in $RATES; do
    m=$((rate * SECS))
    out="$WORK/$kind-$mode-$rate"
    mkdir -p "$out"
    before=$(cpu_ticks "$SERVER_PID")
    t0=$(date +%s.%N)
    (cd "$out" && /usr/bin/time -f "%U %S" -o sipp.time \
      timeout $((SECS * 4 + 30)) sipp "127.0.0.1:$TARGET_PORT" -sf "$WORK/$mode.xml" \
      -inf "$WORK/users.csv" -i 127.0.0.1 -p "$SIPP_PORT" -t "$SIPP_T" "${SIPP_SOCKETS[@]}" \
      -r "$rate" -rp 1000 -m "$m" -l $((rate * 2)) \
      -timeout $((SECS * 4 + 20))s -recv_timeout 5000 -max_recv_loops 10000 -max_sched_loops 10000 \
      -buff_size 4194304 -nostdin -trace_stat -stf stat.csv -fd 3600 >sipp.out 2>&1) || true
    t1=$(date +%s.%N)
    after=$(cpu_ticks "$SERVER_PID")
    # The last line of the statistics file: cumulative successful and failed calls.
    read -r succ fail < <(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "SuccessfulCall(C)") s = i; if ($i == "FailedCall(C)") f = i } }
      NR > 1 { last_s = $s; last_f = $f } END { print (last_s == "" ? 0 : last_s), (last_f == "" ? 0 : last_f) }' "$out/stat.csv" 2>/dev/null || echo "0 0")
    local pct reached cpu us sippcpu pass
    pct=$(awk -v s="$succ" -v m="$m" 'BEGIN { printf "%.2f", 100 * s / m }')
    reached=$(awk -v s="$succ" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", s / (b - a) }')
    cpu=$(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.2f", (b - a) / 100 }')
    us=$(awk -v a="$before" -v b="$after" -v s="$succ" 'BEGIN { if (s > 0) printf "%.1f", (b - a) * 10000 / s; else print "-" }')
    sippcpu=$(tail -n 1 "$out/sipp.time" 2>/dev/null | awk '{ printf "%.2f", $1 + $2 }')
    pass=$(awk -v p="$pct" -v r="$reached" -v o="$rate" 'BEGIN { print (p >= 99 && r >= 0.85 * o) ? 1 : 0 }')
    printf '  %8s %9s %9s %8s %9s %12s %12s %s\n' "$rate/s" "$m" "$pct" "$reached/s" "$cpu" "$us" "$sippcpu" \
      "$([ "$pass" = 1 ] && echo ok || echo FAIL)"
    if [ "$pass" = 1 ]; then
      best=$rate
      best_cpu=$us
    else
      FAILED_STEP=1
      break
    fi
  done
  SUMMARY+=("$(printf '%-10s %-7s highest rate with >= 99 %% success: %6s/s   CPU per registration: %s us' "$kind" "$mode" "$best" "$best_cpu")")
}

# MODES="noauth" (or "digest") runs one of the two.
for mode in ${MODES:-noauth digest}; do
  start_ours "$mode"
  steps sip-stack "$mode"
  stop_server
  if [ "$KAMAILIO" = 1 ]; then
    start_kamailio "$mode"
    steps kamailio "$mode"
    stop_server
  fi
done

echo
echo "=== summary ($(nproc) cores, SIPp on loopback; a digest registration is two REGISTERs: 401 + 200)"
printf '  %s\n' "${SUMMARY[@]}"
if [ "${QUICK:-0}" = 1 ] && [ "$FAILED_STEP" = 1 ]; then
  echo "load smoke: a step failed" >&2
  exit 1
fi
