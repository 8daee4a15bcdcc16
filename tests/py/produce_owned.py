"""Produces to a topic a shadowlink node owns, as an idempotent producer (acks=all).

usage: produce_owned.py CLIENT BOOTSTRAP TOPIC COUNT [--compression C] [--partitions N] [--start K]
CLIENT is confluent (librdkafka, enable.idempotence=true) or kafka-python
(enable_idempotence=True). Record i goes to partition i % N with value "value-i".
Prints the number of records acknowledged; exits 1 on any delivery error.
"""
import argparse
import sys

from results import Deliveries


def confluent(a):
    from confluent_kafka import Producer

    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "compression.type": a.compression,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 100,
    })
    deliveries = Deliveries()

    for i in range(a.start, a.start + a.count):
        while True:
            try:
                p.produce(a.topic, key=b"key-%d" % i, value=b"value-%d" % i,
                          partition=i % a.partitions, on_delivery=deliveries)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(60)
    if deliveries.errors or remaining:
        sys.exit("errors: %s, not flushed: %d" % (deliveries.errors[:3], remaining))
    return deliveries.acked


def kafka_python(a):
    from kafka import KafkaProducer

    codec = None if a.compression == "none" else a.compression
    p = KafkaProducer(bootstrap_servers=a.bootstrap, acks="all", enable_idempotence=True,
                      compression_type=codec, linger_ms=5)
    futures = [p.send(a.topic, key=b"key-%d" % i, value=b"value-%d" % i, partition=i % a.partitions)
               for i in range(a.start, a.start + a.count)]
    p.flush(60)
    acked = sum(1 for f in futures if f.get(timeout=60) is not None)
    p.close()
    return acked


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("client", choices=["confluent", "kafka-python"])
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("count", type=int)
    ap.add_argument("--compression", default="none")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--start", type=int, default=0)
    a = ap.parse_args()
    print(confluent(a) if a.client == "confluent" else kafka_python(a))


if __name__ == "__main__":
    main()
