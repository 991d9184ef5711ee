#!/usr/bin/env python3
"""Black-box check of issue 10 against the example registrar: peers that stop reading stall
no one else.

Starts `registrar` on UDP and TCP 127.0.0.1, opens four TCP connections that pipeline OPTIONS
(about 1.3 KB each) and never read the answers, and meanwhile sends a UDP OPTIONS every 200 ms
for DURATION seconds (default 30). Fails unless every UDP OPTIONS is answered within 1 s.
Prints the answer times (max, p99) and how the server closed the stalled connections.

    scripts/slow-peers.py [path/to/registrar] [DURATION]
"""
import os
import socket
import subprocess
import sys
import threading
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/examples/registrar"
DURATION = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
PORT = 5093
LIMIT = 1.0


def options(transport, here, n, pad):
    body = "x" * pad
    return (
        f"OPTIONS sip:registrar@127.0.0.1:{PORT} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {here[0]}:{here[1]};rport;branch=z9hG4bK-{transport}-{n}\r\n"
        f"Max-Forwards: 70\r\nTo: <sip:registrar@127.0.0.1>\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=p{n}\r\nCall-ID: slow-{transport}-{n}@{here[1]}\r\n"
        f"CSeq: 1 OPTIONS\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def stalled_peer(i, stop, sent, socks):
    s = socket.create_connection(("127.0.0.1", PORT))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    socks[i] = s
    here = s.getsockname()
    n = 0
    try:
        while not stop.is_set():
            s.sendall(options("TCP", here, f"{i}-{n}", 1000))
            n += 1
            sent[i] = n
    except OSError:
        pass  # closed by the server: its write queue for us filled
    finally:
        stop.wait()
        s.close()


def main():
    log = open("/tmp/slow-peers-registrar.log", "w")
    server = subprocess.Popen(
        [BIN, "--udp", f"127.0.0.1:{PORT}", "--tcp", f"127.0.0.1:{PORT}", "--open"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    print("slow-peers: the registrar did not start", file=sys.stderr)
                    return 1
                time.sleep(0.05)
        stop = threading.Event()
        sent = [0, 0, 0, 0]
        socks = [None, None, None, None]
        peers = [
            threading.Thread(target=stalled_peer, args=(i, stop, sent, socks), daemon=True)
            for i in range(4)
        ]
        for p in peers:
            p.start()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        here = udp.getsockname()
        times, late, n = [], 0, 0
        end = time.time() + DURATION
        while time.time() < end:
            t0 = time.time()
            udp.sendto(options("UDP", here, n, 0), ("127.0.0.1", PORT))
            got = None
            udp.settimeout(LIMIT)
            try:
                while got is None:
                    data = udp.recv(65535)
                    if f"slow-UDP-{n}@".encode() in data:
                        got = time.time() - t0
            except socket.timeout:
                pass
            if got is None:
                late += 1
                times.append(LIMIT)
            else:
                times.append(got)
            n += 1
            rest = 0.2 - (time.time() - t0)
            if rest > 0:
                time.sleep(rest)
        stop.set()
        # A peer may be blocked in sendall for good: the server stopped reading from it (as
        # it may from a peer that never reads its answers) without closing it yet. Shutting
        # the socket down from here wakes it.
        for s in socks:
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for p in peers:
            p.join(timeout=10)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(
            f"slow-peers: {n} UDP OPTIONS, {n - late} answered within {LIMIT:.0f} s; "
            f"max {times[-1] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; "
            f"stalled peers pipelined {sum(sent)} OPTIONS"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
    closes = [l for l in open("/tmp/slow-peers-registrar.log") if "flow closed" in l]
    full = sum("write queue full" in l for l in closes)
    print(f"slow-peers: the registrar closed {full} stalled flows for a full write queue")
    return 0 if late == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
