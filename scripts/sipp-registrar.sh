#!/usr/bin/env bash
# Interop suite of the example registrar against SIPp (issue 6), plus the GB28181 camera
# REGISTER and keepalive from the conformance corpus. Loopback only, bounded in time; fails on
# any failure, and when sipp is missing (install the Debian package sip-tester).
#
#   scripts/sipp-registrar.sh            # builds `--release --example registrar` and lossy_relay
#   REGISTRAR_BIN=path RELAY_BIN=path scripts/sipp-registrar.sh
#   DOMAIN_CALLS=500 scripts/sipp-registrar.sh   # fewer domain-URI registrations (default 2000)
#
# Registrars, each on its own ports (the transaction suite uses the 5070/5080 range):
#   5090  open (no auth)        register_noauth over UDP and TCP, GB28181 REGISTER + keepalive
#   5092  digest (defaults)     register_digest, reregister, unregister over UDP and TCP
#   5094  digest (defaults)     throttled (its own: the block also covers 127.0.0.1)
#   5095  digest, realm example.com, DOMAIN_CALLS users: register_domain_uri, DOMAIN_CALLS
#         registrations at DOMAIN_RATE/s (default 2000 at 500/s), all must pass (issue 11)
#   5096  digest, realm example.com, 300 devices: nat_lossy through lossy_relay (listening on
#         5097, 10 % loss each way), all from one address: all must complete, none throttled;
#         then guess_users (100 users, wrong passwords) blocks the address: blocked -> 403
# SIPp 3.6 reads only the first WWW-Authenticate and refuses anything but MD5; the registrar's
# default challenge offers MD5 first, then SHA-256, so the digest registrars run with defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v sipp >/dev/null 2>&1; then
  echo "sipp-registrar: sipp not found (apt-get install sip-tester)" >&2
  exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "sipp-registrar: python3 not found" >&2
  exit 1
fi

BIN="${REGISTRAR_BIN:-target/release/examples/registrar}"
if [ -z "${REGISTRAR_BIN:-}" ]; then
  cargo build --release --example registrar
fi
RELAY="${RELAY_BIN:-target/release/examples/lossy_relay}"
if [ -z "${RELAY_BIN:-}" ]; then
  cargo build --release --example lossy_relay
fi
DOMAIN_CALLS="${DOMAIN_CALLS:-2000}"
DOMAIN_RATE="${DOMAIN_RATE:-500}"
NAT_DEVICES=300

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

cat >"$WORK/users.txt" <<'EOF'
# user:realm:password
alice:localhost:secret
bob:localhost:secret
dave:localhost:secret
erin:localhost:secret
frank:localhost:secret
grace:localhost:secret
carol:localhost:right
EOF

# start NAME PORT ARGS...: a registrar in the background, killed by the trap; waits until it
# listens (at most 10 s).
start() {
  local name=$1 port=$2
  shift 2
  # `timeout` bounds it even if the trap never runs (SIGKILL of this shell).
  timeout 600 "$BIN" --udp "127.0.0.1:$port" --tcp "127.0.0.1:$port" --stats 0 "$@" \
    >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do
    if grep -q "listening.*TCP" "$WORK/$name.log" 2>/dev/null; then return 0; fi
    if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "registrar $name did not start:" >&2
  cat "$WORK/$name.log" >&2
  exit 1
}

# Users of the example.com registrars, and SIPp injection files with the [authentication]
# keyword per user (SIPp 3.6 cannot nest [field0] inside [authentication ...]).
awk -v n="$DOMAIN_CALLS" 'BEGIN { for (i = 1; i <= n; i++) printf "u%d:example.com:pw\n", i }' >"$WORK/domain-users.txt"
awk -v n="$DOMAIN_CALLS" 'BEGIN { print "SEQUENTIAL"; for (i = 1; i <= n; i++) printf "u%d;[authentication username=u%d password=pw]\n", i, i }' >"$WORK/domain.csv"
awk -v n="$NAT_DEVICES" 'BEGIN { for (i = 1; i <= n; i++) printf "cam%d:example.com:pw\n", i }' >"$WORK/cams.txt"
awk -v n="$NAT_DEVICES" 'BEGIN { print "SEQUENTIAL"; for (i = 1; i <= n; i++) printf "cam%d;[authentication username=cam%d password=pw]\n", i, i }' >"$WORK/cams.csv"
awk 'BEGIN { print "SEQUENTIAL"; for (i = 1; i <= 100; i++) printf "cam%d;[authentication username=cam%d password=guess]\n", i, i }' >"$WORK/guess.csv"

