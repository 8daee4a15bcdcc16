"""Reads partition 0 from the beginning at an isolation level and prints what it got.

usage: consume_isolation.py BOOTSTRAP TOPIC END --client confluent|kafka-python
                            --isolation read_committed|read_uncommitted

Reads until the consumer's position reaches END (for read_committed, the last stable
offset: the consumer skips aborted data and markers on its own), or fails after 30 s.
Prints one JSON line per record: offset and value (utf-8).
"""
import argparse
import json
import time


def confluent(a):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "consume-isolation",
                  "enable.auto.commit": False, "isolation.level": a.isolation})
    tp = TopicPartition(a.topic, 0, 0)
    c.assign([tp])
    seen = []
    deadline = time.time() + 30
    while time.time() < deadline:
        m = c.poll(0.2)
        if m is not None:
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF, not an error
                    continue
                raise SystemExit("consume error: %s" % m.error())
            seen.append((m.offset(), m.value()))
        if c.position([TopicPartition(a.topic, 0)])[0].offset >= a.end:
            break
    else:
        raise SystemExit("position did not reach %d" % a.end)
    c.close()
    return seen


def kafka_python(a):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=a.bootstrap, group_id=None,
                             enable_auto_commit=False, isolation_level=a.isolation)
    tp = TopicPartition(a.topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    seen = []
    deadline = time.time() + 30
    while time.time() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            seen.extend((m.offset, m.value) for m in records)
        if consumer.position(tp) >= a.end:
            break
    else:
        raise SystemExit("position did not reach %d" % a.end)
    consumer.close()
    return seen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("end", type=int)
    ap.add_argument("--client", choices=["confluent", "kafka-python"], required=True)
    ap.add_argument("--isolation", choices=["read_committed", "read_uncommitted"],
                    required=True)
    a = ap.parse_args()
    seen = confluent(a) if a.client == "confluent" else kafka_python(a)
    for offset, value in seen:
        print(json.dumps({"offset": offset, "value": value.decode()}))


if __name__ == "__main__":
    main()
