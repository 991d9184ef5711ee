#!/usr/bin/env bash
# Call load through the example proxy (issue 13): SIPp UAC -> proxy -> SIPp UAS over UDP
# loopback, with Record-Route, so INVITE, 180, 200, ACK, BYE and 200 all pass the proxy. At
# stepped rates, each step bounded in count (rate x SECS calls) and time, it prints the success
# ratio, the rate reached and the proxy's CPU time per successful call (utime+stime from /proc,
# before and after the step, children included). With Kamailio installed (5.6, `apt-get
# install kamailio`) it runs the same steps against Kamailio as registrar + stateful proxy
# (scripts/load/kamailio-proxy.cfg: tm, rr, registrar, usrloc, 2 children, -m 2048 -x tlsf).
#
#   scripts/load-proxy.sh                         # RATES="1000 2000 3000 5000" SECS=5
#   RATES="500 1000" SECS=3 scripts/load-proxy.sh
#   LONG=10000 LONG_RATE=2000 scripts/load-proxy.sh   # also one 10 000-call run per server
#   KAMAILIO=0 scripts/load-proxy.sh              # skip Kamailio (default: when installed)
#   PROXY_ARGS="--threads 2" scripts/load-proxy.sh   # extra flags for our proxy
#   MEMORY=20000 scripts/load-proxy.sh            # only: RSS per live INVITE transaction
#                                                 # (20 000 calls left ringing)
#   QUICK=1 scripts/load-proxy.sh                 # CI: 500/s for 2 s, then 10 000 calls at
#                                                 # 1000/s, no Kamailio; exits 1 below 99.9 %
#   CALLGRIND=1 scripts/load-proxy.sh             # instructions per call instead of CPU time:
#                                                 # each server under valgrind's callgrind
#                                                 # (every process, Kamailio's children too),
#                                                 # counters zeroed once the UAS registered and
#                                                 # dumped after the calls; 2000 calls at 100/s.
#                                                 # Repeatable on a busy machine, unlike seconds.
#
# A step passes with >= 99.9 % successful calls and >= 85 % of the offered rate reached (SIPp,
# twice, shares the 2 cores with the proxy: past some rate it cannot offer more). Stepping stops
# at the first failing step. Not for CI except QUICK: minutes long and load-dependent.
set -euo pipefail
cd "$(dirname "$0")/.."
# cpu_ticks, rss_kib
. scripts/lib/proc.sh

command -v sipp >/dev/null 2>&1 || { echo "load-proxy: sipp not found (apt-get install sip-tester)" >&2; exit 1; }

CALLGRIND="${CALLGRIND:-0}"
if [ "$CALLGRIND" = 1 ]; then
  command -v valgrind >/dev/null 2>&1 || { echo "load-proxy: valgrind not found" >&2; exit 1; }
  RATES="${RATES:-100}"
  SECS="${SECS:-20}"
fi
if [ "${QUICK:-0}" = 1 ]; then
  RATES="${RATES:-500}"
  SECS="${SECS:-2}"
  KAMAILIO="${KAMAILIO:-0}"
  LONG="${LONG:-10000}"
  LONG_RATE="${LONG_RATE:-1000}"
else
  RATES="${RATES:-1000 2000 3000 5000}"
  SECS="${SECS:-5}"
fi
if [ -z "${KAMAILIO:-}" ]; then
  if command -v kamailio >/dev/null 2>&1; then KAMAILIO=1; else KAMAILIO=0; fi
fi
LONG="${LONG:-0}"
LONG_RATE="${LONG_RATE:-2000}"
PORT=5300      # the proxy under test (ours or Kamailio's), UDP
UAS_PORT=5310
UAC_PORT=5320

BIN="${PROXY_BIN:-target/release/examples/proxy}"
if [ -z "${PROXY_BIN:-}" ]; then
  cargo build --release --example proxy
fi