start open 5090
start digest 5092 --users "$WORK/users.txt"
start throttle 5094 --users "$WORK/users.txt"
start domain 5095 --realm example.com --users "$WORK/domain-users.txt"
start nat 5096 --realm example.com --users "$WORK/cams.txt"
timeout 600 "$RELAY" --listen 127.0.0.1:5097 --forward 127.0.0.1:5096 --loss 0.1 --seed 11 \
  --max-seconds 300 >"$WORK/relay.log" 2>&1 &
PIDS+=($!)

PASS=0
FAIL=0
RESULTS=()
LPORT=5100
SCEN=tests/sipp/registrar

# run LABEL PORT SCENARIO TRANSPORT ARGS...: one SIPp call, bounded.
run() {
  local label=$1 port=$2 scen=$3 transport=$4
  shift 4
  LPORT=$((LPORT + 1))
  local out="$WORK/sipp-$LPORT"
  mkdir -p "$out"
  if (cd "$out" && timeout 30 sipp "127.0.0.1:$port" -sf "$OLDPWD/$SCEN/$scen.xml" \
    -i 127.0.0.1 -p "$LPORT" -t "$transport" -m 1 -l 1 \
    -timeout 20s -timeout_error -recv_timeout 5000 -max_recv_loops 1000 \
    -trace_err -nostdin "$@" >sipp.out 2>&1); then
    PASS=$((PASS + 1))
    RESULTS+=("PASS  $label")
  else
    FAIL=$((FAIL + 1))
    RESULTS+=("FAIL  $label")
    echo "--- $label failed; SIPp errors:" >&2
    cat "$out"/*_errors.log >&2 2>/dev/null || tail -n 20 "$out/sipp.out" >&2
  fi
}

run "register without auth (UDP)" 5090 register_noauth u1 -s alice
run "register without auth (TCP)" 5090 register_noauth t1 -s bob
run "register with digest (UDP)" 5092 register_digest u1 -s alice -au alice -ap secret
run "register with digest (TCP)" 5092 register_digest t1 -s bob -au bob -ap secret
run "re-register, same Call-ID, higher CSeq (UDP)" 5092 reregister u1 -s dave -au dave -ap secret
run "re-register, same Call-ID, higher CSeq (TCP)" 5092 reregister t1 -s erin -au erin -ap secret
run "unregister with Expires 0 (UDP)" 5092 unregister u1 -s frank -au frank -ap secret
run "unregister with Expires 0 (TCP)" 5092 unregister t1 -s grace -au grace -ap secret
run "wrong password: 10 x 401, then 403 (UDP)" 5094 throttled u1 -s carol -au carol -ap wrong

# many LABEL PORT SCENARIO LPORT ARGS...: many SIPp calls over UDP, bounded; passes when every
# call succeeded (the statistics file's SuccessfulCall equals -m).
many() {
  local label=$1 port=$2 scen=$3 lport=$4
  shift 4
  local out="$WORK/sipp-$lport" calls
  mkdir -p "$out"
  calls=$(printf '%s\n' "$@" | awk 'prev == "-m" { print } { prev = $0 }')
  (cd "$out" && timeout 150 sipp "127.0.0.1:$port" -sf "$OLDPWD/$SCEN/$scen.xml" \
    -i 127.0.0.1 -p "$lport" -t u1 -timeout 120s -recv_timeout 10000 -max_recv_loops 1000 \
    -trace_err -trace_stat -stf stat.csv -nostdin "$@" >sipp.out 2>&1) || true
  local ok
  ok=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "SuccessfulCall(C)") s = i }
    NR > 1 { last = $s } END { print (last == "" ? 0 : last) }' "$out/stat.csv" 2>/dev/null || echo 0)
  if [ "$ok" = "$calls" ]; then
    PASS=$((PASS + 1))
    RESULTS+=("PASS  $label ($ok of $calls)")
  else
    FAIL=$((FAIL + 1))
    RESULTS+=("FAIL  $label ($ok of $calls)")
    echo "--- $label: $ok of $calls; SIPp errors:" >&2
    head -n 40 "$out"/*_errors.log >&2 2>/dev/null || tail -n 20 "$out/sipp.out" >&2
  fi
}

many "domain Request-URI, SIPp [authentication], $DOMAIN_CALLS at $DOMAIN_RATE/s" 5095 \
  register_domain_uri 5150 -inf "$WORK/domain.csv" -r "$DOMAIN_RATE" -m "$DOMAIN_CALLS" -l "$DOMAIN_CALLS"
# 300 devices behind one address (SIPp's one socket, then the relay's), 10 % loss each way:
# up to 12 retransmissions per request keep the odds of a call running out of them ~1e-9.
many "$NAT_DEVICES devices behind one address, register/query/refresh at 10 % loss" 5097 \
  nat_lossy 5151 -inf "$WORK/cams.csv" -r 50 -m "$NAT_DEVICES" -l "$NAT_DEVICES" \
  -max_non_invite_retrans 12
# None of them was counted as failing authentication, let alone throttled (the log has a
# line for each; retransmissions answered again are logged at debug level only).
if grep -q "authentication failed\|throttled: too many" "$WORK/nat.log"; then
  FAIL=$((FAIL + 1))
  RESULTS+=("FAIL  no device behind the NAT failed authentication or was throttled")
  grep "authentication failed\|throttled: too many" "$WORK/nat.log" | head -n 5 >&2
else
  PASS=$((PASS + 1))
  RESULTS+=("PASS  no device behind the NAT failed authentication or was throttled")
fi
# Then the same address guesses: 100 users with a wrong password each (direct, no loss)...
many "guessing 100 usernames from one address: 100 x 401" 5096 guess_users 5152 \
  -inf "$WORK/guess.csv" -r 50 -m 100 -l 1
# ...and is blocked: even a valid user from it gets 403.
run "source blocked after 100 failures across users: 403" 5096 blocked u1 -s cam1

# GB28181: the camera's REGISTER (Expires 86400, 20-digit IDs, no auth) and its MANSCDP
# keepalive MESSAGE, sent as captured over UDP to the open registrar; both must get 200.
gb() {
  local label=$1 file=$2
  if python3 - "$file" 5090 <<'EOF'; then
import socket, sys
data = open(sys.argv[1], "rb").read()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(0.5)
for attempt in range(6):  # RFC 3261 timer A style retransmission, 3 s in all
    s.sendto(data, ("127.0.0.1", int(sys.argv[2])))
    try:
        while True:
            resp = s.recv(65535)
            status = resp.split(b"\r\n", 1)[0]
            if status.startswith(b"SIP/2.0 1"):
                continue
            print(status.decode(errors="replace"))
            sys.exit(0 if status.startswith(b"SIP/2.0 200") else 1)
    except socket.timeout:
        continue
print("no response")
sys.exit(1)
EOF
    PASS=$((PASS + 1))
    RESULTS+=("PASS  $label")
  else
    FAIL=$((FAIL + 1))
    RESULTS+=("FAIL  $label")
  fi
}
gb "GB28181 camera REGISTER (Expires 86400) -> 200" testdata/devices/gb28181_register_1.sip
gb "GB28181 keepalive MESSAGE -> 200" testdata/devices/gb28181_keepalive.sip

# The registrars saw what the scenarios claim.
check_log() {
  local label=$1 name=$2 pattern=$3
  if grep -q -- "$pattern" "$WORK/$name.log"; then
    PASS=$((PASS + 1))
    RESULTS+=("PASS  $label")
  else
    FAIL=$((FAIL + 1))
    RESULTS+=("FAIL  $label")
    echo "--- $label: no '$pattern' in the $name registrar's log" >&2
  fi
}
check_log "log: GB28181 camera registered" open 'registered.*sip:34020000001180870005@3402000000'
check_log "log: frank unregistered" digest 'unregistered.*sip:frank@localhost'
check_log "log: carol throttled" throttle 'throttled: too many failed authentications'
check_log "log: carol's pair blocked (source+user)" throttle 'throttled: too many.*"source+user"'
check_log "log: the guessing address blocked (source)" nat 'throttle: blocking for the window.*"source"'

for i in "${!PIDS[@]}"; do
  if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
    FAIL=$((FAIL + 1))
    RESULTS+=("FAIL  registrar #$i still running at the end")
  fi
done

echo
echo "=== SIPp registrar suite"
printf '  %s\n' "${RESULTS[@]}"
echo "  passed $PASS, failed $FAIL"
[ "$FAIL" -eq 0 ]
