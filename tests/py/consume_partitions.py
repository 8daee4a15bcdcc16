"""Reads the named partitions of a topic from the beginning with confluent-kafka (no group)
and prints how many records it read.

usage: consume_partitions.py BOOTSTRAP TOPIC EXPECTED PARTITION [PARTITION ...]
Stops after EXPECTED records or 30 s; exits 1 on any consumer error.
"""
import sys
import time

from confluent_kafka import Consumer, TopicPartition


def main():
    bootstrap, topic, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    partitions = [int(p) for p in sys.argv[4:]]
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "consume-partitions",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    seen = 0
    deadline = time.time() + 30
    while seen < expected and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            raise SystemExit("consume error: %s" % m.error())
        seen += 1
    c.close()
    print(seen)


if __name__ == "__main__":
    main()
