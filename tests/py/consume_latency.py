"""Consumes records produced by produce_timed.py and reports their end-to-end latency.

usage: consume_latency.py BOOTSTRAP TOPIC EXPECTED [--partitions P] [--skip-seconds W]
Reads every partition of a fresh topic from offset 0, started before the producer (prints
"ready" after its first poll), until EXPECTED records or 20 s without one. A record's
latency is the time poll returned it (or the first record delivered with it) minus the
send time in its first 8 bytes. Records sent in the first W seconds (warm-up) are left
out. Prints one JSON line: count and the p50/p99/p99.9/max latency in milliseconds.
"""
import argparse
import json
import struct
import sys
import time

from confluent_kafka import Consumer, TopicPartition


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("expected", type=int)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--skip-seconds", type=float, default=2.0)
    a = ap.parse_args()
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "latency",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100,
                  "fetch.error.backoff.ms": 10})
    c.assign([TopicPartition(a.topic, p, 0) for p in range(a.partitions)])
    c.poll(0.5)
    print("ready", flush=True)
    first_sent = None
    latencies = []
    seen = 0
    last = time.time()
    while seen < a.expected and time.time() - last < 20:
        # consume() with a timeout returns only once it has num_messages or the timeout
        # has passed, which would add up to that timeout to every latency: poll returns
        # the first record as soon as it is there, consume(timeout=0) what came with it.
        first = c.poll(0.05)
        if first is None:
            continue
        now = time.time_ns()
        batch = [first] + c.consume(num_messages=10000, timeout=0)
        for m in batch:
            if m.error():
                sys.exit("consume error: %s" % m.error())
            sent = struct.unpack(">q", m.value()[:8])[0]
            first_sent = first_sent if first_sent is not None else sent
            seen += 1
            if sent - first_sent >= a.skip_seconds * 1e9:
                latencies.append((now - sent) / 1e6)
        if batch:
            last = time.time()
    c.close()
    latencies.sort()
    print(json.dumps({
        "count": seen,
        "measured": len(latencies),
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "p999_ms": percentile(latencies, 0.999),
        "max_ms": latencies[-1] if latencies else None,
    }))


if __name__ == "__main__":
    main()
