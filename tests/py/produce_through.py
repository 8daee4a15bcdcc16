"""Produces at a steady rate as an idempotent producer (acks=all), riding out brokers that
die: the client retries and follows Metadata to the partition's next leader.

usage: produce_through.py BOOTSTRAP TOPIC --rate R --partitions N --seconds S [--key-prefix P]
                          [--config KEY=VALUE ...]
Record i goes to partition i % N with key "{P}key-{i}". Prints one line per acknowledged
record, "PARTITION OFFSET KEY TIME" (TIME in Unix seconds). After S seconds it waits up to
60 s for the acknowledgements still due. Exits 1 if a record failed for good. Each --config
is one more librdkafka setting, such as security.protocol=SASL_SSL.
"""
import argparse
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--key-prefix", default="")
    ap.add_argument("--config", action="append", default=[])
    a = ap.parse_args()

    from confluent_kafka import Producer

    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 120000,
        "error_cb": lambda err: sys.stderr.write("producer: %s\n" % err),
        **dict(c.split("=", 1) for c in a.config),
    })
    out = sys.stdout
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)
            return
        out.write("%d %d %s %.6f\n" % (msg.partition(), msg.offset(), msg.key().decode(),
                                       time.time()))

    start = time.time()
    sent = 0
    while time.time() - start < a.seconds:
        due = int((time.time() - start) * a.rate)
        while sent < due:
            p.produce(a.topic, key=(a.key_prefix + "key-%d" % sent).encode(),
                      value=b"v" * 100, partition=sent % a.partitions,
                      on_delivery=on_delivery)
            sent += 1
        p.poll(0.005)
        out.flush()
    left = p.flush(60)
    out.flush()
    if failed or left:
        sys.stderr.write("%d records failed (%s), %d never acknowledged\n"
                         % (len(failed), failed[:3], left))
        sys.exit(1)


if __name__ == "__main__":
    main()
