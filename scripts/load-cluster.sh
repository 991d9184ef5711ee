#!/usr/bin/env bash
# Cluster load (issue 15), bounded: SIPp over UDP on 127.0.0.16, release builds.
#
#   scripts/load-cluster.sh                       # REG_RATE=2000 CALL_RATE=300 SECS=4
#   REG_RATE=4000 CALL_RATE=500 SECS=5 scripts/load-cluster.sh
#   ONLY=3 CALL_RATE=1000 scripts/load-cluster.sh   # one section only (1, 2 or 3)
#
# 1. CPU per REGISTER on the node: the `registrar` example with the in-memory store, then with
#    --location redis:// (the node's CPU, and redis-server's beside it). Goal: Redis <= 2x.
# 2. REGISTER/s through the `dispatcher` with one and with two `proxy` nodes (in memory, and
#    on Redis).
# 3. Calls/s through the dispatcher with one node (memory, Redis) and two nodes (Redis: the
#    callee registered through one node is reached from both), and calls per CPU-second of the
#    dispatcher against those of a stateful proxy node (goal: >= 3x). SIPp sends every request
#    of a call to the dispatcher's address, so the ACK and the BYE pass the dispatcher too (by
#    the node's Record-Route in their Route), as they would from phones that reach only it.
#
# DISPATCHER_ARGS: more flags for the dispatcher. By default it adds its Path with a flow token
# to REGISTERs (devices behind NAT), so the callee registered through it is reached through it:
# every request and response of a call then passes the dispatcher twice (caller -> dispatcher
# -> node -> dispatcher -> callee). DISPATCHER_ARGS=--no-path measures the call flow of
# devices reachable at their Contact (caller -> dispatcher -> node -> callee).
#
# Each run offers RATE/s for SECS seconds (at most RATE x SECS calls, 4 x SECS + 60 s at most).
# Prints one row per run: calls, % ok, rate reached, CPU seconds and microseconds per call of
# each process. Not for CI: the figures depend on the machine and its other load.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in sipp redis-server; do
  command -v "$tool" >/dev/null 2>&1 || { echo "load-cluster: $tool not found" >&2; exit 1; }
done
REG_RATE=${REG_RATE:-2000}
CALL_RATE=${CALL_RATE:-300}
SECS=${SECS:-4}
IP=127.0.0.16
RPORT=${REDIS_PORT:-16396}
D=5400 A=5401 B=5402 UAC=5420 UAS=5421

if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release --example proxy --example registrar --example dispatcher
fi
BIN=target/release/examples
WORK="$(mktemp -d)"
PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_all
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM
export NO_COLOR=1

