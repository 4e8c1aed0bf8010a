"""The log: one interface, two backends (embedded SQLite, Kafka).

A log holds topics split into partitions; a message's key picks its partition, so
one person's events keep their order. Appending returns only once the messages are
durable (the embedded log has committed, Kafka has acks=all), or raises
LogUnavailable. Consumers don't own their positions: the projector stores them in
its own database, in the transaction that applies the batch, and tells the consumer
where to start on every partition assignment.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple, Protocol

from services.runtime import jsoncodec


class LogUnavailable(RuntimeError):
    """The log could not durably take a write (the client should retry later)."""


class TopicPartition(NamedTuple):
    """A named tuple, not a frozen dataclass: projectors and replays key dicts by it several
    times a record, and a tuple hashes and compares in C (0.1 us a look-up against 0.5)."""

    topic: str
    partition: int


@dataclass(frozen=True)
class Message:
    """What a producer appends: a key (None spreads messages round-robin) and a value."""

    key: str | None
    value: bytes

    @classmethod
    def of(cls, key: str | None, value: Any) -> "Message":
        return cls(key, jsoncodec.dumps(value))


@dataclass(frozen=True)
class Record:
    """What a consumer reads: a message with its place in the log."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp_ms: int

    @cached_property
    def tp(self) -> TopicPartition:  # kept: a projector asks it of every record several times
        return TopicPartition(self.topic, self.partition)

    def json(self) -> Any:
        return jsoncodec.loads(self.value)


# Called on every assignment with the partitions now owned; answers the offset to
# start each one at (missing: from the beginning).
OnAssign = Callable[[list[TopicPartition]], dict[TopicPartition, int]]


class Consumer(Protocol):
    def poll(self, max_records: int, timeout_s: float) -> list[Record]: ...
    def seek(self, positions: dict[TopicPartition, int]) -> None: ...
    def commit(self, positions: dict[TopicPartition, int]) -> None:
        """Report applied positions to the log (for lag); the projector's own copy rules."""
    def close(self) -> None: ...


class Log(Protocol):
    def ensure_topics(self, topics: Sequence[str]) -> None: ...
    def append(self, topic: str, messages: Sequence[Message]) -> None: ...
    def consumer(self, group: str, topics: Sequence[str], on_assign: OnAssign) -> Consumer: ...
    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...
    def close(self) -> None: ...


def publish_all(log: Log, outputs: Sequence[tuple[str, Message]]) -> None:
    """Append (topic, message) pairs, one append per topic, keeping each topic's order."""
    by_topic: dict[str, list[Message]] = {}
    for topic, message in outputs:
        by_topic.setdefault(topic, []).append(message)
    for topic, messages in by_topic.items():
        log.append(topic, messages)


def open_log(settings) -> Log:
    """The backend the settings name."""
    if settings.log_backend == "kafka":
        from services.runtime.log.kafka import KafkaLog

        return KafkaLog(settings)
    from services.runtime.log.embedded import EmbeddedLog

    return EmbeddedLog(settings)
