"""Produces a deterministic mix of records with confluent-kafka (librdkafka).

usage: produce.py BOOTSTRAP TOPIC COUNT [--compression C] [--partitions N] [--start K] [--value-bytes B]
                  [--batch-size R]

Records cycle through keyed and unkeyed, headers and none, null values, so the mirror is
checked against every shape a real producer writes. `--batch-size 1` puts every record in
a batch of its own: a first sync that takes one fetch per record when fetches are small.
Prints the number acknowledged.
"""
import argparse
import sys

from confluent_kafka import Producer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("count", type=int)
    ap.add_argument("--compression", default="none")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--value-bytes", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=200)
    a = ap.parse_args()

    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "compression.type": a.compression,
        "linger.ms": 0 if a.batch_size == 1 else 5,
        "batch.num.messages": a.batch_size,
        "enable.idempotence": False,
        "acks": "all",
    })
    acked = [0]
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked[0] += 1

    pad = b"x" * a.value_bytes
    for i in range(a.start, a.start + a.count):
        key = None if i % 5 == 0 else b"key-%d" % i
        value = None if i % 7 == 3 else b"value-%d-" % i + pad
        headers = [("seq", str(i).encode()), ("empty", b"")] if i % 3 == 0 else None
        while True:
            try:
                p.produce(a.topic, key=key, value=value, partition=i % a.partitions,
                          headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(60)
    if errors or remaining:
        print("errors: %s, not flushed: %d" % (errors[:3], remaining), file=sys.stderr)
        sys.exit(1)
    print(acked[0])


if __name__ == "__main__":
    main()
