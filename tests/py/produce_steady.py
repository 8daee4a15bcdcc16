"""Produces at a steady rate, as an idempotent producer (acks=all), until the broker is gone.

usage: produce_steady.py BOOTSTRAP TOPIC --rate R [--partitions N] [--seconds S] [--key-prefix P]
                         [--value-bytes B] [--compression C] [--linger-ms MS]
Record i goes to partition i % N with key "{P}key-i". Values are 100 bytes of "v" by default;
with --value-bytes they are random bytes of that size, drawn from a pool larger than a
compression window, so compression cannot shrink them and bytes on the wire are what was
asked for. A rate of 0 produces as fast as the client queue takes records. Prints one line
per acknowledged record, "PARTITION OFFSET KEY TIME" (TIME in Unix seconds), as soon as its
acknowledgement arrives. Stops producing when the broker has been unreachable for a second
(acknowledgements already on the wire are still printed), or after S seconds.
"""
import argparse
import os
import sys
import time


def values(size):
    if size is None:
        return [b"v" * 100]
    # lz4 and zstd look back at most 64 KiB: 256 distinct values of 1 KiB or more repeat
    # further apart than that.
    return [os.urandom(size) for _ in range(max(256, (1 << 20) // max(size, 1)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--key-prefix", default="")
    ap.add_argument("--value-bytes", type=int)
    ap.add_argument("--compression", default="none")
    ap.add_argument("--linger-ms", type=float, default=5)
    a = ap.parse_args()

    from confluent_kafka import KafkaError, Producer

    gone = [None]

    def on_error(err):
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            gone[0] = gone[0] or time.time()

    config = {
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": a.linger_ms,
        "compression.type": a.compression,
        "error_cb": on_error,
    }
    p = Producer(config)

    out = sys.stdout
    acked = [0]

    def on_delivery(err, msg):
        if err is None:
            acked[0] += 1
            out.write("%d %d %s %.6f\n" % (msg.partition(), msg.offset(), msg.key().decode(),
                                           time.time()))

    pool = values(a.value_bytes)
    start = time.time()
    sent = 0
    while time.time() - start < a.seconds:
        if gone[0] is not None and time.time() - gone[0] > 1.0:
            break
        due = int((time.time() - start) * a.rate) if a.rate > 0 else sent + 10000
        while sent < due:
            try:
                p.produce(a.topic, key=(a.key_prefix + "key-%d" % sent).encode(),
                          value=pool[sent % len(pool)], partition=sent % a.partitions,
                          on_delivery=on_delivery)
            except BufferError:
                break
            sent += 1
        p.poll(0.002)
        out.flush()
    # Every acknowledgement that arrived is handed over, however long the backlog of
    # callbacks a busy producer built up; the rest never will arrive (the broker is
    # gone), so once a poll hands over none, stop waiting.
    while True:
        before = acked[0]
        p.poll(0.5)
        out.flush()
        if acked[0] == before:
            break
    # Destroying a producer with undelivered messages waits on them.
    os._exit(0)


if __name__ == "__main__":
    main()
