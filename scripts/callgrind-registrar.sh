#!/usr/bin/env bash
# Instructions per REGISTER of a registrar binary, counted by valgrind's callgrind over the whole
# process while SIPp registers N users at R/s over UDP (no authentication). Instruction counts do
# not move with the machine's load the way CPU seconds do, so two builds can be compared on a
# shared machine:
#
#   scripts/callgrind-registrar.sh target/release/examples/registrar --workers 1
#   N=3000 R=100 scripts/callgrind-registrar.sh /path/to/older/registrar
#
# Prints the total and the instructions per REGISTER (start-up and shutdown included; run the
# same N for both builds). Logging as load-registrar.sh: warnings only (RUST_LOG to change it);
# KEEP=FILE keeps the callgrind output for callgrind_annotate.
set -euo pipefail
BIN="$1"; shift
N="${N:-3000}"
R="${R:-100}"
PORT="${PORT:-5097}"
WORK="$(mktemp -d)"
trap '[ -n "${KEEP:-}" ] && cp "$WORK/cg.out" "$KEEP"; rm -rf "$WORK"' EXIT
command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }
command -v sipp >/dev/null || { echo "sipp not found" >&2; exit 1; }

cat >"$WORK/reg.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER, no auth">
  <send retrans="500"><![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:u[call_number]@localhost>;tag=[pid]T[call_number]
      To: <sip:u[call_number]@localhost>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:u[call_number]@[local_ip]:[local_port]>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
EOF

# --vgdb=no: a callgrind_control run elsewhere on the machine (load-proxy.sh) cannot zero or dump
# this count.
RUST_LOG="${RUST_LOG:-warn,registrar=info}" valgrind --tool=callgrind --vgdb=no --callgrind-out-file="$WORK/cg.out" \
  "$BIN" --udp "127.0.0.1:$PORT" --open --stats 0 "$@" >"$WORK/reg.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  grep -q "listening" "$WORK/reg.log" 2>/dev/null && break
  sleep 0.2
done
sipp "127.0.0.1:$PORT" -sf "$WORK/reg.xml" -m "$N" -r "$R" -l 1000 -t u1 -p 5196 \
  -nostdin -timeout $((N / R + 60)) >"$WORK/sipp.log" 2>&1 || true
kill -INT "$PID"
wait "$PID" || true
total=$(grep -E '^(summary|totals):' "$WORK/cg.out" | head -1 | awk '{print $2}')
ok=$(grep 'Successful call' "$WORK/sipp.log" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3}')
echo "callgrind-registrar: $BIN $*: $total instructions, $N REGISTERs ($ok answered 200 per SIPp), $((total / N)) per REGISTER"
