"""Consumer-group administration with confluent-kafka's AdminClient (ListGroups,
DescribeGroups, OffsetFetch on the node).

usage: group_admin.py BOOTSTRAP list                 (prints "group state" lines, sorted)
       group_admin.py BOOTSTRAP describe GROUP       (prints one JSON object)
       group_admin.py BOOTSTRAP offsets GROUP        (prints "topic partition offset" lines)
       group_admin.py BOOTSTRAP commit GROUP TOPIC:PARTITION:OFFSET ...   (a simple commit)
"""
import json
import sys

from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient


def main():
    bootstrap, command = sys.argv[1], sys.argv[2]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if command == "commit":
        from confluent_kafka import Consumer, TopicPartition
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": sys.argv[3],
                             "enable.auto.commit": False})
        offsets = [TopicPartition(t, int(p), int(o))
                   for t, p, o in (arg.split(":") for arg in sys.argv[4:])]
        for tp in consumer.commit(offsets=offsets, asynchronous=False):
            if tp.error:
                sys.exit("commit %s: %s" % (tp, tp.error))
        consumer.close()
    elif command == "list":
        result = admin.list_consumer_groups(request_timeout=15).result(timeout=30)
        if result.errors:
            sys.exit("list errors: %s" % result.errors)
        for g in sorted(result.valid, key=lambda g: g.group_id):
            print("%s %s" % (g.group_id, g.state.name))
    elif command == "describe":
        group = sys.argv[3]
        described = admin.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=30)
        print(json.dumps({
            "state": described.state.name,
            "protocol": described.partition_assignor,
            "members": [
                {
                    "client_id": m.client_id,
                    "partitions": sorted([tp.topic, tp.partition] for tp in m.assignment.topic_partitions),
                }
                for m in described.members
            ],
        }))
    elif command == "offsets":
        group = sys.argv[3]
        request = [ConsumerGroupTopicPartitions(group)]
        answer = admin.list_consumer_group_offsets(request, request_timeout=15)[group].result(timeout=30)
        for tp in sorted(answer.topic_partitions, key=lambda tp: (tp.topic, tp.partition)):
            print("%s %d %d" % (tp.topic, tp.partition, tp.offset))
    else:
        sys.exit("unknown command %r" % command)


if __name__ == "__main__":
    main()
