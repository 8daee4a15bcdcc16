"""confluent-kafka (librdkafka) over TLS: produce, consume, or just connect.

usage: tls_client.py MODE BOOTSTRAP TOPIC COUNT --ca CA [--cert C --key K] [--partitions N]
MODE produce: idempotent producer (acks=all), record i to partition i % N, value "value-i";
              prints the number acknowledged, exits 1 on any delivery error.
MODE consume: reads partitions 0..N from offset 0, prints the number of records read
              (stops at COUNT or after 30 s).
MODE connect: asks for metadata within 10 s; prints "connected" or "refused: ERROR".
"""
import argparse
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from results import Deliveries, count_records


def settings(a):
    s = {"bootstrap.servers": a.bootstrap, "security.protocol": "SSL",
         "ssl.ca.location": a.ca,
         # The test certificates name 127.0.0.1; librdkafka checks it as a host name.
         "ssl.endpoint.identification.algorithm": "https"}
    if a.cert:
        s["ssl.certificate.location"] = a.cert
        s["ssl.key.location"] = a.key
    return s


def produce(a):
    p = Producer({**settings(a), "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    deliveries = Deliveries()

    for i in range(a.count):
        p.produce(a.topic, value=b"value-%d" % i, key=b"key-%d" % i,
                  partition=i % a.partitions, on_delivery=deliveries)
        p.poll(0)
    p.flush(30)
    print(deliveries.acked)
    if deliveries.errors or deliveries.acked != a.count:
        sys.exit("delivery errors: %s" % deliveries.errors[:3])


def consume(a):
    c = Consumer({**settings(a), "group.id": "tls-py", "enable.auto.commit": False})
    c.assign([TopicPartition(a.topic, p, 0) for p in range(a.partitions)])
    seen = count_records(c, a.count)
    c.close()
    print(seen)


def connect(a):
    c = Consumer({**settings(a), "group.id": "tls-py"})
    try:
        c.list_topics(a.topic, timeout=10)
        print("connected")
    except KafkaException as e:
        print("refused: %s" % e)
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["produce", "consume", "connect"])
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("count", type=int)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--partitions", type=int, default=1)
    a = ap.parse_args()
    {"produce": produce, "consume": consume, "connect": connect}[a.mode](a)


if __name__ == "__main__":
    main()
