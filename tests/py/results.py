"""What the client scripts share: reading an admin future's outcome, counting deliveries."""


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