cpu_ticks() { # utime+stime of one process, in clock ticks
  local rest
  rest=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  rest=${rest##*) }
  set -- $rest
  echo $((${12} + ${13}))
}

wait_log() { # FILE PATTERN
  for _ in $(seq 100); do
    if sed 's/\x1b\[[0-9;]*m//g' "$1" 2>/dev/null | grep -q "$2"; then return 0; fi
    sleep 0.1
  done
  echo "load-cluster: $1 did not show '$2'" >&2
  cat "$1" >&2
  exit 1
}

redis() {
  mkdir -p "$WORK/redis"
  redis-server --port "$RPORT" --bind "$IP" --dir "$WORK/redis" --save '' --appendonly no \
    >"$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  REDIS_PID=$!
  wait_log "$WORK/redis.log" "Ready to accept connections"
}

# server KIND NAME PORT [--location]: a registrar or proxy node.
server() {
  local kind=$1 name=$2 port=$3 extra=()
  shift 3
  if [ "${1:-}" = redis ]; then extra=(--location "redis://$IP:$RPORT/0" --node "$name"); fi
  if [ "$kind" = registrar ]; then extra+=(--workers 1); else extra+=(--realm localhost); fi
  "$BIN/$kind" --udp "$IP:$port" --open --stats 0 --max-transactions 2000000 "${extra[@]}" \
    >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
  wait_log "$WORK/$name.log" "listening"
}

dispatcher() { # NODE_PORT...
  local args=()
  for p in "$@"; do args+=(--registrar-node "$IP:$p" --proxy-node "$IP:$p"); done
  # shellcheck disable=SC2086 # DISPATCHER_ARGS is a list of flags
  "$BIN/dispatcher" --udp "$IP:$D" --stats 0 --probe-ms 1000 "${args[@]}" ${DISPATCHER_ARGS:-} \
    >"$WORK/dispatcher.log" 2>&1 &
  PIDS+=($!)
  DISPATCHER_PID=$!
  wait_log "$WORK/dispatcher.log" "listening"
}

N=$((REG_RATE * SECS))
awk -v n="$N" 'BEGIN { print "SEQUENTIAL"; for (i = 1; i <= n; i++) printf "u%d\n", i }' >"$WORK/users.csv"
cat >"$WORK/register.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER load">
  <send retrans="500"><![CDATA[

      REGISTER sip:localhost SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@localhost>;tag=[pid]T[call_number]
      To: <sip:[field0]@localhost>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
EOF
cat >"$WORK/uac.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call">
  <send retrans="500"><![CDATA[

      INVITE sip:uas@localhost SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:uac@localhost>;tag=[pid]T[call_number]
      To: <sip:uas@localhost>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:uac@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

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
  <send retrans="500"><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]U[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:uas@[local_ip]:[local_port]>
      Content-Length: 0

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
sed -e 's/\[field0\]/uas/g' -e 's/Call-ID: \[call_id\]/Call-ID: [call_id]/' "$WORK/register.xml" >"$WORK/register-uas.xml"

# load LABEL TARGET_PORT SCENARIO RATE PIDS...: one bounded SIPp run; a row with CPU per call
# of every process in PIDS (name=pid).
load() {
  local label=$1 port=$2 scen=$3 rate=$4
  shift 4
  local m=$((rate * SECS)) out="$WORK/run-$label" extra=()
  mkdir -p "$out"
  if [ "$scen" = register ]; then extra=(-inf "$WORK/users.csv"); fi
  declare -A before
  for np in "$@"; do before[$np]=$(cpu_ticks "${np#*=}"); done
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$out" && timeout $((SECS * 4 + 60)) sipp "$IP:$port" -sf "$WORK/$scen.xml" "${extra[@]}" \
    -i "$IP" -p "$UAC" -t u1 -r "$rate" -rp 1000 -m "$m" -l $((rate * 4)) \
    -timeout $((SECS * 4 + 40))s -recv_timeout 10000 -max_recv_loops 10000 -max_sched_loops 10000 \
    -buff_size 4194304 -nostdin -trace_stat -stf stat.csv -fd 3600 >sipp.out 2>&1) || true
  t1=$(date +%s.%N)
  local succ
  succ=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "SuccessfulCall(C)") s = i }
    NR > 1 { last = $s } END { print (last == "" ? 0 : last) }' "$out/stat.csv" 2>/dev/null || echo 0)
  local row
  row=$(printf '%-34s %6s %7s %8s' "$label" "$m" \
    "$(awk -v s="$succ" -v m="$m" 'BEGIN { printf "%.2f", 100 * s / m }')" \
    "$(awk -v s="$succ" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f/s", s / (b - a) }')")
  for np in "$@"; do
    local name=${np%%=*} after
    after=$(cpu_ticks "${np#*=}")
    row+=$(awk -v n="$name" -v a="${before[$np]}" -v b="$after" -v s="$succ" \
      'BEGIN { printf "  %s %.2fs %sus", n, (b - a) / 100, (s > 0 ? sprintf("%.1f", (b - a) * 10000 / s) : "-") }')
    eval "CPU_$name=$((after - ${before[$np]}))"
  done
  echo "$row"
  SUCC=$succ
}

uas() { # registers uas at PORT (from its answering port), then answers calls
  (cd "$WORK" && timeout 20 sipp "$IP:$1" -sf register-uas.xml -inf users.csv -i "$IP" -p "$UAS" -t u1 \
    -m 1 -nostdin -timeout 10s -timeout_error >reg-uas.out 2>&1) || { cat "$WORK/reg-uas.out" >&2; exit 1; }
  (cd "$WORK" && exec sipp -sf uas.xml -i "$IP" -p "$UAS" -t u1 -nostdin -buff_size 4194304 \
    -max_recv_loops 10000 -max_sched_loops 10000 -fd 3600 >uas.out 2>&1) &
  PIDS+=($!)
  sleep 0.5
}

printf '%-34s %6s %7s %8s  %s\n' run calls "ok %" reached "CPU of each process (total, per call)"

section() { [ -z "${ONLY:-}" ] || [ "$ONLY" = "$1" ]; }
MEM_US=- RED_US=- RATIO=-

if section 1; then
echo "--- 1. CPU per REGISTER on the node (registrar example, 1 worker, direct)"
server registrar mem $A
load "registrar, memory store" $A register "$REG_RATE" node=$LAST_PID
MEM_US=$(awk -v c="$CPU_node" -v s="$SUCC" 'BEGIN { printf "%.1f", c * 10000 / s }')
stop_all
redis
server registrar red $A redis
load "registrar, Redis store" $A register "$REG_RATE" node=$LAST_PID redis=$REDIS_PID
RED_US=$(awk -v c="$CPU_node" -v s="$SUCC" 'BEGIN { printf "%.1f", c * 10000 / s }')
stop_all
fi

if section 2; then
echo "--- 2. REGISTER/s through the dispatcher"
for store in memory redis; do
  for nodes in 1 2; do
    [ "$store" = redis ] && redis
    r=(); [ "$store" = redis ] && r=(redis)
    server proxy a $A "${r[@]}"
    pa=$LAST_PID
    pids=(a=$pa)
    if [ "$nodes" = 2 ]; then server proxy b $B "${r[@]}"; pids+=(b=$LAST_PID); dispatcher $A $B; else dispatcher $A; fi
    load "REGISTER, $nodes node(s), $store" $D register "$REG_RATE" dispatcher=$DISPATCHER_PID "${pids[@]}"
    stop_all
  done
done
fi

if section 3; then
echo "--- 3. calls/s through the dispatcher"
for setup in "1 memory" "1 redis" "2 redis"; do
  set -- $setup
  nodes=$1 store=$2
  [ "$store" = redis ] && redis
  r=(); [ "$store" = redis ] && r=(redis)
  server proxy a $A "${r[@]}"
  pids=(a=$LAST_PID)
  if [ "$nodes" = 2 ]; then server proxy b $B "${r[@]}"; pids+=(b=$LAST_PID); dispatcher $A $B; else dispatcher $A; fi
  uas $D
  load "calls, $nodes node(s), $store" $D uac "$CALL_RATE" dispatcher=$DISPATCHER_PID "${pids[@]}"
  if [ "$nodes" = 1 ] && [ "$store" = memory ]; then
    RATIO=$(awk -v d="$CPU_dispatcher" -v n="$CPU_a" 'BEGIN { if (d > 0) printf "%.1f", n / d; else print "inf" }')
  fi
  stop_all
done
fi

echo
if section 1; then
  echo "CPU per REGISTER on the node: memory ${MEM_US} us, Redis ${RED_US} us ($(awk -v a="$RED_US" -v b="$MEM_US" 'BEGIN { printf "%.2f", a / b }')x; goal <= 2x)"
fi
if section 3; then
  echo "Calls per CPU-second, dispatcher vs one stateful proxy node (1 node, memory): ${RATIO}x (goal >= 3x)"
fi
