"""The embedded log: an append-only table in its own SQLite file.

Group commit: append() hands its messages to the log's one writer thread and waits.
The writer takes every append waiting at that moment and commits them together in
one IMMEDIATE transaction with synchronous=FULL (one fsync for all), so a message is
on disk before its append() returns, and many concurrent appenders (HTTP request
threads) share the cost of a commit instead of queueing for one commit each.
Consumers of one process are woken by a condition variable; consumers in other
processes notice new rows within `CROSS_PROCESS_WAIT_S`.
"""
from __future__ import annotations

import itertools
import queue
import sqlite3
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import (BigInteger, Column, Integer, LargeBinary, MetaData, String, Table,
                        delete, func, insert, select)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from services.runtime.db import begin_immediate, make_engine
from services.runtime.log import LogUnavailable, Message, OnAssign, Record, TopicPartition

CROSS_PROCESS_WAIT_S = 0.05
MAX_GROUP_MESSAGES = 20_000  # bounds one transaction's size and latency
WRITE_TIMEOUT_MS = 10_000  # how long a commit waits for a lock held elsewhere before failing
POSITIONS_EVERY_S = 1.0  # how often consumers' progress reports are written

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

class _Appends:
    """Appends of this process per partition, so a consumer reads only the partitions that
    grew (a wake-up per append of any topic had every consumer query all its partitions)."""

    def __init__(self):
        self.changed = threading.Condition()
        self.counts: dict[TopicPartition, int] = defaultdict(int)

    def appended(self, partitions: set[TopicPartition]) -> None:
        with self.changed:
            for tp in partitions:
                self.counts[tp] += 1
            self.changed.notify_all()

    def wait(self, seen: dict[TopicPartition, int], timeout_s: float) -> None:
        """Until one of `seen`'s partitions grows, or `timeout_s`."""
        with self.changed:
            self.changed.wait_for(lambda: any(self.counts.get(tp, 0) != n for tp, n in seen.items()), timeout_s)


_appended: dict[str, _Appends] = defaultdict(_Appends)


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
        self._writer = _GroupWriter(self.engine, getattr(settings, "embedded_log_write_timeout_ms",
                                                         WRITE_TIMEOUT_MS))

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
        placed = [(partition_for(m.key, count, self._spread), m) for m in messages]
        self._writer.commit(_Append(topic, placed))
        self._appended.appended({TopicPartition(topic, p) for p in {p for p, _ in placed}})

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(rapport_read_only=True)
            return {tp: _end_offset(conn.exec_driver_sql, tp.topic, tp.partition) for tp in partitions}

    def read(self, tp: TopicPartition, start: int, limit: int) -> list[Record]:
        with self.engine.connect() as conn:  # SQL as text: building the select cost more than running it
            conn = conn.execution_options(rapport_read_only=True)
            rows = conn.exec_driver_sql(READ_RECORDS, (tp.topic, tp.partition, start, limit)).all()
        return [Record(*row) for row in rows]

    def forget_before(self, topic: str, cutoff_ms: int) -> int:
        """Retention: delete a topic's records older than `cutoff_ms`, except each partition's
        newest (it carries the partition's end offset, so offsets never restart). Answers how many."""
        newer = records_table.alias("newer")
        newest = (select(func.max(newer.c.offset)).where(newer.c.topic == records_table.c.topic,
                                                         newer.c.partition == records_table.c.partition)
                  .scalar_subquery())
        with self.engine.begin() as conn:
            return conn.execute(delete(records_table).where(
                records_table.c.topic == topic, records_table.c.timestamp_ms < cutoff_ms,
                records_table.c.offset < newest)).rowcount

    def wait_for_append(self, seen: dict[TopicPartition, int], timeout_s: float) -> None:
        """Until this process appends to one of `seen`'s partitions (counts as in `appends`), or
        CROSS_PROCESS_WAIT_S at most: other processes' appends are only found by reading."""
        self._appended.wait(seen, min(timeout_s, CROSS_PROCESS_WAIT_S))

    def appends(self, tp: TopicPartition) -> int:
        return self._appended.counts.get(tp, 0)

    def consumer(self, group: str, topics: Sequence[str], on_assign: OnAssign) -> "EmbeddedConsumer":
        return EmbeddedConsumer(self, group, topics, on_assign)

    @property
    def commits(self) -> int:
        """Transactions committed by this log's writer (fewer than appends under concurrency)."""
        return self._writer.commits

    def close(self) -> None:
        self._writer.stop()
        self.engine.dispose()


