#!/usr/bin/env bash
# Cluster failover test (issue 15): redis-server, two `proxy --location redis://…` nodes and a
# `dispatcher` in front of them, on 127.0.0.15 (loopback only), SIPp as callees and callers.
#
#   scripts/cluster-failover.sh            # builds the release examples first
#   KEEP_LOGS=1 scripts/cluster-failover.sh
#
# 1. A callee (bob, UDP) registers through the dispatcher; 20 calls through the dispatcher all
#    succeed (they are spread over both nodes by Call-ID).
# 2. A user registered through node A is reached from node B: carol registers at A over UDP
#    and is called at B; dave registers at A over TCP with a contact nobody listens on (only
#    A's connection reaches him) and gets a MESSAGE sent to B, which B forwards through A.
# 2b. A device behind NAT (frank, UDP, a Contact on a private address nobody listens on)
#    registers through the dispatcher, which adds a Path with a flow token; he is called at
#    node A, then at node B: each node sends the INVITE along the Path to the dispatcher,
#    which sends it, the ACK and the BYE, on frank's flow (his REGISTER's source address).
# 3. Node A is killed while calls run through the dispatcher. Once the dispatcher's health
#    check has taken A out, a new callee registers and 20 new calls to it all succeed
#    (through B), and the dispatcher sends nothing more to A (its per-node count of forwarded
#    requests does not move).
# Fails on any failure, and when sipp or redis-server is missing (.ci/run installs both).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in sipp redis-server; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "cluster-failover: $tool not found (apt-get install sip-tester redis-server)" >&2
    exit 1
  }
done

if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release --example proxy --example dispatcher
fi
PROXY=target/release/examples/proxy
DISPATCHER=target/release/examples/dispatcher

IP=127.0.0.15
RPORT=${REDIS_PORT:-16395}
D=5300 A=5301 B=5302
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

fail() {
  echo "cluster-failover: FAILED: $*" >&2
  for f in "$WORK"/*.log; do echo "--- $f" >&2; tail -n 30 "$f" >&2; done
  exit 1
}

export NO_COLOR=1
# plain FILE: a log without terminal colours.
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1" 2>/dev/null; }

# wait_log FILE PATTERN SECONDS
wait_log() {
  for _ in $(seq $(($3 * 10))); do
    if plain "$1" | grep -q "$2"; then return 0; fi
    sleep 0.1
  done
  return 1
}

mkdir -p "$WORK/redis"
redis-server --port "$RPORT" --bind "$IP" --dir "$WORK/redis" --save '' --appendonly no \
  >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_log "$WORK/redis.log" "Ready to accept connections" 10 || fail "redis-server did not start"

node() { # node NAME PORT
  timeout 600 "$PROXY" --udp "$IP:$2" --tcp "$IP:$2" --realm localhost --open --stats 0 \
    --location "redis://$IP:$RPORT/0" --node "$1" >"$WORK/node-$1.log" 2>&1 &
  PIDS+=($!)
  wait_log "$WORK/node-$1.log" "listening.*TCP" 10 || fail "node $1 did not start"
}
node a $A
PID_A=${PIDS[-1]}
node b $B

timeout 600 "$DISPATCHER" --udp "$IP:$D" \
  --registrar-node "$IP:$A" --registrar-node "$IP:$B" \
  --proxy-node "$IP:$A" --proxy-node "$IP:$B" \
  --probe-ms 500 --down-after 2 --up-after 2 --max-load 10000 --stats 1 \
  >"$WORK/dispatcher.log" 2>&1 &
PIDS+=($!)
wait_log "$WORK/dispatcher.log" "listening" 10 || fail "dispatcher did not start"

SCEN=tests/sipp
N=0
# sipp_run NAME ARGS...: one bounded SIPp run in its own directory.
sipp_run() {
  local name=$1
  shift
  N=$((N + 1))
  local dir="$WORK/$N-$name"
  mkdir -p "$dir"
  (cd "$dir" && timeout 60 sipp -i "$IP" -timeout 40s -timeout_error -recv_timeout 10000 \
    -trace_err -nostdin "$@" >sipp.out 2>&1) || {
    echo "--- $name failed" >&2
    cat "$dir"/*_errors.log >&2 2>/dev/null || tail -n 20 "$dir/sipp.out" >&2
    return 1
  }
}

# callee PORT CALLS: bob answering CALLS calls on PORT, in the background (pid in CALLEE).
callee() {
  N=$((N + 1))
  local dir="$WORK/$N-callee-$1"
  mkdir -p "$dir"
  (cd "$dir" && exec timeout 60 sipp -sf "$OLDPWD/$SCEN/proxy/uas_answer.xml" -i "$IP" -p "$1" \
    -t u1 -m "$2" -timeout 40s -trace_err -nostdin >sipp.out 2>&1) &
  CALLEE=$!
  sleep 0.3
}

# forwarded NODE_PORT: the dispatcher's last logged count of requests sent to that node.
forwarded() {
  plain "$WORK/dispatcher.log" | grep "node=$IP:$1 transport=UDP role=Proxy" | tail -n 1 \
    | sed -E 's/.*forwarded=([0-9]+).*/\1/'
}

echo "== 1. bob registers through the dispatcher; 20 calls through the dispatcher"
sipp_run reg-bob "$IP:$D" -sf "$PWD/$SCEN/cluster/register.xml" -p 5311 -t u1 -s bob -m 1 \
  || fail "REGISTER through the dispatcher"
