"""Tries every admin write on a shadow topic with confluent-kafka's AdminClient and prints
one line per operation: its name and the error the node answered.

usage: admin_refused.py BOOTSTRAP TOPIC
"""
import sys

from confluent_kafka import TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions)

from results import outcome



def main():
    bootstrap, topic = sys.argv[1:3]
    a = AdminClient({"bootstrap.servers": bootstrap})
    ops = {
        "delete_records": lambda: a.delete_records([TopicPartition(topic, 0, 1)])[TopicPartition(topic, 0, 1)],
        "create_partitions": lambda: a.create_partitions([NewPartitions(topic, 9)])[topic],
        "delete_topics": lambda: a.delete_topics([topic])[topic],
        "alter_configs": lambda: next(iter(a.alter_configs(
            [ConfigResource("topic", topic, set_config={"retention.ms": "1"})]).values())),
        "incremental_alter_configs": lambda: next(iter(a.incremental_alter_configs(
            [ConfigResource("topic", topic, incremental_configs=[
                ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])]).values())),
    }
    for name, op in ops.items():
        print("%s: %s" % (name, outcome(op(), "accepted")))


if __name__ == "__main__":
    main()
