"""Reads every partition of a topic from the beginning with confluent-kafka (no group),
riding out brokers that go away, and prints one line per record: "PARTITION OFFSET KEY".

usage: consume_until.py BOOTSTRAP TOPIC PARTITIONS COUNT_FILE [--timeout S]
Stops once it has read as many records as COUNT_FILE holds (the file may appear later),
or after S seconds (default 120). Transport errors, which a broker's death causes, are
reported on stderr and ridden out; any other consumer error exits 1. An offset out of
range is an error too (auto.offset.reset=error): a reset would hide lost or repeated
records.
"""
import argparse
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

RIDDEN_OUT = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE,
              KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)


def expected(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("partitions", type=int)
    ap.add_argument("count_file")
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "consume-until",
                  "enable.auto.commit": False, "auto.offset.reset": "error",
                  "topic.metadata.refresh.interval.ms": 1000})
    c.assign([TopicPartition(a.topic, p, 0) for p in range(a.partitions)])
    seen = 0
    deadline = time.time() + a.timeout
    out = sys.stdout
    while time.time() < deadline:
        want = expected(a.count_file)
        if want is not None and seen >= want:
            break
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() in RIDDEN_OUT:
                print("ridden out: %s" % m.error(), file=sys.stderr)
                continue
            raise SystemExit("consume error: %s" % m.error())
        key = m.key().decode() if m.key() is not None else "-"
        out.write("%d %d %s\n" % (m.partition(), m.offset(), key))
        seen += 1
    out.flush()
    c.close()
    os._exit(0)


if __name__ == "__main__":
    main()