callee 5311 20
sipp_run calls-1 "$IP:$D" -sf "$PWD/$SCEN/proxy/uac_call.xml" -p 5320 -t u1 -s bob -m 20 -r 10 \
  || fail "calls through the dispatcher"
wait "$CALLEE" || fail "callee of batch 1"
sleep 1.2
fa=$(forwarded $A) fb=$(forwarded $B)
echo "   forwarded: node a $fa, node b $fb"
[ "${fa:-0}" -gt 0 ] && [ "${fb:-0}" -gt 0 ] || fail "calls not spread over both nodes"

echo "== 2. registered through node A, reached from node B"
sipp_run reg-carol "$IP:$A" -sf "$PWD/$SCEN/cluster/register.xml" -p 5312 -t u1 -s carol -m 1 \
  || fail "REGISTER at node a"
callee 5312 1
sipp_run call-carol "$IP:$B" -sf "$PWD/$SCEN/proxy/uac_call.xml" -p 5321 -t u1 -s carol -m 1 \
  || fail "call to carol at node b"
wait "$CALLEE" || fail "carol's call"
N=$((N + 1))
dir="$WORK/$N-dave"
mkdir -p "$dir"
(cd "$dir" && exec timeout 60 sipp "$IP:$A" -sf "$OLDPWD/$SCEN/cluster/uas_register_message.xml" -i "$IP" \
  -p 5313 -t t1 -s dave -m 1 -cid_str dave-flow-test -timeout 40s -trace_err -nostdin >sipp.out 2>&1) &
DAVE=$!
sleep 0.5
sipp_run message-dave "$IP:$B" -sf "$PWD/$SCEN/proxy/uac_message.xml" -p 5322 -t u1 -s dave -m 1 \
  -cid_str dave-flow-test \
  || fail "MESSAGE to dave (TCP flow on node a) sent at node b"
wait "$DAVE" || fail "dave did not get the MESSAGE over his connection to node a"

echo "== 2b. a device behind NAT registers through the dispatcher; called from each node"
# to_flows: the dispatcher's last logged count of requests sent on a device's flow by token.
to_flows() {
  plain "$WORK/dispatcher.log" | grep " stats" | tail -n 1 | sed -E 's/.*to_flows=([0-9]+).*/\1/'
}
sleep 1.2
flows_before=$(to_flows)
for round in 1 2; do
  node_port=$A
  [ "$round" = 2 ] && node_port=$B
  N=$((N + 1))
  dir="$WORK/$N-frank-$round"
  mkdir -p "$dir"
  (cd "$dir" && exec timeout 60 sipp "$IP:$D" -sf "$OLDPWD/$SCEN/cluster/uas_register_nat.xml" -i "$IP" \
    -p 5315 -t u1 -s frank -m 1 -cid_str "frank-nat-$round" -timeout 40s -trace_err -nostdin \
    >sipp.out 2>&1) &
  FRANK=$!
  sleep 0.5
  sipp_run "call-frank-$round" "$IP:$node_port" -sf "$PWD/$SCEN/proxy/uac_call.xml" -p 5324 -t u1 \
    -s frank -m 1 -cid_str "frank-nat-$round" \
    || fail "call to frank (behind NAT, registered through the dispatcher) at node $node_port"
  wait "$FRANK" || fail "frank did not get the call on his flow through the dispatcher"
done
sleep 1.2
flows=$(( $(to_flows) - ${flows_before:-0} ))
echo "   requests sent on frank's flow by token: $flows"
[ "$flows" -ge 6 ] || fail "INVITE, ACK and BYE of both calls not sent on frank's flow"

echo "== 3. node a killed while calls run; new calls after the health check"
callee 5311 40
(sleep 1.5 && kill "$PID_A") &
# Calls sent to node a just before and while it dies may fail: this batch only has to end.
N=$((N + 1))
dir="$WORK/$N-calls-2"
mkdir -p "$dir"
(cd "$dir" && timeout 60 sipp "$IP:$D" -sf "$OLDPWD/$SCEN/proxy/uac_call.xml" -i "$IP" -p 5320 -t u1 \
  -s bob -m 30 -r 10 -timeout 40s -recv_timeout 10000 -nostdin >sipp.out 2>&1) || true
echo "   while node a died: $(grep -E 'Successful call' "$dir/sipp.out" | tail -n 1 | awk '{print $NF}') of 30 calls succeeded"
wait_log "$WORK/dispatcher.log" "taken out of service node=$IP:$A role=Proxy" 10 \
  || fail "the dispatcher did not take node a out"
kill "$CALLEE" 2>/dev/null || true
wait "$CALLEE" 2>/dev/null || true
sleep 1.2
before=$(forwarded $A)
# A fresh callee (late retransmissions of batch 2 still reach bob's port).
sipp_run reg-erin "$IP:$D" -sf "$PWD/$SCEN/cluster/register.xml" -p 5314 -t u1 -s erin -m 1 \
  || fail "REGISTER through the dispatcher after the failover"
callee 5314 20
sipp_run calls-3 "$IP:$D" -sf "$PWD/$SCEN/proxy/uac_call.xml" -p 5323 -t u1 -s erin -m 20 -r 10 \
  || fail "calls after node a was taken out"
wait "$CALLEE" || fail "callee of batch 3"
sleep 1.2
after=$(forwarded $A)
echo "   forwarded to dead node a: $before before batch 3, $after after"
[ "$before" = "$after" ] || fail "requests sent to the dead node"
plain "$WORK/dispatcher.log" | grep "node=$IP:$A transport=UDP role=Proxy" | tail -n 1 | grep -q "up=false" || fail "node a not reported down"

echo "cluster-failover: all passed"
