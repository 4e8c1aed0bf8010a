"""The projector loop, written once for every service.

A handler only says how to apply a batch of records to its tables (and which
messages that produces). The loop owns the rest: it reads a batch, and in ONE
database transaction it skips what the stored offsets say is already applied,
applies the rest, publishes the handler's output to the log, and stores the new
offsets. A crash anywhere before the commit replays the batch; after it, nothing
is replayed. Output may be published twice by a replayed batch, so every consumer
downstream is idempotent too.

Poison records: when a batch fails with an error that is not the database's or the
log's (those are retried with backoff, they pass), the batch is applied again one
record at a time; a record that fails on its own is parked (parked_events) in the
transaction that moves the offset past it, and the consumer goes on.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import exc, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from services.runtime import logs, metrics
from services.runtime.clock import now
from services.runtime.db import insert_new, pairs_in, writing
from services.runtime.log import Consumer, Log, LogUnavailable, Message, Record, TopicPartition, publish_all
from services.runtime.sealing import KeyStore, open_records
from services.runtime.statistics import TableStatistics
from services.runtime.tables import ConsumerOffset, ParkedEvent

logger = logging.getLogger(__name__)

Output = tuple[str, Message]  # (topic, message) to publish once the batch is applied
Positions = dict[TopicPartition, int]
LAG_INTERVAL_S = 1.0


class RetryBatch(Exception):
    """A handler found its batch raced by another worker: apply it again (nothing is parked)."""


def is_transient(error: Exception) -> bool:
    """Errors of the infrastructure, which pass, or a race: retry the batch rather than park records."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (RetryBatch, LogUnavailable, exc.OperationalError, exc.InterfaceError,
                              exc.TimeoutError, TimeoutError, ConnectionError))


class Handler(Protocol):
    name: str  # the consumer group, and the key of its stored offsets
    topics: Sequence[str]

    def apply(self, session: Session, batch: list[Record]) -> list[Output]: ...


