"""Produces COUNT small records, each in a record batch of its own, with confluent-kafka.

usage: produce_batches.py BOOTSTRAP TOPIC COUNT

One batch per record makes a topic whose copy takes one fetch per record when the
fetch size is small: a first sync that lasts long enough to be watched. Prints the number
acknowledged.
"""
import sys

from confluent_kafka import Producer


def main():
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    p = Producer({
        "bootstrap.servers": bootstrap,
        "batch.num.messages": 1,
        "linger.ms": 0,
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

    for i in range(count):
        while True:
            try:
                p.produce(topic, value=b"record-%d" % i, partition=0, on_delivery=on_delivery)
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
