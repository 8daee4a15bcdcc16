"""Reads one partition from the beginning with kafka-python (no group) and dumps it.

usage: consume_kafka_python.py BOOTSTRAP TOPIC EXPECTED [--partition P]

kafka-python still decodes v0 and v1 message sets, compressed wrappers included, so it
reads topics that predate the v2 batch format. Stops after EXPECTED records or 30 s and
prints one JSON line per record: offset, key and value (hex, or null), timestamp.
"""
import argparse
import json
import time

from kafka import KafkaConsumer, TopicPartition


def hexed(data):
    return data.hex() if data is not None else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("expected", type=int)
    ap.add_argument("--partition", type=int, default=0)
    a = ap.parse_args()
    consumer = KafkaConsumer(bootstrap_servers=a.bootstrap, group_id=None,
                             enable_auto_commit=False, check_crcs=True)
    tp = TopicPartition(a.topic, a.partition)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    seen = []
    deadline = time.time() + 30
    while len(seen) < a.expected and time.time() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            seen.extend(records)
    consumer.close()
    for m in seen:
        print(json.dumps({"offset": m.offset, "key": hexed(m.key),
                          "value": hexed(m.value), "timestamp": m.timestamp}))


if __name__ == "__main__":
    main()
