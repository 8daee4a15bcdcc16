"""A kafka-python group consumer against a shadowlink node.

usage: group_kafka_python.py BOOTSTRAP GROUP (--topic T | --pattern P) --count N [--idle S]

Reads N records as a member of GROUP, commits synchronously, keeps polling for S more
seconds (so records beyond N show up), then closes (LeaveGroup). Prints one JSON object:
{"records": [[topic, partition, offset], ...], "committed": {"topic:partition": offset}}.
Exits non-zero when N records do not arrive within 90 s.
"""
import argparse
import json
import sys
import time

from kafka import KafkaConsumer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("group")
    ap.add_argument("--topic")
    ap.add_argument("--pattern")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--idle", type=float, default=0)
    a = ap.parse_args()
    consumer = KafkaConsumer(
        bootstrap_servers=a.bootstrap,
        group_id=a.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        metadata_max_age_ms=2000,
    )
    if a.pattern:
        consumer.subscribe(pattern=a.pattern)
    else:
        consumer.subscribe([a.topic])
    records = []
    deadline = time.time() + 90
    while len(records) < a.count and time.time() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend([m.topic, m.partition, m.offset] for m in batch)
    if records:
        consumer.commit()
    idle_until = time.time() + a.idle
    while time.time() < idle_until:
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend([m.topic, m.partition, m.offset] for m in batch)
    committed = {}
    for tp in consumer.assignment():
        committed["%s:%d" % (tp.topic, tp.partition)] = consumer.committed(tp)
    consumer.close()
    print(json.dumps({"records": records, "committed": committed}))
    if len(records) < a.count:
        print("only %d of %d records arrived" % (len(records), a.count), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
