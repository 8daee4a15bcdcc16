"""Opens many connections that each declare a huge request frame and send only part of it.

usage: claim_frames.py BOOTSTRAP CONNECTIONS [--claim BYTES] [--send BYTES]
Each connection sends a size prefix claiming --claim bytes (default 100 MiB), then --send
bytes of the body (default 16), and never the rest. Prints "open N" once every connection
has sent its part and "closed" after stdin reaches its end, when all are closed.
"""
import argparse
import resource
import selectors
import socket
import struct
import sys
import time


def raise_file_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))


def connect_all(host, port, count):
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect((host, port))
        socks.append(s)
    return socks


def send_parts(socks, claim, send):
    """Sends each connection's prefix and body part without blocking on a full socket."""
    part = struct.pack(">i", claim) + b"\x00" * send
    sel = selectors.DefaultSelector()
    pending = {}
    for s in socks:
        s.setblocking(False)
        pending[s] = memoryview(part)
        sel.register(s, selectors.EVENT_WRITE)
    deadline = time.time() + 120
    while pending and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            n = s.send(pending[s])
            pending[s] = pending[s][n:]
            if not pending[s]:
                del pending[s]
                sel.unregister(s)
    if pending:
        raise SystemExit("%d connections could not send their part" % len(pending))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("connections", type=int)
    ap.add_argument("--claim", type=int, default=100 * 1024 * 1024)
    ap.add_argument("--send", type=int, default=16)
    a = ap.parse_args()
    host, port = a.bootstrap.rsplit(":", 1)
    raise_file_limit(a.connections + 64)
    socks = connect_all(host, int(port), a.connections)
    send_parts(socks, a.claim, a.send)
    print("open %d" % len(socks), flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