@dataclass(eq=False)
class _Append:
    """One append() waiting for the writer: its messages, each with its partition."""

    topic: str
    placed: list[tuple[int, Message]]
    done: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None


_STOP = object()


class _GroupWriter:
    """The one thread that writes: every append waiting when it wakes goes in one commit."""

    def __init__(self, engine, write_timeout_ms: int):
        self.engine, self.write_timeout_ms = engine, write_timeout_ms
        self.waiting: queue.SimpleQueue = queue.SimpleQueue()
        self.commits = 0
        self.next_offsets: dict[tuple[str, int], int] = {}  # per (topic, partition), as of data_version
        self.data_version: int | None = None
        self.thread = threading.Thread(target=self._run, name="embedded-log-writer", daemon=True)
        self.thread.start()

    def commit(self, append: _Append) -> None:
        """Returns once `append` is committed; raises LogUnavailable if it could not be."""
        if not self.thread.is_alive():
            raise LogUnavailable("the embedded log is closed")
        self.waiting.put(append)
        while not append.done.wait(1.0):
            if not self.thread.is_alive():
                raise LogUnavailable("the embedded log's writer stopped")
        if append.error is not None:
            raise append.error

    def stop(self) -> None:
        if self.thread.is_alive():
            self.waiting.put(_STOP)
            self.thread.join(timeout=30)

    def _run(self) -> None:
        with self.engine.connect() as conn:
            # no busy handler: `begin_immediate` waits for the lock itself, for at most
            # write_timeout_ms (shorter than the engine's), so a stuck lock answers 503 soon
            conn.connection.dbapi_connection.execute("PRAGMA busy_timeout=0")
            while True:
                group, stopping = self._gather()
                if group:
                    self._write(conn, group)
                if stopping:
                    return

    def _gather(self) -> tuple[list[_Append], bool]:
        group = [self.waiting.get()]
        size = len(group[0].placed) if group[0] is not _STOP else 0
        while size < MAX_GROUP_MESSAGES:
            try:
                group.append(self.waiting.get_nowait())
            except queue.Empty:
                break
            size += len(group[-1].placed) if group[-1] is not _STOP else 0
        stopping = any(a is _STOP for a in group)
        return [a for a in group if a is not _STOP], stopping

    def _write(self, conn, group: list[_Append]) -> None:
        error = None
        try:
            self._commit(conn.connection.dbapi_connection, group)
            self.commits += 1
        except sqlite3.OperationalError as failure:
            error = LogUnavailable(f"embedded log write failed: {failure}")
        except Exception as failure:  # noqa: BLE001 - every waiting caller must hear of it
            error = LogUnavailable(f"embedded log write failed: {failure!r}")
        for append in group:
            append.error = error
            append.done.set()

    def _commit(self, db, group: list[_Append]) -> None:
        """One transaction on the driver's connection (SQLAlchemy's statement machinery cost
        as much as the insert: this is every event's path). The partitions' next offsets are
        kept between commits; `PRAGMA data_version` moves when another connection (another
        process, retention) committed, and then they are read again."""
        begin_immediate(db, self.write_timeout_ms / 1000)
        try:
            version = db.execute("PRAGMA data_version").fetchone()[0]
            if version != self.data_version:
                self.next_offsets.clear()
            db.executemany(INSERT_RECORDS, _rows(db, group, int(time.time() * 1000), self.next_offsets))
            db.execute("COMMIT")
        except BaseException:
            self.next_offsets.clear()  # offsets handed out by a transaction that didn't commit
            if db.in_transaction:
                db.rollback()
            raise
        self.data_version = version


INSERT_RECORDS = ('INSERT INTO log_records ("topic", "partition", "offset", "key", "value", "timestamp_ms") '
                  "VALUES (?, ?, ?, ?, ?, ?)")
READ_RECORDS = ('SELECT "topic", "partition", "offset", "key", "value", "timestamp_ms" FROM log_records '
                'WHERE "topic" = ? AND "partition" = ? AND "offset" >= ? ORDER BY "offset" LIMIT ?')
