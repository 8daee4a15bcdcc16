"""Reads partition 0 of a topic with confluent-kafka across a truncation of what it read.

usage: consume_truncation.py BOOTSTRAP TOPIC FIRST RESET
Reads offsets 0..FIRST-1, prints "read FIRST", pauses the partition and waits for a line
on stdin (the log is rewritten meanwhile), then resumes with auto.offset.reset=RESET and
prints one JSON line per event for up to 30 s: {"offset": o, "value": v} per record, or
{"error": text, "code": name} per consumer error. Stops at the first error, or once a
record at offset FIRST or beyond arrived.
"""
import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition


def emit(event):
    print(json.dumps(event), flush=True)


def main():
    bootstrap, topic, first, reset = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "truncation",
                  "enable.auto.commit": False, "auto.offset.reset": reset})
    tp = TopicPartition(topic, 0, 0)
    c.assign([tp])
    got = 0
    deadline = time.time() + 30
    while got < first and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got += 1
    if got < first:
        raise SystemExit("read only %d records" % got)
    c.pause([TopicPartition(topic, 0)])
    print("read %d" % got, flush=True)
    sys.stdin.readline()
    c.resume([TopicPartition(topic, 0)])
    deadline = time.time() + 30
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error() is not None:
            emit({"error": str(m.error()), "code": m.error().name()})
            break
        emit({"offset": m.offset(), "value": m.value().decode()})
        if m.offset() >= first:
            break
    c.close()


if __name__ == "__main__":
    main()
