"""Reads a topic from the beginning with one client and prints one JSON line per record:
partition, offset, key, value, headers (hex, null kept), timestamp, sorted.

usage: dump.py CLIENT BOOTSTRAP TOPIC PARTITIONS EXPECTED   (CLIENT: confluent | kafka-python | kcat)
"""
import json
import subprocess
import sys
import time


def hexed(b):
    return None if b is None else bytes(b).hex()


def confluent(bootstrap, topic, partitions, expected):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "dump", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, deadline = [], time.time() + 60
    while len(out) < expected and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            sys.exit("consume error: %s" % m.error())
        out.append((m.partition(), m.offset(), m.key(), m.value(), m.headers() or [], m.timestamp()[1]))
    c.close()
    return out


def kafka_python(bootstrap, topic, partitions, expected):
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      isolation_level="read_committed", consumer_timeout_ms=60000)
    c.assign([TopicPartition(topic, p) for p in range(partitions)])
    c.seek_to_beginning()
    out = []
    for m in c:
        out.append((m.partition, m.offset, m.key, m.value, m.headers or [], m.timestamp))
        if len(out) >= expected:
            break
    c.close()
    return out


def kcat(bootstrap, topic, partitions, expected):
    # -J: one JSON object per message; kcat prints keys and payloads as text, which holds
    # for the records the tests produce.
    out = []
    for p in range(partitions):
        text = subprocess.run(
            ["kcat", "-b", bootstrap, "-C", "-t", topic, "-p", str(p), "-o", "beginning", "-e", "-J", "-q"],
            check=True, capture_output=True, text=True, timeout=60).stdout
        for line in text.splitlines():
            m = json.loads(line)
            enc = lambda s: None if s is None else s.encode()
            headers = m.get("headers") or []
            pairs = [(headers[i], enc(headers[i + 1])) for i in range(0, len(headers), 2)]
            out.append((m["partition"], m["offset"], enc(m["key"]), enc(m["payload"]), pairs, m["ts"]))
    return out


def main():
    client, bootstrap, topic = sys.argv[1:4]
    partitions, expected = int(sys.argv[4]), int(sys.argv[5])
    read = {"confluent": confluent, "kafka-python": kafka_python, "kcat": kcat}[client]
    for p, o, k, v, h, ts in sorted(read(bootstrap, topic, partitions, expected), key=lambda r: (r[0], r[1])):
        print(json.dumps({"partition": p, "offset": o, "key": hexed(k), "value": hexed(v),
                          "headers": [[hk, hexed(hv)] for hk, hv in h], "timestamp": ts}))


if __name__ == "__main__":
    main()
