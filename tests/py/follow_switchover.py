"""An application that knows one bootstrap address: an idempotent confluent-kafka producer
(acks=all) writing at a steady rate and a consumer-group member reading the same topic,
for watching what it sees while the topic moves to another node.

usage: follow_switchover.py BOOTSTRAP TOPIC GROUP --rate R --seconds S [--partitions N]
                            [--key-prefix P]
Record i goes to partition i % N with key "{P}key-i". After S seconds the producer
flushes; the consumer reads on until it has every acknowledged key (or 60 s more), then
commits and closes. Prints one JSON object:
{"acked": [[partition, offset, key], ...], "consumed": [[partition, offset, key], ...],
 "delivery_errors": [...], "consume_errors": [...], "client_errors": [...]}
in the order acknowledged and consumed. client_errors are what librdkafka reports to
error_cb (connection losses it recovers from, among them); the others reached the
application.
"""
import argparse
import json
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

DRAIN_S = 60


def consume(a, acked_keys, done, out):
    consumer = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 200,
        "error_cb": lambda err: out["client_errors"].append("consumer: %s" % err),
    })
    consumer.subscribe([a.topic])
    seen = set()
    deadline = None
    while True:
        if done.is_set():
            deadline = deadline or time.time() + DRAIN_S
            if acked_keys() <= seen or time.time() > deadline:
                break
        m = consumer.poll(0.2)
        if m is None:
            continue
        if m.error():
            out["consume_errors"].append(str(m.error()))
            continue
        key = m.key().decode()
        seen.add(key)
        out["consumed"].append([m.partition(), m.offset(), key])
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as e:
        # Nothing read since the last automatic commit: everything is committed already.
        if e.args[0].code() != KafkaError._NO_OFFSET:
            out["consume_errors"].append(str(e))
    consumer.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("group")
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--key-prefix", default="")
    a = ap.parse_args()

    out = {"acked": [], "consumed": [], "delivery_errors": [], "consume_errors": [],
           "client_errors": []}
    lock = threading.Lock()

    def acked_keys():
        with lock:
            return {k for _, _, k in out["acked"]}

    def delivered(err, msg):
        if err is not None:
            out["delivery_errors"].append(str(err))
            return
        with lock:
            out["acked"].append([msg.partition(), msg.offset(), msg.key().decode()])

    done = threading.Event()
    reader = threading.Thread(target=consume, args=(a, acked_keys, done, out))
    reader.start()
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "error_cb": lambda err: out["client_errors"].append("producer: %s" % err),
    })
    start = time.time()
    sent = 0
    while time.time() - start < a.seconds:
        due = int((time.time() - start) * a.rate)
        while sent < due:
            key = "%skey-%d" % (a.key_prefix, sent)
            p.produce(a.topic, key=key.encode(), value=b"value-%d" % sent,
                      partition=sent % a.partitions, on_delivery=delivered)
            sent += 1
        p.poll(0.005)
    remaining = p.flush(60)
    if remaining:
        out["delivery_errors"].append("%d records never acknowledged" % remaining)
    done.set()
    reader.join()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
