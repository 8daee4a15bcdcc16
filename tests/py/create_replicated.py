"""Creates a topic with a replication factor and configs through kafka-python's admin
client, then asks to create it again, and prints one line per attempt: "OK" or the
broker's error name.

usage: create_replicated.py BOOTSTRAP TOPIC PARTITIONS REPLICATION_FACTOR [key=value ...]
"""
import sys

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError


def create(admin, topic):
    try:
        admin.create_topics([topic], timeout_ms=30000)
    except KafkaError as e:
        return type(e).__name__
    return "OK"


def main():
    bootstrap, name = sys.argv[1], sys.argv[2]
    partitions, rf = int(sys.argv[3]), int(sys.argv[4])
    configs = dict(kv.split("=", 1) for kv in sys.argv[5:])
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=40000)
    topic = NewTopic(name, partitions, rf, topic_configs=configs)
    print(create(admin, topic))
    print(create(admin, NewTopic(name, partitions, rf, topic_configs=configs)))
    admin.close()


if __name__ == "__main__":
    main()
