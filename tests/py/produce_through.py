"""Produces at a steady rate for a while as one idempotent confluent-kafka producer
(acks=all), then flushes; for watching what an application sees across a switchover.

usage: produce_through.py BOOTSTRAP TOPIC --rate R --seconds S [--partitions N]
Record i goes to partition i % N with key "key-i" and value "value-i". Prints
"acked A errors E" and then each error seen (delivery or client-level); exits 1 if
any record failed or stayed unflushed.
"""
import argparse
import sys
import time

from confluent_kafka import Producer

from results import Deliveries


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--partitions", type=int, default=1)
    a = ap.parse_args()

    client_errors = []
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "error_cb": lambda err: client_errors.append(str(err)),
    })
    deliveries = Deliveries()
    start = time.time()
    sent = 0
    while time.time() - start < a.seconds:
        due = int((time.time() - start) * a.rate)
        while sent < due:
            p.produce(a.topic, key=b"key-%d" % sent, value=b"value-%d" % sent,
                      partition=sent % a.partitions, on_delivery=deliveries)
            sent += 1
        p.poll(0.005)
    remaining = p.flush(60)
    print("acked %d errors %d" % (deliveries.acked, len(deliveries.errors)))
    for e in deliveries.errors[:5] + client_errors[:5]:
        print(e)
    if deliveries.errors or remaining or deliveries.acked != sent:
        sys.exit(1)


if __name__ == "__main__":
    main()
