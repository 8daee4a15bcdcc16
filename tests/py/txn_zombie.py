"""Two confluent-kafka transactional producers with one transactional.id: the older one
(the zombie) writes and flushes, the newer one initialises, which must fence it; the
zombie then tries to write and commit, and the newer one commits its own records.

usage: txn_zombie.py BOOTSTRAP TOPIC --id TRANSACTIONAL_ID

Prints one JSON line: the error the zombie's commit raised (its name and whether the
client holds it fatal), or null if its commit went through.
"""
import argparse
import json
import sys

from confluent_kafka import KafkaException, Producer


def producer(a):
    return Producer({
        "bootstrap.servers": a.bootstrap,
        "transactional.id": a.id,
        "transaction.timeout.ms": 60000,
        "linger.ms": 5,
    })


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("--id", required=True)
    a = ap.parse_args()
    zombie = producer(a)
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(a.topic, value=b"zombie-0", partition=0)
    if zombie.flush(30):
        sys.exit("the zombie's first record was not delivered")

    fresh = producer(a)
    fresh.init_transactions(30)

    fenced = None
    try:
        zombie.produce(a.topic, value=b"zombie-1", partition=0)
        zombie.flush(10)
        zombie.commit_transaction(10)
    except KafkaException as e:
        err = e.args[0]
        fenced = {"name": err.name(), "fatal": err.fatal()}

    fresh.begin_transaction()
    for i in range(3):
        fresh.produce(a.topic, value=b"fresh-%d" % i, partition=0)
    fresh.commit_transaction(30)
    print(json.dumps({"zombie_commit_error": fenced}))


if __name__ == "__main__":
    main()
