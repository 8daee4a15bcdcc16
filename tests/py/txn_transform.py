"""Consume-transform-produce, exactly once: reads partition 0 of IN from the group's
committed offset at read_committed and, per poll, writes "out-VALUE" for every record to
partition 0 of OUT and commits the consumer's position in the same transaction
(send_offsets_to_transaction). Survives the node restarting underneath it: retriable
errors are retried, an abortable one aborts and rewinds to the committed offset.

usage: txn_transform.py BOOTSTRAP IN OUT END --id TRANSACTIONAL_ID --group GROUP

Stops once a committed transaction has consumed up to END; prints "transactions N
aborted M" (M aborted by this client after an error).
"""
import argparse
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def retried(call):
    while True:
        try:
            return call()
        except KafkaException as e:
            if not e.args[0].retriable():
                raise


def rewind(consumer, tp):
    committed = consumer.committed([tp], timeout=60)[0].offset
    consumer.seek(TopicPartition(tp.topic, tp.partition, max(committed, 0)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("end", type=int)
    ap.add_argument("--id", required=True)
    ap.add_argument("--group", required=True)
    a = ap.parse_args()
    consumer = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    })
    tp = TopicPartition(a.input, 0)
    consumer.assign([tp])
    producer = Producer({
        "bootstrap.servers": a.bootstrap,
        "transactional.id": a.id,
        "transaction.timeout.ms": 30000,
        "linger.ms": 5,
    })
    producer.init_transactions(60)
    transactions = aborted = 0
    deadline = time.time() + 180
    while time.time() < deadline:
        records = [m for m in consumer.consume(num_messages=10, timeout=0.5) if not m.error()]
        if not records:
            continue
        try:
            producer.begin_transaction()
            for m in records:
                producer.produce(a.output, value=b"out-" + m.value(), partition=0)
            positions = [TopicPartition(a.input, 0, records[-1].offset() + 1)]
            meta = consumer.consumer_group_metadata()
            retried(lambda: producer.send_offsets_to_transaction(positions, meta, 60))
            retried(lambda: producer.commit_transaction(60))
        except KafkaException as e:
            err = e.args[0]
            if not err.txn_requires_abort():
                raise
            retried(lambda: producer.abort_transaction(60))
            aborted += 1
            rewind(consumer, tp)
            continue
        transactions += 1
        if records[-1].offset() + 1 >= a.end:
            print("transactions %d aborted %d" % (transactions, aborted))
            return
    sys.exit("did not reach %d" % a.end)


if __name__ == "__main__":
    main()
