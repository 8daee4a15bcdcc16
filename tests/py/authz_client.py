"""confluent-kafka (librdkafka) or kafka-python as one principal, reporting refusals as
the library reports them.

usage: authz_client.py LIB MODE BOOTSTRAP TOPIC [--count N] [--partitions N] [--group G]
                       (--user U | --ca CA --cert C --key K)
With --user the connection is SASL_PLAINTEXT with SCRAM-SHA-256 and the password read
from $SASL_PASSWORD; with --cert it is SSL with that client certificate.
LIB confluent or kafka-python.
MODE consume: reads partitions 0..N from offset 0 without a group; prints the number of
              records read (stops at COUNT or after 30 s), or "error: NAME".
MODE group:   subscribes to TOPIC in group G; prints the number read, or "error: NAME".
              kafka-python only logs some refusals: with nothing read, the first error
              it logged is printed as "error: MESSAGE".
MODE produce: acks=all, not idempotent, record i to partition i % N; prints the number
              acknowledged, or "error: NAME" for the first delivery error.
MODE list:    prints the topic names Metadata lists, sorted, comma-separated.
MODE create:  (confluent) creates TOPIC with N partitions; prints "created" or
              "error: NAME".
"""
import argparse
import logging
import os
import time

from results import LoggedErrors, count_polled


def confluent_settings(a):
    s = {"bootstrap.servers": a.bootstrap}
    if a.cert:
        s.update({"security.protocol": "SSL", "ssl.ca.location": a.ca,
                  "ssl.certificate.location": a.cert, "ssl.key.location": a.key,
                  "ssl.endpoint.identification.algorithm": "https"})
    else:
        s.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-256",
                  "sasl.username": a.user, "sasl.password": os.environ["SASL_PASSWORD"]})
    return s


def kafka_python_settings(a):
    if a.cert:
        return {"bootstrap_servers": a.bootstrap, "security_protocol": "SSL",
                "ssl_cafile": a.ca, "ssl_certfile": a.cert, "ssl_keyfile": a.key}
    return {"bootstrap_servers": a.bootstrap, "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": a.user,
            "sasl_plain_password": os.environ["SASL_PASSWORD"]}


def confluent_read(c, a):
    seen = 0
    deadline = time.time() + 30
    while seen < a.count and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            return "error: %s" % m.error().name()
        seen += 1
    return str(seen)


def confluent(a):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    if a.mode == "produce":
        p = Producer({**confluent_settings(a), "acks": "all"})
        acked, errors = [0], []

        def delivered(err, _msg):
            if err:
                errors.append(err.name())
            else:
                acked[0] += 1
        for i in range(a.count):
            p.produce(a.topic, value=b"value-%d" % i, partition=i % a.partitions,
                      on_delivery=delivered)
            p.poll(0)
        p.flush(30)
        return "error: %s" % errors[0] if errors else str(acked[0])
    if a.mode == "create":
        admin = AdminClient(confluent_settings(a))
        future = admin.create_topics([NewTopic(a.topic, a.partitions, 1)])[a.topic]
        try:
            future.result(30)
            return "created"
        except KafkaException as e:
            return "error: %s" % e.args[0].name()
    if a.mode == "list":
        admin = AdminClient(confluent_settings(a))
        return ",".join(sorted(admin.list_topics(timeout=10).topics))
    group = a.group or "authz-unused"
    c = Consumer({**confluent_settings(a), "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    if a.mode == "group":
        c.subscribe([a.topic])
    else:
        c.assign([TopicPartition(a.topic, p, 0) for p in range(a.partitions)])
    try:
        return confluent_read(c, a)
    finally:
        c.close()


def kafka_python(a):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError
    refusals = LoggedErrors()
    logging.getLogger("kafka").addHandler(refusals)
    try:
        if a.mode == "produce":
            p = KafkaProducer(**kafka_python_settings(a), acks="all", max_block_ms=10000)
            futures = [p.send(a.topic, value=b"value-%d" % i, partition=i % a.partitions)
                       for i in range(a.count)]
            p.flush(30)
            failed = [f.exception for f in futures if f.failed()]
            p.close()
            if failed:
                return "error: %s" % type(failed[0]).__name__
            return str(sum(1 for f in futures if f.succeeded()))
        if a.mode == "list":
            c = KafkaConsumer(**kafka_python_settings(a), group_id=None)
            topics = ",".join(sorted(c.topics()))
            c.close()
            return topics
        c = KafkaConsumer(**kafka_python_settings(a), group_id=a.group,
                          enable_auto_commit=False, auto_offset_reset="earliest")
        if a.mode == "group":
            c.subscribe([a.topic])
        else:
            c.assign([TopicPartition(a.topic, p) for p in range(a.partitions)])
            c.seek_to_beginning()
        seen = count_polled(c, a.count,
                            give_up=lambda seen: seen == 0 and bool(refusals.messages))
        c.close()
        if seen == 0 and refusals.messages:
            return "error: %s" % refusals.messages[0]
        return str(seen)
    except KafkaError as e:
        return "error: %s" % type(e).__name__


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lib", choices=["confluent", "kafka-python"])
    ap.add_argument("mode", choices=["consume", "group", "produce", "list", "create"])
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--group")
    ap.add_argument("--user")
    ap.add_argument("--ca")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args()
    print({"confluent": confluent, "kafka-python": kafka_python}[a.lib](a))


if __name__ == "__main__":
    main()