END_OFFSET = 'SELECT max("offset") FROM log_records WHERE "topic" = ? AND "partition" = ?'


def _end_offset(execute, topic: str, partition: int) -> int:
    """The offset a partition's next record takes; `execute` is the driver's
    `Connection.execute` or SQLAlchemy's `exec_driver_sql` (both take the SQL and a tuple)."""
    last = execute(END_OFFSET, (topic, partition)).fetchone()[0]
    return 0 if last is None else last + 1


def _rows(db, group: list[_Append], now_ms: int, next_offset: dict[tuple[str, int], int]) -> list[tuple]:
    """Rows of every waiting append, numbered on from each partition's end, in arrival order;
    `next_offset` (each partition's, where known) is moved on past them."""
    rows = []
    for append in group:
        for partition, message in append.placed:
            place = (append.topic, partition)
            if place not in next_offset:
                next_offset[place] = _end_offset(db.execute, *place)
            rows.append((append.topic, partition, next_offset[place], message.key, message.value, now_ms))
            next_offset[place] += 1
    return rows


class EmbeddedConsumer:
    """Owns every partition of its topics: one process, one consumer per group."""

    def __init__(self, log: EmbeddedLog, group: str, topics: Sequence[str], on_assign: OnAssign):
        self.log, self.group = log, group
        assigned = [TopicPartition(t, p) for t in topics for p in range(log.partitions(t))]
        stored = on_assign(assigned)
        self.positions = {tp: stored.get(tp, 0) for tp in assigned}
        self._reported: dict[TopicPartition, int] = {}
        self._reported_at = self._read_all_at = 0.0
        self._seen = {tp: -1 for tp in assigned}  # appends counted when each was last read
        self._turn = 0  # the partition the next poll reads first is the one after this

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        while True:
            batch = self._fetch(max_records)
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0:
                return batch
            self.log.wait_for_append(self._seen, remaining)

    def _fetch(self, max_records: int) -> list[Record]:
        """Records of the partitions this process appended to since they were last read; of
        every partition once CROSS_PROCESS_WAIT_S has passed (appends of other processes)."""
        everything = time.monotonic() - self._read_all_at >= CROSS_PROCESS_WAIT_S
        if everything:
            self._read_all_at = time.monotonic()
        batch: list[Record] = []
        # each poll starts one partition further on: a backlog read first can't starve the rest
        partitions = list(self.positions.items())
        self._turn = (self._turn + 1) % max(1, len(partitions))
        for tp, position in partitions[self._turn:] + partitions[:self._turn]:
            if len(batch) >= max_records:
                break
            appends = self.log.appends(tp)  # taken before reading: a later append reads again
            if not everything and self._seen[tp] == appends:
                continue
            wanted = max_records - len(batch)
            records = self.log.read(tp, position, wanted)
            self._seen[tp] = appends if len(records) < wanted else -1  # full: there may be more
            if records:
                self.positions[tp] = records[-1].offset + 1
                batch += records
        return batch

    def seek(self, positions: dict[TopicPartition, int]) -> None:
        moved = {tp: o for tp, o in positions.items() if tp in self.positions}
        self.positions.update(moved)
        self._seen.update({tp: -1 for tp in moved})  # read them again from there

    def commit(self, positions: dict[TopicPartition, int]) -> None:
        """A progress report only (projectors keep their own offsets), so written at most every
        POSITIONS_EVERY_S: a durable write a batch made every hop of the pipeline wait an fsync
        and contend with the appends for the log's write lock."""
        self._reported |= positions
        if time.monotonic() - self._reported_at >= POSITIONS_EVERY_S:
            self._write_positions()

    def _write_positions(self) -> None:
        self._reported_at = time.monotonic()
        if not self._reported:
            return
        rows = [{"group": self.group, "topic": tp.topic, "partition": tp.partition, "offset": o}
                for tp, o in self._reported.items()]
        statement = sqlite_insert(positions_table)
        statement = statement.on_conflict_do_update(
            index_elements=["group", "topic", "partition"], set_={"offset": statement.excluded.offset})
        with self.log.engine.begin() as conn:
            conn.execute(statement, rows)
        self._reported = {}

    def close(self) -> None:
        try:
            self._write_positions()
        except OperationalError:
            pass  # a progress report: the log may be closing too
