"""Reads a topic from the beginning with confluent-kafka (no group) and prints the count.

usage: consume.py BOOTSTRAP TOPIC EXPECTED [--partitions N] [--dump]
Stops after EXPECTED records or 30 s. --dump prints one JSON line per record instead
(partition, offset, key, value, headers, timestamp) for comparisons.
"""
import argparse
import json
import time

from confluent_kafka import Consumer, TopicPartition


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("expected", type=int)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--dump", action="store_true")
    a = ap.parse_args()
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "consume-py",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.assign([TopicPartition(a.topic, p, 0) for p in range(a.partitions)])
    seen = []
    deadline = time.time() + 30
    while len(seen) < a.expected and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            raise SystemExit("consume error: %s" % m.error())
        seen.append(m)
    c.close()
    if a.dump:
        for m in sorted(seen, key=lambda m: (m.partition(), m.offset())):
            print(json.dumps({
                "partition": m.partition(), "offset": m.offset(),
                "key": m.key().hex() if m.key() is not None else None,
                "value": m.value().hex() if m.value() is not None else None,
                "headers": [[k, v.hex() if v is not None else None] for k, v in (m.headers() or [])],
                "timestamp": m.timestamp()[1],
            }))
    else:
        print(len(seen))


if __name__ == "__main__":
    main()
