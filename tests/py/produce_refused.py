"""Tries to produce to a shadow topic with one client library and prints the error it got.

usage: produce_refused.py CLIENT BOOTSTRAP TOPIC     (CLIENT: confluent | kafka-python)
Exits 0 only when the client reports a policy violation, printing the broker's message.
"""
import sys


def confluent(bootstrap, topic):
    from confluent_kafka import KafkaException, Producer

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False,
                  "message.timeout.ms": 10000, "retries": 0})
    errors = []
    p.produce(topic, value=b"must not be written", partition=0,
              on_delivery=lambda err, _m: errors.append(err))
    p.flush(15)
    if not errors or errors[0] is None:
        sys.exit("the produce was not refused: %r" % errors)
    return "%s %s" % (errors[0].name(), errors[0].str())


def kafka_python(bootstrap, topic):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    p = KafkaProducer(bootstrap_servers=bootstrap, retries=0, request_timeout_ms=10000)
    try:
        p.send(topic, value=b"must not be written", partition=0).get(timeout=15)
    except KafkaError as e:
        return "%s %s" % (type(e).__name__, e)
    sys.exit("the produce was not refused")


def main():
    client, bootstrap, topic = sys.argv[1:4]
    error = {"confluent": confluent, "kafka-python": kafka_python}[client](bootstrap, topic)
    print(error)
    if "POLICY_VIOLATION" not in error.upper() and "POLICYVIOLATION" not in error.upper():
        sys.exit("unexpected error: %s" % error)


if __name__ == "__main__":
    main()
