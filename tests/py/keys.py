"""Reads partitions 0..N-1 of a topic from the beginning and prints "PARTITION OFFSET KEY"
per record (the key as text), until EXPECTED records were read or nothing came for 10 s.

usage: keys.py BOOTSTRAP TOPIC PARTITIONS EXPECTED
"""
import sys
import time


def main():
    from confluent_kafka import Consumer, TopicPartition

    bootstrap, topic = sys.argv[1:3]
    partitions, expected = int(sys.argv[3]), int(sys.argv[4])
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "keys", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, seen, last = sys.stdout, 0, time.time()
    while seen < expected and time.time() - last < 10:
        for m in c.consume(10000, 0.5):
            if m.error():
                sys.exit("consume error: %s" % m.error())
            out.write("%d %d %s\n" % (m.partition(), m.offset(), m.key().decode()))
            seen += 1
            last = time.time()
    out.flush()
    c.close()


if __name__ == "__main__":
    main()
