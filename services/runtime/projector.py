"""The projector loop, written once for every service.

A handler only says how to apply a batch of records to its tables (and which
messages that produces). The loop owns the rest: it reads a batch, and in ONE
database transaction it skips what the stored offsets say is already applied,
applies the rest, publishes the handler's output to the log, and stores the new
offsets. A crash anywhere before the commit replays the batch; after it, nothing
is replayed. Output may be published twice by a replayed batch, so every consumer
downstream is idempotent too.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from services.runtime.db import insert_new, writing
from services.runtime.log import Consumer, Log, Message, Record, TopicPartition
from services.runtime.tables import ConsumerOffset

logger = logging.getLogger(__name__)

Output = tuple[str, Message]  # (topic, message) to publish once the batch is applied


class Handler(Protocol):
    name: str  # the consumer group, and the key of its stored offsets
    topics: Sequence[str]

    def apply(self, session: Session, batch: list[Record]) -> list[Output]: ...


@dataclass
class Projector:
    handler: Handler
    engine: Engine
    log: Log
    batch_size: int = 500
    poll_timeout_s: float = 0.2
    max_backoff_s: float = 5.0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Consume until `stop` is set."""
        consumer = self.log.consumer(self.handler.name, self.handler.topics, self.stored_positions)
        failures = 0
        try:
            while not self.stop.is_set():
                batch = consumer.poll(self.batch_size, self.poll_timeout_s)
                if not batch:
                    continue
                try:
                    consumer.commit(self.apply(batch))
                    failures = 0
                except Exception:
                    failures += 1
                    logger.exception("%s: batch failed, replaying it", self.handler.name)
                    consumer.seek(self.stored_positions(sorted({r.tp for r in batch})))
                    self.stop.wait(min(self.max_backoff_s, 0.05 * 2 ** failures))
        finally:
            consumer.close()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=f"projector-{self.handler.name}", daemon=True)
        thread.start()
        return thread

    def stored_positions(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset of each partition, creating rows for new ones (so they can be locked)."""
        with writing(self.engine) as session:
            for tp in partitions:
                insert_new(session, ConsumerOffset, self._key(tp) | {"next_offset": 0},
                           ["consumer", "topic", "partition"])
            rows = session.scalars(select(ConsumerOffset).where(
                ConsumerOffset.consumer == self.handler.name)).all()
        return {TopicPartition(r.topic, r.partition): r.next_offset for r in rows
                if TopicPartition(r.topic, r.partition) in set(partitions)}

    def apply(self, batch: list[Record]) -> dict[TopicPartition, int]:
        """Apply one batch with its offsets in one transaction; answers the new positions."""
        with writing(self.engine) as session:
            offsets = self._lock_offsets(session, {r.tp for r in batch})
            fresh = [r for r in batch if r.offset >= offsets[r.tp].next_offset]
            outputs = self.handler.apply(session, fresh) if fresh else []
            for record in fresh:
                offsets[record.tp].next_offset = max(offsets[record.tp].next_offset, record.offset + 1)
            self._publish(outputs)  # durable before the commit: a crash replays, never loses
        return {tp: row.next_offset for tp, row in offsets.items()}

    def _lock_offsets(self, session: Session, partitions: set[TopicPartition]) -> dict:
        offsets = {}
        for tp in sorted(partitions):  # a fixed lock order: two workers never deadlock
            row = session.scalars(select(ConsumerOffset).filter_by(**self._key(tp))
                                  .with_for_update()).one_or_none()
            if row is None:
                row = ConsumerOffset(**self._key(tp), next_offset=0)
                session.add(row)
            offsets[tp] = row
        return offsets

    def _publish(self, outputs: list[Output]) -> None:
        by_topic: dict[str, list[Message]] = defaultdict(list)
        for topic, message in outputs:
            by_topic[topic].append(message)
        for topic, messages in by_topic.items():
            self.log.append(topic, messages)

    def _key(self, tp: TopicPartition) -> dict:
        return {"consumer": self.handler.name, "topic": tp.topic, "partition": tp.partition}
