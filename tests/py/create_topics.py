"""Creates topics in one CreateTopics request with confluent-kafka's AdminClient and prints
one line per topic, in the order given: "NAME: OK" or "NAME: ERROR_NAME message".

usage: create_topics.py BOOTSTRAP NAME:PARTITIONS [NAME:PARTITIONS ...]
"""
import sys

from confluent_kafka.admin import AdminClient, NewTopic

from results import outcome



def main():
    bootstrap = sys.argv[1]
    topics = [arg.rsplit(":", 1) for arg in sys.argv[2:]]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, int(n), 1) for name, n in topics])
    for name, _ in topics:
        print("%s: %s" % (name, outcome(futures[name], "OK")))


if __name__ == "__main__":
    main()
