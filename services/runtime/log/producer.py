"""The producer behind KafkaLog.append: librdkafka, through confluent-kafka.

kafka-python (the consumers and the admin client) builds, checksums and batches every record
in Python: about 30 us a message on the development machine, as much as the rest of ingest's
work on an event. librdkafka does that in C threads, ~10x faster on the same broker
(bench/ingest.py prints both bare producers). The settings keep what KafkaLog promises:

- acks=all, and an append returns only once every message of it is acknowledged;
- one request in flight a connection, so a retry can't reorder a key's messages;
- Java's murmur2 partitioner, the one kafka-python's producer and Java clients use: a key
  lands on the partition it landed on before the switch, so each person stays on one.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as _Librdkafka

from services.runtime.log import LogUnavailable, Message

LINGER_MS = 2
SERVE_S = 0.1  # the callback thread's longest wait; it wakes at once for a delivery report
logger = logging.getLogger("rapport.kafka.producer")


def producer_config(servers: Sequence[str], timeout_ms: int) -> dict:
    """librdkafka's settings; bench/ingest.py's bare producer uses the same."""
    return {"bootstrap.servers": ",".join(servers), "acks": "all", "linger.ms": LINGER_MS,
            "compression.type": "none",  # CPU is what 2 cores lack, not bandwidth
            "max.in.flight.requests.per.connection": 1, "enable.idempotence": False,
            "partitioner": "murmur2_random",
            "request.timeout.ms": timeout_ms,
            # a dead broker fails a write after this, rather than librdkafka's default 5 minutes
            "message.timeout.ms": timeout_ms + LINGER_MS}


class _Delivery:
    """One append's outstanding acknowledgements. Reports arrive on whichever thread serves
    the producer's queue, hence the lock."""

    def __init__(self, count: int):
        self.left, self.error, self.lock, self.done = count, None, threading.Lock(), threading.Event()

    def __call__(self, error: KafkaError | None, _message) -> None:
        with self.lock:
            if error is not None and self.error is None:
                self.error = error
            self.left -= 1
            if self.left == 0:
                self.done.set()


class Producer:
    """A librdkafka producer and the thread that serves its delivery reports."""

    def __init__(self, servers: Sequence[str], timeout_ms: int):
        self.timeout_s = timeout_ms / 1000
        try:
            self.kafka = _Librdkafka({**producer_config(servers, timeout_ms), "logger": logger})
        except KafkaException as error:
            raise LogUnavailable(f"kafka producer: {error}") from error
        self.closing = threading.Event()
        self.server = threading.Thread(target=self._serve, name="kafka-delivery-reports", daemon=True)
        self.server.start()

    def send_all(self, topic: str, messages: Sequence[Message]) -> None:
        """Returns once every message is acknowledged by all in-sync replicas; raises
        LogUnavailable when one wasn't within the timeout."""
        delivery, deadline = _Delivery(len(messages)), time.monotonic() + self.timeout_s
        for message in messages:
            self._produce(topic, message, delivery, deadline)
        if not delivery.done.wait(max(0.0, deadline - time.monotonic()) + 1.0):
            raise LogUnavailable(f"kafka did not acknowledge {delivery.left} of {len(messages)} messages in time")
        if delivery.error is not None:
            raise LogUnavailable(f"kafka did not acknowledge the write: {delivery.error}")

    def _produce(self, topic: str, message: Message, delivery: _Delivery, deadline: float) -> None:
        key = message.key.encode() if message.key is not None else None
        while True:
            try:
                self.kafka.produce(topic, message.value, key, on_delivery=delivery)
                return
            except BufferError:  # the local queue is full: wait for deliveries to free room
                if time.monotonic() >= deadline:
                    raise LogUnavailable("kafka producer queue full: the broker takes writes too slowly")
                self.kafka.poll(SERVE_S)
            except KafkaException as error:
                raise LogUnavailable(f"kafka refused the write: {error}") from error

    def _serve(self) -> None:
        while not self.closing.is_set():
            self.kafka.poll(SERVE_S)

    def close(self, timeout_s: float = 5.0) -> None:
        """Sends what is queued, for at most `timeout_s`; what isn't acknowledged by then was
        never promised to anyone."""
        if self.closing.is_set():
            return  # closed already: librdkafka refuses a second close
        self.closing.set()
        self.server.join()
        self.kafka.flush(timeout_s)
        # then destroyed: left to the garbage collector, librdkafka went on reconnecting to a
        # broker that was gone, logging each try long after (seen at the end of test runs)
        self.kafka.purge()
        self.kafka.close()
