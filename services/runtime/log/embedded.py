"""The embedded log: an append-only table in its own SQLite file.

Every append is one IMMEDIATE transaction with synchronous=FULL, so a message is on
disk before append() returns. Consumers of one process are woken by a condition
variable; consumers in other processes notice new rows within `CROSS_PROCESS_WAIT_S`.
"""
from __future__ import annotations

import itertools
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import (BigInteger, Column, Integer, LargeBinary, MetaData, String, Table,
                        func, insert, select)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from services.runtime.db import make_engine
from services.runtime.log import LogUnavailable, Message, OnAssign, Record, TopicPartition

CROSS_PROCESS_WAIT_S = 0.05

schema = MetaData()
topics_table = Table(
    "log_topics", schema,
    Column("name", String(200), primary_key=True),
    Column("partitions", Integer, nullable=False),
)
records_table = Table(
    "log_records", schema,
    Column("topic", String(200), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("key", String, nullable=True),
    Column("value", LargeBinary, nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
)
positions_table = Table(
    "log_positions", schema,
    Column("group", String(200), primary_key=True),
    Column("topic", String(200), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, nullable=False),
)

_appended: dict[str, threading.Condition] = defaultdict(threading.Condition)


def partition_for(key: str | None, partitions: int, spread: itertools.count) -> int:
    """A key always lands on the same partition; keyless messages are spread."""
    if key is None:
        return next(spread) % partitions
    return zlib.crc32(key.encode()) % partitions


class EmbeddedLog:
    def __init__(self, settings):
        self.settings = settings
        self.url = settings.embedded_log_url
        self.engine = make_engine(self.url, durable=True)
        schema.create_all(self.engine)
        self._partitions: dict[str, int] = {}
        self._spread = itertools.count()
        self._appended = _appended[self.url]

    def ensure_topics(self, topics: Sequence[str]) -> None:
        with self.engine.begin() as conn:
            known = dict(conn.execute(select(topics_table.c.name, topics_table.c.partitions)).all())
            new = [{"name": t, "partitions": self.settings.partitions_for(t)}
                   for t in topics if t not in known]
            if new:
                conn.execute(insert(topics_table), new)
        self._partitions.update(known)
        self._partitions.update({row["name"]: row["partitions"] for row in new})

    def partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            self.ensure_topics([topic])
        return self._partitions[topic]

    def append(self, topic: str, messages: Sequence[Message]) -> None:
        if not messages:
            return
        count = self.partitions(topic)
        by_partition: dict[int, list[Message]] = defaultdict(list)
        for message in messages:
            by_partition[partition_for(message.key, count, self._spread)].append(message)
        now = int(time.time() * 1000)
        try:
            with self.engine.begin() as conn:
                rows = []
                for partition, batch in by_partition.items():
                    start = self._end_offset(conn, topic, partition)
                    rows += [{"topic": topic, "partition": partition, "offset": start + i,
                              "key": m.key, "value": m.value, "timestamp_ms": now}
                             for i, m in enumerate(batch)]
                conn.execute(insert(records_table), rows)
        except OperationalError as error:
            raise LogUnavailable(f"embedded log write failed: {error.orig}") from error
        with self._appended:
            self._appended.notify_all()

    @staticmethod
    def _end_offset(conn, topic: str, partition: int) -> int:
        last = conn.execute(
            select(func.max(records_table.c.offset))
            .where(records_table.c.topic == topic, records_table.c.partition == partition)
        ).scalar()
        return 0 if last is None else last + 1

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(rapport_read_only=True)
            return {tp: self._end_offset(conn, tp.topic, tp.partition) for tp in partitions}

    def read(self, tp: TopicPartition, start: int, limit: int) -> list[Record]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(rapport_read_only=True)
            rows = conn.execute(
                select(records_table)
                .where(records_table.c.topic == tp.topic, records_table.c.partition == tp.partition,
                       records_table.c.offset >= start)
                .order_by(records_table.c.offset).limit(limit)
            ).all()
        return [Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp_ms) for r in rows]

    def wait_for_append(self, timeout_s: float) -> None:
        with self._appended:
            self._appended.wait(min(timeout_s, CROSS_PROCESS_WAIT_S))

    def consumer(self, group: str, topics: Sequence[str], on_assign: OnAssign) -> "EmbeddedConsumer":
        return EmbeddedConsumer(self, group, topics, on_assign)

    def close(self) -> None:
        self.engine.dispose()


class EmbeddedConsumer:
    """Owns every partition of its topics: one process, one consumer per group."""

    def __init__(self, log: EmbeddedLog, group: str, topics: Sequence[str], on_assign: OnAssign):
        self.log, self.group = log, group
        assigned = [TopicPartition(t, p) for t in topics for p in range(log.partitions(t))]
        stored = on_assign(assigned)
        self.positions = {tp: stored.get(tp, 0) for tp in assigned}

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        while True:
            batch = self._fetch(max_records)
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0:
                return batch
            self.log.wait_for_append(remaining)

    def _fetch(self, max_records: int) -> list[Record]:
        batch: list[Record] = []
        for tp, position in self.positions.items():
            if len(batch) >= max_records:
                break
            records = self.log.read(tp, position, max_records - len(batch))
            if records:
                self.positions[tp] = records[-1].offset + 1
                batch += records
        return batch

    def seek(self, positions: dict[TopicPartition, int]) -> None:
        self.positions.update({tp: o for tp, o in positions.items() if tp in self.positions})

    def commit(self, positions: dict[TopicPartition, int]) -> None:
        rows = [{"group": self.group, "topic": tp.topic, "partition": tp.partition, "offset": o}
                for tp, o in positions.items()]
        statement = sqlite_insert(positions_table)
        statement = statement.on_conflict_do_update(
            index_elements=["group", "topic", "partition"], set_={"offset": statement.excluded.offset})
        with self.log.engine.begin() as conn:
            conn.execute(statement, rows)

    def close(self) -> None:
        pass
