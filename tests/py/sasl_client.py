"""confluent-kafka (librdkafka) or kafka-python over SASL: produce, consume, or connect.

usage: sasl_client.py LIB MODE BOOTSTRAP TOPIC COUNT --mechanism M --user U
                      [--ca CA] [--partitions N]
The password is read from $SASL_PASSWORD. With --ca the connection is SASL_SSL (the
certificate must name the bootstrap host), without it SASL_PLAINTEXT.
LIB confluent or kafka-python.
MODE produce: acks=all, record i to partition i % N, value "value-i"; prints the number
              acknowledged, exits 1 on any delivery error.
MODE consume: reads partitions 0..N from offset 0; prints the number of records read
              (stops at COUNT or after 30 s).
MODE connect: asks for metadata; prints "connected" or "refused: ERROR" as the library
              reports it.
"""
import argparse
import logging
import os
import sys
import time

from results import Deliveries, LoggedErrors, count_polled, count_records


def confluent_settings(a):
    s = {"bootstrap.servers": a.bootstrap,
         "security.protocol": "SASL_SSL" if a.ca else "SASL_PLAINTEXT",
         "sasl.mechanisms": a.mechanism, "sasl.username": a.user,
         "sasl.password": os.environ["SASL_PASSWORD"]}
    if a.ca:
        s["ssl.ca.location"] = a.ca
        s["ssl.endpoint.identification.algorithm"] = "https"
    return s


def kafka_python_settings(a):
    s = {"bootstrap_servers": a.bootstrap,
         "security_protocol": "SASL_SSL" if a.ca else "SASL_PLAINTEXT",
         "sasl_mechanism": a.mechanism, "sasl_plain_username": a.user,
         "sasl_plain_password": os.environ["SASL_PASSWORD"]}
    if a.ca:
        s["ssl_cafile"] = a.ca
        s["ssl_check_hostname"] = True
    return s


def confluent(a):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    if a.mode == "produce":
        p = Producer({**confluent_settings(a), "enable.idempotence": True, "acks": "all"})
        deliveries = Deliveries()
        for i in range(a.count):
            p.produce(a.topic, value=b"value-%d" % i, partition=i % a.partitions,
                      on_delivery=deliveries)
            p.poll(0)
        p.flush(30)
        print(deliveries.acked)
        if deliveries.errors or deliveries.acked != a.count:
            sys.exit("delivery errors: %s" % deliveries.errors[:3])
        return
    errors = []
    c = Consumer({**confluent_settings(a), "group.id": "sasl-py", "enable.auto.commit": False,
                  "error_cb": lambda e: errors.append("%s %s" % (e.name(), e.str()))})
    if a.mode == "connect":
        deadline = time.time() + 10
        while not errors and time.time() < deadline:
            try:
                c.list_topics(a.topic, timeout=1)
                print("connected")
                break
            except KafkaException as e:
                last = str(e)
            c.poll(0.1)  # serves error_cb
        else:
            print("refused: %s" % "; ".join(errors or [last]))
        c.close()
        return
    c.assign([TopicPartition(a.topic, p, 0) for p in range(a.partitions)])
    seen = count_records(c, a.count)
    c.close()
    print(seen)


def kafka_python(a):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError
    if a.mode == "produce":
        p = KafkaProducer(**kafka_python_settings(a), acks="all")
        futures = [p.send(a.topic, value=b"value-%d" % i, partition=i % a.partitions)
                   for i in range(a.count)]
        p.flush(30)
        acked = sum(1 for f in futures if f.succeeded())
        print(acked)
        p.close()
        if acked != a.count:
            sys.exit("delivery errors: %s" % [f.exception for f in futures if f.failed()][:3])
        return
    if a.mode == "connect":
        # kafka-python logs the broker's refusal and raises only a bootstrap timeout.
        refusals = LoggedErrors()
        logging.getLogger("kafka").addHandler(refusals)
        try:
            c = KafkaConsumer(**kafka_python_settings(a), group_id=None,
                              bootstrap_timeout_ms=5000)
            c.topics()
            print("connected")
            c.close()
        except KafkaError as e:
            print("refused: %s" % "; ".join(refusals.messages or ["%s %s" % (type(e).__name__, e)]))
        return
    c = KafkaConsumer(**kafka_python_settings(a), group_id=None, enable_auto_commit=False)
    c.assign([TopicPartition(a.topic, p) for p in range(a.partitions)])
    c.seek_to_beginning()
    seen = count_polled(c, a.count)
    c.close()
    print(seen)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lib", choices=["confluent", "kafka-python"])
    ap.add_argument("mode", choices=["produce", "consume", "connect"])
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("count", type=int)
    ap.add_argument("--mechanism", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--ca")
    ap.add_argument("--partitions", type=int, default=1)
    a = ap.parse_args()
    {"confluent": confluent, "kafka-python": kafka_python}[a.lib](a)


if __name__ == "__main__":
    main()
