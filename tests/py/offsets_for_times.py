"""Looks up offsets by timestamp in partition 0 of a topic and prints the answers as JSON.

usage: offsets_for_times.py CLIENT BOOTSTRAP TOPIC TIMESTAMP...
CLIENT is kafka-python or librdkafka (confluent-kafka). Prints one JSON list with, per
TIMESTAMP, [offset, timestamp] or null when no record is that recent. librdkafka also
accepts the timestamp "max", looked up with the AdminClient's OffsetSpec.max_timestamp()
(KIP-734).
"""
import json
import sys


def with_kafka_python(bootstrap, topic, stamps):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    tp = TopicPartition(topic, 0)
    out = []
    for ts in stamps:
        found = consumer.offsets_for_times({tp: int(ts)})[tp]
        out.append(None if found is None else [found.offset, found.timestamp])
    consumer.close()
    return out


def max_timestamp(bootstrap, topic):
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = TopicPartition(topic, 0)
    result = admin.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=20)
    info = result[tp].result()
    return None if info.offset < 0 else [info.offset, info.timestamp]


def with_librdkafka(bootstrap, topic, stamps):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets-for-times"})
    out = []
    for ts in stamps:
        if ts == "max":
            out.append(max_timestamp(bootstrap, topic))
            continue
        [found] = consumer.offsets_for_times([TopicPartition(topic, 0, int(ts))], timeout=20)
        if found.error is not None:
            raise SystemExit("offsets_for_times: %s" % found.error)
        # librdkafka answers OFFSET_END (-1) when no record is that recent, and carries no
        # timestamp back: report the offset alone.
        out.append(None if found.offset < 0 else [found.offset, None])
    consumer.close()
    return out


def main():
    client, bootstrap, topic, stamps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    lookups = {"kafka-python": with_kafka_python, "librdkafka": with_librdkafka}
    print(json.dumps(lookups[client](bootstrap, topic, stamps)))


if __name__ == "__main__":
    main()
