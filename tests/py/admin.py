"""Topic administration with confluent-kafka's AdminClient.

usage: admin.py BOOTSTRAP create TOPIC PARTITIONS [key=value ...]
       admin.py BOOTSTRAP configs TOPIC          (prints key=value lines, sorted)
       admin.py BOOTSTRAP add-partitions TOPIC TOTAL
       admin.py BOOTSTRAP delete TOPIC
"""
import sys

from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic


def main():
    bootstrap, command, topic = sys.argv[1], sys.argv[2], sys.argv[3]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if command == "create":
        config = dict(kv.split("=", 1) for kv in sys.argv[5:])
        futures = admin.create_topics([NewTopic(topic, int(sys.argv[4]), 1, config=config)])
        futures[topic].result(timeout=30)
    elif command == "configs":
        futures = admin.describe_configs([ConfigResource("topic", topic)])
        for resource, future in futures.items():
            for name, entry in sorted(future.result(timeout=30).items()):
                print("%s=%s" % (name, entry.value))
    elif command == "add-partitions":
        futures = admin.create_partitions([NewPartitions(topic, int(sys.argv[4]))])
        futures[topic].result(timeout=30)
    elif command == "delete":
        admin.delete_topics([topic])[topic].result(timeout=30)
    else:
        sys.exit("unknown command %r" % command)


if __name__ == "__main__":
    main()
