"""What the client scripts share: reading an admin future's outcome, counting deliveries."""
import logging
import sys
import time


def outcome(future, ok):
    """`ok` if the admin operation succeeded, else the broker's error name and text."""
    try:
        future.result(timeout=30)
        return ok
    except Exception as e:  # the KafkaException carries the broker's error
        err = e.args[0] if e.args else e
        name = err.name() if hasattr(err, "name") else type(err).__name__
        text = err.str() if hasattr(err, "str") else str(err)
        return "%s %s" % (name, text)


class Deliveries:
    """A confluent-kafka `on_delivery` callback that counts acknowledgements and errors."""

    def __init__(self):
        self.acked = 0
        self.errors = []

    def __call__(self, err, _msg):
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked += 1


def count_records(consumer, count, timeout=30):
    """Polls an assigned confluent-kafka consumer until it has read `count` records or
    `timeout` seconds passed; returns how many it read, exits on a consume error."""
    seen = 0
    deadline = time.time() + timeout
    while seen < count and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is None:
            continue
        if m.error():
            sys.exit("consume error: %s" % m.error())
        seen += 1
    return seen


def count_polled(consumer, count, timeout=30, give_up=lambda seen: False):
    """Polls a kafka-python consumer until it has read `count` records, `timeout`
    seconds passed or `give_up(seen)` is true; returns how many it read."""
    seen = 0
    deadline = time.time() + timeout
    while seen < count and time.time() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            seen += len(records)
        if give_up(seen):
            break
    return seen


class LoggedErrors(logging.Handler):
    """Keeps the error lines a library logs: kafka-python reports some refusals (SASL,
    topic authorization) only there."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())
