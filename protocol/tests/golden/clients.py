#!/usr/bin/env python3
"""Drive one real client through produce + group consume against BOOTSTRAP (the capture proxy).

    clients.py confluent|kafka-python BOOTSTRAP TOPIC
kcat is driven from the shell (see README.md).
"""
import sys
import time


def confluent(bootstrap, topic):
    from confluent_kafka import Consumer, Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "none"})
    for i in range(3):
        p.produce(topic, key=f"k{i}".encode(), value=f"confluent value {i}".encode())
    p.flush(10)
    c = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "golden-confluent",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    c.subscribe([topic])
    seen, deadline = 0, time.time() + 45
    while seen < 3 and time.time() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            seen += 1
    c.commit(asynchronous=False)
    c.close()
    print(f"confluent consumed {seen}")


def kafka_python(bootstrap, topic):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    for i in range(3):
        p.send(topic, key=f"k{i}".encode(), value=f"kafka-python value {i}".encode())
    p.flush(10)
    p.close()
    # Manual assignment with a group id: Fetch, ListOffsets and a "simple" OffsetCommit
    # (generation -1) plus OffsetFetch, without a rebalance.
    tp = TopicPartition(topic, 0)
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id="golden-kafka-python",
                      enable_auto_commit=False)
    c.assign([tp])
    c.seek_to_beginning(tp)
    seen, deadline = 0, time.time() + 30
    while seen < 3 and time.time() < deadline:
        for records in c.poll(timeout_ms=1000).values():
            seen += len(records)
    c.commit()
    print(f"kafka-python consumed {seen}, committed {c.committed(tp)}")
    c.close()
    # A subscribed consumer for JoinGroup. Against tansu 0.6 kafka-python 3.0.12 keeps
    # rejoining and never reaches SyncGroup, so this only bounds the attempt.
    g = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="golden-kafka-python-sub",
                      auto_offset_reset="earliest", enable_auto_commit=False)
    deadline = time.time() + 15
    while time.time() < deadline and not g.poll(timeout_ms=1000):
        pass
    g.close()


if __name__ == "__main__":
    which, bootstrap, topic = sys.argv[1:4]
    {"confluent": confluent, "kafka-python": kafka_python}[which](bootstrap, topic)