@dataclass
class Projector:
    handler: Handler
    engine: Engine
    log: Log
    keys: KeyStore | None = None  # opens sealed records; None: records are read as they are
    # the records the handler needs (None: all); the others only move the position on
    # (a replay's snapshots superseded later in the log)
    keep: Callable[[Record], bool] | None = None
    batch_size: int = 500
    poll_timeout_s: float = 0.2
    max_backoff_s: float = 5.0
    stop: threading.Event = field(default_factory=threading.Event)
    retry_at: float = field(default=0.0, init=False)  # time.monotonic() before which not to poll
    _applied: Positions = field(default_factory=dict, init=False, repr=False)  # for lag
    _failures: int = field(default=0, init=False, repr=False)
    _lag_reported: float = field(default=0.0, init=False, repr=False)
    statistics: TableStatistics = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.statistics = TableStatistics(self.engine)

    def run(self) -> None:
        """Consume until `stop` is set; a batch under way is finished and committed first."""
        consumer = self.consumer()
        try:
            while not self.stop.is_set():
                self.step(consumer, self.poll_timeout_s)
                if (backoff := self.retry_at - time.monotonic()) > 0:
                    self.stop.wait(backoff)
        finally:
            consumer.close()

    def consumer(self) -> Consumer:
        """This projector's consumer, started at the stored offsets."""
        return self.log.consumer(self.handler.name, self.handler.topics, self.stored_positions)

    def step(self, consumer: Consumer, timeout_s: float) -> int:
        """One poll (waiting up to `timeout_s` for records), the batch applied and committed;
        answers how many records it read. A batch to replay sets `retry_at`, a backoff that
        grows with each failure in a row."""
        batch = consumer.poll(self.batch_size, timeout_s)
        if batch:
            positions = self.apply_or_recover(consumer, batch)
            if positions is None:
                self._failures += 1
                self.retry_at = time.monotonic() + min(self.max_backoff_s, 0.05 * 2 ** self._failures)
            else:
                consumer.commit(positions)
                self._failures = 0
                self.statistics.refresh_if_due()  # young tables outgrow their plans within a minute
        if time.monotonic() - self._lag_reported >= LAG_INTERVAL_S:
            self._report_lag(consumer)
            self._lag_reported = time.monotonic()
        return len(batch)

    def apply_or_recover(self, consumer: Consumer, batch: list[Record]) -> Positions | None:
        """The new positions, or None when the batch must be replayed after a backoff."""
        try:
            with metrics.CONSUMER_BATCH_SECONDS.labels(self.handler.name).time():
                return self.apply(batch)
        except Exception as error:
            metrics.CONSUMER_ERRORS.labels(self.handler.name, "batch").inc()
            if is_transient(error):
                logger.exception("%s: batch failed, replaying it", self.handler.name)
            else:
                logger.exception("%s: batch failed, applying it one record at a time",
                                 self.handler.name)
                positions = self._apply_one_by_one(batch)
                if positions is not None:
                    return positions
        self._rewind(consumer, sorted({r.tp for r in batch}))
        return None

    def _rewind(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Seek back to the stored offsets, retrying while the database is unreachable (a
        database restart must not end the projector's thread)."""
        failures = 0
        while not self.stop.is_set():
            try:
                consumer.seek(self.stored_positions(partitions))
                return
            except Exception as error:
                if not is_transient(error):
                    raise
                failures += 1
                logger.warning("%s: could not read stored offsets (%s), retrying", self.handler.name, error)
                self.stop.wait(min(self.max_backoff_s, 0.05 * 2 ** failures))

    def _apply_one_by_one(self, batch: list[Record]) -> Positions | None:
        """Apply each record alone, parking those that fail; None on a transient error."""
        positions: Positions = {}
        for record in batch:
            with logs.handling_event(record.topic, record.partition, record.offset):
                try:
                    positions |= self._apply_or_park(record)
                except Exception:
                    logger.exception("%s: transient error, replaying the batch", self.handler.name)
                    return None
        return positions

    def _apply_or_park(self, record: Record) -> Positions:
        try:
            return self.apply([record])
        except Exception as error:
            if is_transient(error):
                raise
            logger.exception("%s: parking a record its handler fails on", self.handler.name)
            return self.park(record, error)

    def park(self, record: Record, error: Exception) -> Positions:
        """Set `record` aside and move the offset past it, in one transaction."""
        with writing(self.engine) as session:
            offset = self._lock_offsets(session, {record.tp})[record.tp]
            if record.offset >= offset.next_offset:  # not parked or applied by another worker
                insert_new(session, ParkedEvent, {
                    **self._key(record.tp), "offset": record.offset, "key": record.key,
                    "value": record.value, "timestamp_ms": record.timestamp_ms,
                    "error": f"{type(error).__name__}: {error}"[:10_000], "attempts": 1,
                    "parked_at": now()}, ["consumer", "topic", "partition", "offset"])
                offset.next_offset = record.offset + 1
                metrics.CONSUMER_PARKED.labels(self.handler.name).inc()
                metrics.CONSUMER_ERRORS.labels(self.handler.name, "parked").inc()
        return {record.tp: offset.next_offset}

    def applied(self, tp: TopicPartition) -> int:
        """The next offset of `tp` as of this projector's last read or commit of it."""
        return self._applied.get(tp, 0)

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
        stored = {TopicPartition(r.topic, r.partition): r.next_offset for r in rows
                  if TopicPartition(r.topic, r.partition) in set(partitions)}
        self._applied |= stored
        return stored

    def apply(self, batch: list[Record]) -> dict[TopicPartition, int]:
        """Apply one batch with its offsets in one transaction; answers the new positions."""
        with writing(self.engine) as session:
            offsets = self._lock_offsets(session, {r.tp for r in batch})
            starts = {tp: row.next_offset for tp, row in offsets.items()}  # plain ints: read per record
            fresh = [r for r in batch if r.offset >= starts[r.tp]]
            needed = fresh if self.keep is None else [r for r in fresh if self.keep(r)]
            readable = self.open(needed)  # after the locks: an erasure can't slip in between
            outputs = self.handler.apply(session, readable) if readable else []
            for tp, end in _ends(fresh).items():  # a row's attribute set once, not per record
                offsets[tp].next_offset = max(offsets[tp].next_offset, end)
            self.publish(outputs)  # durable before the commit: a crash replays, never loses
        metrics.CONSUMER_APPLIED.labels(self.handler.name).inc(len(fresh))
        positions = {tp: row.next_offset for tp, row in offsets.items()}
        self._applied |= positions
        return positions

    def open(self, records: list[Record]) -> list[Record]:
        """The records opened; those sealed under a destroyed key (erased people) left out."""
        if self.keys is None or not records:
            return records
        opened, erased = open_records(self.keys, records)
        if erased:
            metrics.CONSUMER_ERASED.labels(self.handler.name).inc(erased)
        return opened

    def _report_lag(self, consumer: Consumer) -> None:
        try:
            lag = partition_lag(self.log, consumer, self._applied)
        except Exception as error:  # noqa: BLE001 - a metric must not stop the consumer
            logger.warning("%s: could not measure lag: %s", self.handler.name, error)
            return
        for tp, records in lag.items():
            metrics.CONSUMER_LAG.labels(self.handler.name, tp.topic, str(tp.partition)).set(records)

    def _lock_offsets(self, session: Session, partitions: set[TopicPartition]) -> dict:
        """The partitions' offset rows, locked by one statement (a batch takes it each time) in
        a fixed order, so two workers never deadlock; a missing one is made."""
        rows = session.scalars(select(ConsumerOffset).where(
            ConsumerOffset.consumer == self.handler.name,
            pairs_in(session, ConsumerOffset.topic, ConsumerOffset.partition,
                     [(tp.topic, tp.partition) for tp in partitions]))
            .order_by(ConsumerOffset.topic, ConsumerOffset.partition).with_for_update())
        offsets = {TopicPartition(row.topic, row.partition): row for row in rows}
        for tp in sorted(partitions - offsets.keys()):
            offsets[tp] = ConsumerOffset(**self._key(tp), next_offset=0)
            session.add(offsets[tp])
        return offsets

    def publish(self, outputs: list[Output]) -> None:
        publish_all(self.log, outputs)

    def _key(self, tp: TopicPartition) -> dict:
        return {"consumer": self.handler.name, "topic": tp.topic, "partition": tp.partition}


def _ends(records: list[Record]) -> Positions:
    """Each partition's offset after the last of `records` on it."""
    ends: Positions = {}
    for record in records:
        if record.offset >= ends.get(record.tp, 0):
            ends[record.tp] = record.offset + 1
    return ends


class ProjectorTurns:
    """Several projectors in one thread, taking turns in data-flow order: `rapport up`, where
    threads of their own gained nothing (one GIL, and SQLite's one writer) and each batch
    queued for the others' transactions, about 100 ms a hop at 150 events/s. A round gives
    each projector one batch of what is there; a round that finds nothing waits on the
    first projector's input (the pipeline's: events.raw) for up to its poll timeout."""

    def __init__(self, projectors: list[Projector]):
        self.projectors, self.stop = projectors, threading.Event()
        self.name = "projectors-" + "+".join(p.handler.name for p in projectors)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        consumers: list[Consumer] = []
        try:
            for projector in self.projectors:  # one by one: those made are closed if one fails
                consumers.append(projector.consumer())
            while not self.stop.is_set():
                turns = [(p, c) for p, c in zip(self.projectors, consumers) if p.retry_at <= time.monotonic()]
                if sum(p.step(c, 0) for p, c in turns) == 0:
                    self._idle(consumers[0])
        finally:
            for consumer in consumers:
                consumer.close()

    def _idle(self, consumer: Consumer) -> None:
        first = self.projectors[0]
        if (backoff := first.retry_at - time.monotonic()) > 0:
            self.stop.wait(min(backoff, first.poll_timeout_s))
        else:
            first.step(consumer, first.poll_timeout_s)


def partition_lag(log: Log, consumer: Consumer, applied: Positions) -> Positions:
    """Records on the log past what was applied, per partition this consumer owns.

    Kafka: the high watermark of the consumer's last fetch (Tansu answers end_offsets
    wrongly for multi-record batches); the embedded log: its end offsets.
    """
    kafka = getattr(consumer, "kafka", None)
    if kafka is None:
        ends = log.end_offsets(sorted(applied))
    else:
        from kafka.structs import TopicPartition as KafkaTopicPartition

        owned = {tp: KafkaTopicPartition(log.name(tp.topic), tp.partition) for tp in applied}
        assigned = kafka.assignment()
        ends = {tp: kafka.highwater(theirs) for tp, theirs in owned.items() if theirs in assigned}
    return {tp: max(0, end - applied[tp]) for tp, end in ends.items() if end is not None}
