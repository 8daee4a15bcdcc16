"""A compacted topic's client side: create it with topic configs, write updates and
tombstones over a key space, read it all back.

usage:
  compacted.py create CLIENT BOOTSTRAP TOPIC NAME=VALUE [NAME=VALUE ...]
      CreateTopics (1 partition) with those topic configs; prints "OK" or the error.
  compacted.py produce CLIENT BOOTSTRAP TOPIC UPDATES KEYS DELETED [--start N]
      Record i (N <= i < N + UPDATES) gets key "key-(i % KEYS)" and value "value-i";
      then keys 0..DELETED-1 get a tombstone. Idempotent producer, acks=all. Prints
      the number of records acknowledged.
  compacted.py consume CLIENT BOOTSTRAP TOPIC
      Reads partition 0 from offset 0 to its end and prints one JSON list of
      [offset, key, value] (value null for a tombstone).
CLIENT is confluent (confluent-kafka) or kafka-python.
"""
import json
import sys


def create(client, bootstrap, topic, configs):
    configs = dict(c.split("=", 1) for c in configs)
    if client == "confluent":
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": bootstrap})
        future = admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic]
        future.result(30)
    else:
        from kafka.admin import KafkaAdminClient, NewTopic
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
        admin.close()
    print("OK")


def records(updates, keys, deleted, start):
    for i in range(start, start + updates):
        yield b"key-%d" % (i % keys), b"value-%d" % i
    for k in range(deleted):
        yield b"key-%d" % k, None


def produce(client, bootstrap, topic, updates, keys, deleted, start):
    acked = [0]
    if client == "confluent":
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                      "acks": "all", "linger.ms": 5})

        def delivered(err, _msg):
            if err is not None:
                sys.exit("delivery failed: %s" % err)
            acked[0] += 1

        for key, value in records(updates, keys, deleted, start):
            while True:
                try:
                    p.produce(topic, key=key, value=value, partition=0, on_delivery=delivered)
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
        if p.flush(60):
            sys.exit("not all records were delivered")
    else:
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                          linger_ms=5)
        futures = [p.send(topic, key=key, value=value, partition=0)
                   for key, value in records(updates, keys, deleted, start)]
        p.flush(60)
        acked[0] = sum(1 for f in futures if f.get(timeout=60) is not None)
        p.close()
    print(acked[0])


def text(b):
    return None if b is None else b.decode()


def consume(client, bootstrap, topic):
    """Reads until the position reaches the end offset read first, or, since records
    compaction removed near the end leave nothing to read, until 5 s pass without one."""
    out = []
    if client == "confluent":
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compacted-check",
                      "enable.auto.commit": False})
        _, end = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, 0)])

        def poll():
            msg = c.poll(0.5)
            if msg is None:
                return []
            if msg.error():
                sys.exit("consume error: %s" % msg.error())
            return [[msg.offset(), text(msg.key()), text(msg.value())]]

        def position():
            return c.position([TopicPartition(topic, 0)])[0].offset
    else:
        from kafka import KafkaConsumer, TopicPartition
        tp = TopicPartition(topic, 0)
        c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        c.assign([tp])
        c.seek(tp, 0)
        end = c.end_offsets([tp])[tp]

        def poll():
            return [[m.offset, text(m.key), text(m.value)]
                    for m in c.poll(timeout_ms=500).get(tp, [])]

        def position():
            return c.position(tp)
    idle = 0.0
    while idle < 5.0:
        got = poll()
        out.extend(got)
        idle = 0.0 if got else idle + 0.5
        if out and out[-1][0] + 1 >= end or position() >= end:
            break
    c.close()
    print(json.dumps(out))


def main():
    command, client, bootstrap, topic = sys.argv[1:5]
    rest = sys.argv[5:]
    if command == "create":
        create(client, bootstrap, topic, rest)
    elif command == "produce":
        start = int(rest[4]) if len(rest) > 4 and rest[3] == "--start" else 0
        produce(client, bootstrap, topic, int(rest[0]), int(rest[1]), int(rest[2]), start)
    elif command == "consume":
        consume(client, bootstrap, topic)
    else:
        sys.exit("unknown command %s" % command)


if __name__ == "__main__":
    main()