WORK="$(mktemp -d)"
SERVER_PID=""
UAS_PID=""
stop() {
  for p in $UAS_PID $SERVER_PID; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  UAS_PID=""
  SERVER_PID=""
}
cleanup() {
  stop
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

cat >"$WORK/register.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register the UAS">
  <send retrans="500"><![CDATA[

      REGISTER sip:localhost SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:uas@localhost>;tag=[pid]R
      To: <sip:uas@localhost>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:uas@[local_ip]:[local_port]>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
EOF
cat >"$WORK/uac.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call through the proxy">
  <send retrans="500"><![CDATA[

      INVITE sip:uas@localhost SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:uac@localhost>;tag=[pid]T[call_number]
      To: <sip:uas@localhost>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:uac@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0

  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true" rtd="true"/>
  <send><![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:uac@localhost>;tag=[pid]T[call_number]
      To: <sip:uas@localhost>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <send retrans="500"><![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:uac@localhost>;tag=[pid]T[call_number]
      To: <sip:uas@localhost>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200" crlf="true"/>
</scenario>
EOF
cat >"$WORK/uas.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answering UAS">
  <recv request="INVITE" rrs="true"/>
  <send><![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]U[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:uas@[local_ip]:[local_port]>
      Content-Length: 0

  ]]></send>
  <send retrans="500"><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]U[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:uas@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0

  ]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
</scenario>
EOF
# The memory run: calls left ringing (no answer) until the UAC's pause ends.
cat >"$WORK/uas-ring.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="ringing UAS">
  <recv request="INVITE"/>
  <send><![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]U[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:uas@[local_ip]:[local_port]>
      Content-Length: 0

  ]]></send>
  <recv request="CANCEL" timeout="600000"/>
</scenario>
EOF
cat >"$WORK/uac-ring.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call left ringing">
  <send retrans="500"><![CDATA[

      INVITE sip:uas@localhost SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:uac@localhost>;tag=[pid]T[call_number]
      To: <sip:uas@localhost>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:uac@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0

  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <pause milliseconds="600000"/>
</scenario>
EOF



# Runs a server (in the background: it execs). Under CALLGRIND=1 it runs under callgrind,
# every process writing its own counts.
wrap() { # $1: kind, then the command
  local kind=$1
  shift
  if [ "$CALLGRIND" = 1 ]; then
    exec valgrind --tool=callgrind --trace-children=yes --dump-instr=no \
      --callgrind-out-file="$WORK/cg-$kind.%p" "$@"
  else
    exec "$@"
  fi
}

start_server() { # $1: sip-stack|kamailio
  if [ "$1" = sip-stack ]; then
    wrap "$1" "$BIN" --udp "127.0.0.1:$PORT" --realm localhost --open --stats 0 \
      --max-transactions 2000000 ${PROXY_ARGS:-} >"$WORK/$1.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 300); do
      grep -q "listening" "$WORK/$1.log" && break
      sleep 0.1
    done
  else
    mkdir -p "$WORK/kamrun"
    wrap "$1" kamailio -f scripts/load/kamailio-proxy.cfg -l "udp:127.0.0.1:$PORT" -DD -E \
      -m "$([ "$CALLGRIND" = 1 ] && echo 256 || echo 2048)" -M 64 -x tlsf -Y "$WORK/kamrun" -P "$WORK/kamrun/kamailio.pid" \
      >"$WORK/$1.log" 2>&1 &
    SERVER_PID=$!
    sleep "$([ "$CALLGRIND" = 1 ] && echo 15 || echo 2)"
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/$1.log" >&2; exit 1; }
  # The UAS registers from the port it then answers on.
  (cd "$WORK" && timeout 20 sipp "127.0.0.1:$PORT" -sf register.xml -i 127.0.0.1 -p "$UAS_PORT" \
    -t u1 -m 1 -nostdin -timeout 10s -timeout_error >"reg-$1.out" 2>&1) ||
    { echo "UAS registration failed on $1" >&2; cat "$WORK/reg-$1.out" >&2; exit 1; }
}

start_uas() { # $1: scenario
  (cd "$WORK" && exec sipp -sf "$1" -i 127.0.0.1 -p "$UAS_PORT" -t u1 -nostdin \
    -buff_size 4194304 -max_recv_loops 10000 -max_sched_loops 10000 -fd 3600 \
    >"uas-$1.out" 2>&1) &
  UAS_PID=$!
  sleep 0.5
}

SUMMARY=()
FAILED=0
# run KIND RATE CALLS: one bounded UAC run; prints a row; returns 0 when it passes.
run() {
  local kind=$1 rate=$2 m=$3 out before after t0 t1 succ fail
  out="$WORK/$kind-$rate-$m"
  mkdir -p "$out"
  before=$(cpu_ticks "$SERVER_PID")
  t0=$(date +%s.%N)
  (cd "$out" && /usr/bin/time -f "%U %S" -o sipp.time \
    timeout $((m / rate * 4 + 60)) sipp "127.0.0.1:$PORT" -sf "$WORK/uac.xml" \
    -i 127.0.0.1 -p "$UAC_PORT" -t u1 -r "$rate" -rp 1000 -m "$m" -l $((rate * 4)) \
    -timeout $((m / rate * 4 + 40))s -recv_timeout 10000 -max_recv_loops 10000 \
    -max_sched_loops 10000 -buff_size 4194304 -nostdin -trace_stat -stf stat.csv -fd 3600 \
    >sipp.out 2>&1) || true
  t1=$(date +%s.%N)
  after=$(cpu_ticks "$SERVER_PID")
  read -r succ fail < <(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "SuccessfulCall(C)") s = i; if ($i == "FailedCall(C)") f = i } }
    NR > 1 { last_s = $s; last_f = $f } END { print (last_s == "" ? 0 : last_s), (last_f == "" ? 0 : last_f) }' "$out/stat.csv" 2>/dev/null || echo "0 0")
  local pct reached cpu us sippcpu pass
  pct=$(awk -v s="$succ" -v m="$m" 'BEGIN { printf "%.2f", 100 * s / m }')
  reached=$(awk -v s="$succ" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", s / (b - a) }')
  cpu=$(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.2f", (b - a) / 100 }')
  us=$(awk -v a="$before" -v b="$after" -v s="$succ" 'BEGIN { if (s > 0) printf "%.1f", (b - a) * 10000 / s; else print "-" }')
  sippcpu=$(tail -n 1 "$out/sipp.time" 2>/dev/null | awk '{ printf "%.2f", $1 + $2 }')
  pass=$(awk -v p="$pct" -v r="$reached" -v o="$rate" 'BEGIN { print (p >= 99.9 && r >= 0.85 * o) ? 1 : 0 }')
  printf '  %8s %9s %9s %8s %9s %10s %12s %s\n' "$rate/s" "$m" "$pct" "$reached/s" "$cpu" "$us" "$sippcpu" \
    "$([ "$pass" = 1 ] && echo ok || echo FAIL)"
  LAST_US=$us
  LAST_PCT=$pct
  [ "$pass" = 1 ]
}

steps() { # $1: kind
  local kind=$1 best=0 best_cpu="-" rate
  echo
  echo "=== $kind: UAC -> proxy -> UAS, Record-Route, UDP ($SECS s per step)"
  printf '  %8s %9s %9s %8s %9s %10s %12s\n' offered calls ok% reached "cpu s" "us/call" "sipp cpu s"
  for rate in $RATES; do
    if run "$kind" "$rate" $((rate * SECS)); then
      best=$rate
      best_cpu=$LAST_US
    else
      FAILED=1
      break
    fi
  done
  SUMMARY+=("$(printf '%-10s highest rate with >= 99.9 %% success: %6s/s   CPU per call: %s us' "$kind" "$best" "$best_cpu")")
  if [ "$LONG" -gt 0 ]; then
    echo "  -- $LONG calls at $LONG_RATE/s"
    if run "$kind" "$LONG_RATE" "$LONG"; then :; else FAILED=1; fi
    SUMMARY+=("$(printf '%-10s %s calls at %s/s: %s %% success, CPU per call %s us' "$kind" "$LONG" "$LONG_RATE" "$LAST_PCT" "$LAST_US")")
  fi
}

# instructions KIND: the calls of one step, counted by callgrind in every server process.
instructions() {
  local kind=$1 m=$((RATES * SECS)) total out
  out="$WORK/cgrun-$kind"
  mkdir -p "$out"
  # Only this server's processes: other callgrind runs on the machine keep their counts.
  for p in $(tree_pids "$SERVER_PID"); do callgrind_control -z "$p" >/dev/null 2>&1 || true; done
  rm -f "$WORK"/cg-"$kind".*
  (cd "$out" && timeout $((m / RATES * 4 + 120)) sipp "127.0.0.1:$PORT" -sf "$WORK/uac.xml" \
    -i 127.0.0.1 -p "$UAC_PORT" -t u1 -r "$RATES" -rp 1000 -m "$m" -l $((RATES * 20)) \
    -timeout $((m / RATES * 4 + 100))s -recv_timeout 30000 -nostdin -trace_stat -stf stat.csv \
    >sipp.out 2>&1) || true
  sleep 2
  for p in $(tree_pids "$SERVER_PID"); do callgrind_control -d "$p" >/dev/null 2>&1 || true; done
  sleep 2
  total=$(for f in "$WORK"/cg-"$kind".*; do awk '/^totals:/ { print $2; exit }' "$f"; done | awk '{ s += $1 } END { print s + 0 }')
  local succ
  succ=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "SuccessfulCall(C)") c = i }
    NR > 1 { last = $c } END { print last + 0 }' "$out/stat.csv" 2>/dev/null || echo 0)
  SUMMARY+=("$(printf '%-10s %s of %s calls at %s/s succeeded; %s instructions in all server processes, %s per call' \
    "$kind" "$succ" "$m" "$RATES" "$total" "$([ "$succ" -gt 0 ] && echo $((total / succ)) || echo -)")")
}

memory() { # $1: kind
  local kind=$1 n=$MEMORY before after
  start_server "$kind"
  start_uas uas-ring.xml
  sleep 1
  before=$(rss_kib "$SERVER_PID")
  mkdir -p "$WORK/mem-$kind"
  (cd "$WORK/mem-$kind" && exec timeout 900 sipp "127.0.0.1:$PORT" -sf "$WORK/uac-ring.xml" \
    -i 127.0.0.1 -p "$UAC_PORT" -t u1 -r "${MEM_RATE:-1000}" -m "$n" -l "$n" -nostdin -fd 3600 \
    -buff_size 4194304 -trace_stat -stf stat.csv >sipp.out 2>&1) &
  local uac=$!
  # All calls placed and ringing: n / 1000 s, plus slack.
  sleep $((n / ${MEM_RATE:-1000} + 5))
  after=$(rss_kib "$SERVER_PID")
  kill "$uac" 2>/dev/null || true
  wait "$uac" 2>/dev/null || true
  SUMMARY+=("$(printf '%-10s %s calls ringing: RSS %s -> %s KiB, %s bytes per live INVITE (server + client transaction, response context, their messages)' \
    "$kind" "$n" "$before" "$after" "$(( (after - before) * 1024 / n ))")")
  stop
}

if [ "$CALLGRIND" = 1 ]; then
  for kind in sip-stack $([ "$KAMAILIO" = 1 ] && echo kamailio); do
    start_server "$kind"
    start_uas uas.xml
    instructions "$kind"
    stop
  done
elif [ "${MEMORY:-0}" -gt 0 ]; then
  memory sip-stack
  if [ "$KAMAILIO" = 1 ]; then memory kamailio; fi
else
  for kind in sip-stack $([ "$KAMAILIO" = 1 ] && echo kamailio); do
    start_server "$kind"
    start_uas uas.xml
    steps "$kind"
    stop
  done
fi

echo
echo "=== summary ($(nproc) cores shared with both SIPp instances, loopback)"
printf '  %s\n' "${SUMMARY[@]}"
if [ "${QUICK:-0}" = 1 ] && [ "$FAILED" = 1 ]; then
  echo "load smoke: below 99.9 %" >&2
  exit 1
fi
