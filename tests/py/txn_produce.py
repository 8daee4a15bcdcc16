"""A confluent-kafka (librdkafka) transactional producer on one partition.

usage: txn_produce.py BOOTSTRAP TOPIC --id TRANSACTIONAL_ID --timeout-ms T
                      [--abort N] [--commit N] [--open N]

Runs, in order: a transaction of N records "aborted-i" that it aborts, one of N
records "committed-i" that it commits, and one of N records "open-i" that it flushes
and leaves open: the process then exits at once, without aborting, as a crashed
producer would. Prints "done" when all of that succeeded.
"""
import argparse
import os
import sys

from confluent_kafka import Producer


def send(p, topic, prefix, n):
    for i in range(n):
        p.produce(topic, value=b"%s-%d" % (prefix, i), partition=0)
    remaining = p.flush(30)
    if remaining:
        sys.exit("%d %s records not delivered" % (remaining, prefix.decode()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("--id", required=True)
    ap.add_argument("--timeout-ms", type=int, required=True)
    ap.add_argument("--abort", type=int, default=0)
    ap.add_argument("--commit", type=int, default=0)
    ap.add_argument("--open", type=int, default=0)
    a = ap.parse_args()
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "transactional.id": a.id,
        "transaction.timeout.ms": a.timeout_ms,
        "linger.ms": 5,
    })
    p.init_transactions(30)
    if a.abort:
        p.begin_transaction()
        send(p, a.topic, b"aborted", a.abort)
        p.abort_transaction(30)
    if a.commit:
        p.begin_transaction()
        send(p, a.topic, b"committed", a.commit)
        p.commit_transaction(30)
    if a.open:
        p.begin_transaction()
        send(p, a.topic, b"open", a.open)
        print("done", flush=True)
        os._exit(0)
    print("done", flush=True)


if __name__ == "__main__":
    main()
