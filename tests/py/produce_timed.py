"""Produces fixed-size records at a steady byte rate, each carrying its send time.

usage: produce_timed.py BOOTSTRAP TOPIC --mb-per-s R --seconds S [--value-bytes N] [--partitions P]
Sends R * 1e6 / N * S records (N bytes each), spread evenly over S seconds. The first 8 bytes of each value are time.time_ns() at produce() (big-endian), the rest is
padding. Waits for every acknowledgement (acks=all) and prints one JSON line: records
sent, records acknowledged, and the rate achieved.
"""
import argparse
import json
import struct
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("--mb-per-s", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--value-bytes", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=1)
    a = ap.parse_args()

    from confluent_kafka import Producer

    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "acks": "all",
        "linger.ms": 1,
        "queue.buffering.max.messages": 1000000,
    })
    acked = [0]

    def on_delivery(err, msg):
        if err is None:
            acked[0] += 1

    rate = a.mb_per_s * 1e6 / a.value_bytes
    padding = b"p" * (a.value_bytes - 8)
    total = int(a.seconds * rate)
    start = time.time()
    sent = 0
    while sent < total:
        due = min(int((time.time() - start) * rate), total)
        while sent < due:
            value = struct.pack(">q", time.time_ns()) + padding
            try:
                p.produce(a.topic, value=value, partition=sent % a.partitions,
                          on_delivery=on_delivery)
            except BufferError:
                p.poll(0.001)
                continue
            sent += 1
        p.poll(0.0005)
    took = time.time() - start
    p.flush(30)
    print(json.dumps({"sent": sent, "acked": acked[0], "seconds": took,
                      "mb_per_s": sent * a.value_bytes / took / 1e6}))


if __name__ == "__main__":
    main()
