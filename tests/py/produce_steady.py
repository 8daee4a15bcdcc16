"""Produces at a steady rate, as an idempotent producer (acks=all), until the broker is gone.

usage: produce_steady.py BOOTSTRAP TOPIC --rate R [--partitions N] [--seconds S] [--key-prefix P]
Record i goes to partition i % N with key "{P}key-i" and a 100-byte value. Prints one line per
acknowledged record, "PARTITION OFFSET KEY TIME" (TIME in Unix seconds), as soon as its
acknowledgement arrives. Stops producing when the broker has been unreachable for a second
(acknowledgements already on the wire are still printed), or after S seconds.
"""
import argparse
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--key-prefix", default="")
    a = ap.parse_args()

    from confluent_kafka import KafkaError, Producer

    gone = [None]

    def on_error(err):
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            gone[0] = gone[0] or time.time()

    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "error_cb": on_error,
    })

    def on_delivery(err, msg):
        if err is None:
            sys.stdout.write("%d %d %s %.6f\n" % (msg.partition(), msg.offset(), msg.key().decode(),
                                                  time.time()))

    value = b"v" * 100
    start = time.time()
    sent = 0
    while time.time() - start < a.seconds:
        if gone[0] is not None and time.time() - gone[0] > 1.0:
            break
        due = int((time.time() - start) * a.rate)
        while sent < due:
            try:
                p.produce(a.topic, key=(a.key_prefix + "key-%d" % sent).encode(), value=value,
                          partition=sent % a.partitions, on_delivery=on_delivery)
            except BufferError:
                break
            sent += 1
        p.poll(0.002)
        sys.stdout.flush()
    # What the broker acknowledged before it went away has been delivered; the rest never
    # will be, so do not wait for it.
    p.poll(0.2)
    sys.stdout.flush()
    # Destroying a producer with undelivered messages waits on them.
    os._exit(0)


if __name__ == "__main__":
    main()
