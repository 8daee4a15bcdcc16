"""Creates topics in one CreateTopics request with confluent-kafka's AdminClient and prints
one line per topic, in the order given: "NAME: OK" or "NAME: ERROR_NAME message".

usage: create_topics.py BOOTSTRAP NAME:PARTITIONS [NAME:PARTITIONS ...]
"""
import sys

from confluent_kafka.admin import AdminClient, NewTopic


def outcome(future):
    try:
        future.result(timeout=30)
        return "OK"
    except Exception as e:  # the KafkaException carries the broker's error
        err = e.args[0] if e.args else e
        name = err.name() if hasattr(err, "name") else type(err).__name__
        text = err.str() if hasattr(err, "str") else str(err)
        return "%s %s" % (name, text)


def main():
    bootstrap = sys.argv[1]
    topics = [arg.rsplit(":", 1) for arg in sys.argv[2:]]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, int(n), 1) for name, n in topics])
    for name, _ in topics:
        print("%s: %s" % (name, outcome(futures[name])))


if __name__ == "__main__":
    main()
