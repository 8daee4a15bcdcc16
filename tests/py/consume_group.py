"""Consumer-group scenarios with confluent-kafka (librdkafka) against a shadowlink node.

usage: consume_group.py BOOTSTRAP GROUP single (--topics T1,T2 | --pattern P) --count N [--idle S]
                        [--instance-id ID]
       consume_group.py BOOTSTRAP GROUP pair (--topics T1,T2 | --pattern P) --count N

single: one group member (static with --instance-id, KIP-345) reads N records, commits them synchronously, keeps polling for
        S more seconds (so records beyond N show up), closes (LeaveGroup).
pair:   member A starts alone; once a quarter is read member B joins (rebalance); once
        half is read and B holds partitions, A closes (rebalance again); B reads the rest.
        Offsets are committed synchronously on every revoke, so no record is read twice.

Prints one JSON object: {"records": [[topic, partition, offset], ...],
"assignments": {member: [[["topic", partition], ...] per assignment, ...]}}.
Exits non-zero on a consumer error or when N records do not arrive within 90 s.
"""
import argparse
import json
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException

TIMEOUT_S = 90


def config(bootstrap, group, instance_id=None):
    extra = {"group.instance.id": instance_id} if instance_id else {}
    return {**extra,
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "topic.metadata.refresh.interval.ms": 1000,
    }


class Member:
    """One consumer whose rebalances and records are recorded under a shared lock."""

    def __init__(self, name, bootstrap, group, topics, shared, instance_id=None):
        self.name = name
        self.shared = shared
        self.consumer = Consumer(config(bootstrap, group, instance_id))
        self.assignments = []
        self.owned = []
        self.consumer.subscribe(topics, on_assign=self.on_assign, on_revoke=self.on_revoke)

    def on_assign(self, consumer, partitions):
        self.owned = [(p.topic, p.partition) for p in partitions]
        with self.shared["lock"]:
            self.assignments.append(sorted(self.owned))

    def on_revoke(self, consumer, partitions):
        # Commit what was read before giving the partitions up, so the next owner
        # resumes exactly there.
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as e:
            if "NO_OFFSET" not in str(e):
                raise
        self.owned = []

    def poll_once(self, delay):
        m = self.consumer.poll(0.2)
        if m is None:
            return False
        if m.error():
            raise SystemExit("%s: consume error: %s" % (self.name, m.error()))
        with self.shared["lock"]:
            self.shared["records"].append([m.topic(), m.partition(), m.offset()])
        if delay:
            time.sleep(delay)
        return True

    def close(self):
        self.consumer.close()


def count(shared):
    with shared["lock"]:
        return len(shared["records"])


def subscription(a):
    return [a.pattern] if a.pattern else a.topics.split(",")


def single(a):
    shared = {"lock": threading.Lock(), "records": []}
    member = Member("A", a.bootstrap, a.group, subscription(a), shared, a.instance_id)
    deadline = time.time() + TIMEOUT_S
    while count(shared) < a.count and time.time() < deadline:
        member.poll_once(0)
    if count(shared) >= a.count:
        member.consumer.commit(asynchronous=False)
    idle_until = time.time() + a.idle
    while time.time() < idle_until:
        member.poll_once(0)
    member.close()
    return shared, {"A": member.assignments}


def pair(a):
    shared = {"lock": threading.Lock(), "records": []}
    members = {}
    stop = threading.Event()
    a_done = threading.Event()
    errors = []

    def run(name, until):
        try:
            member = Member(name, a.bootstrap, a.group, subscription(a), shared)
            members[name] = member
            while not stop.is_set() and not until.is_set():
                member.poll_once(0.005)
            member.close()
        except BaseException as e:  # reported by the main thread
            errors.append("%s: %r" % (name, e))
            stop.set()

    thread_a = threading.Thread(target=run, args=("A", a_done))
    thread_a.start()
    deadline = time.time() + TIMEOUT_S
    wait_until(lambda: count(shared) >= a.count // 4, deadline, stop)
    thread_b = threading.Thread(target=run, args=("B", stop))
    thread_b.start()
    b_holds = lambda: "B" in members and members["B"].owned
    wait_until(lambda: count(shared) >= a.count // 2 and b_holds(), deadline, stop)
    a_done.set()
    thread_a.join()
    wait_until(lambda: count(shared) >= a.count, deadline, stop)
    # A moment more, so a record read twice would show up.
    time.sleep(1)
    stop.set()
    thread_b.join()
    if errors:
        raise SystemExit("; ".join(errors))
    return shared, {name: m.assignments for name, m in members.items()}


def wait_until(condition, deadline, stop):
    while not condition():
        if stop.is_set():
            return
        if time.time() > deadline:
            stop.set()
            raise SystemExit("timed out waiting for the group")
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("group")
    ap.add_argument("mode", choices=["single", "pair"])
    ap.add_argument("--topics")
    ap.add_argument("--pattern")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--idle", type=float, default=0)
    ap.add_argument("--instance-id")
    a = ap.parse_args()
    shared, assignments = single(a) if a.mode == "single" else pair(a)
    records = shared["records"]
    print(json.dumps({"records": records, "assignments": assignments}))
    if len(records) < a.count:
        print("only %d of %d records arrived" % (len(records), a.count), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
