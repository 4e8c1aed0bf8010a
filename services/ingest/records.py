"""What ingest remembers besides the log: messageIds seen, duplicates counted, violations.

None of it is on the durability path (the log is), so it is written by one background
thread in batches, off the request: HTTP threads never queue for the database's write
lock behind the projectors. This process also keeps the messageIds it appended in
memory, so its own duplicates are caught at once; other replicas see them once the
writer has committed (within about 50 ms). A duplicate that slips through is harmless:
delivery is at-least-once and every consumer is idempotent by messageId.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import TextClause, bindparam, delete, text, update
from sqlalchemy.engine import Dialect, Engine

from services.ingest.tables import PlanViolation, SeenMessage, Source
from services.runtime import jsoncodec
from services.runtime.clock import now
from services.runtime.db import UtcDateTime, bind_processor, driver_errors_raised_as_sqlalchemy, writing

logger = logging.getLogger(__name__)

MEMORY_LIMIT = 200_000  # messageIds kept in memory per process
IDLE_EXIT_S = 5.0  # the writer thread ends when idle; the next write starts it again
PURGE_EVERY_S = 60.0
# what arrives within this long goes in one transaction: a commit every few single-event
# requests took a seventh of ingest's GIL time; this process's own duplicates are caught
# in memory meanwhile, and other processes see the ids this much later
GATHER_S = 0.05
MAX_LOOKUP_IDS = 5_000  # per query


# The ids go as one JSON array, unpacked by the database into rows of one column, `value`: an
# IN list expanded by SQLAlchemy, and a parameter set a row, cost 26 us of CPU an id between
# the look-up and the upsert on SQLite (29 on PostgreSQL); this, 23 on both.
_IDS = {"sqlite": "json_each(:ids)",
        "postgresql": "jsonb_array_elements_text(CAST(:ids AS jsonb)) AS ids(value)"}


@cache
def _seen_statement(dialect: str) -> TextClause:
    """The wanted ids already seen. On PostgreSQL each id is looked up in the primary key by
    itself (LATERAL ... LIMIT 1 can only be a nested loop): as a semi-join, a table not yet
    analysed (a new deployment's first minute, or a benchmark's run) had PostgreSQL guess
    that few rows are the source's, read every one of them and hash-join: 21 ms a look-up at
    80,000 ids, growing with the table, against 1 ms now at any size (tests/ingest)."""
    if dialect == "postgresql":
        return text(f"SELECT ids.value FROM {_IDS[dialect]} CROSS JOIN LATERAL "
                    f"(SELECT 1 FROM {SeenMessage.__tablename__} WHERE source_id = :source_id "
                    "AND message_id = ids.value AND seen_at >= :since LIMIT 1) AS seen"
                    ).bindparams(bindparam("since", type_=UtcDateTime()))
    return text(f"SELECT message_id FROM {SeenMessage.__tablename__} WHERE source_id = :source_id "
                f"AND seen_at >= :since AND message_id IN (SELECT value FROM {_IDS[dialect]})"
                ).bindparams(bindparam("since", type_=UtcDateTime()))


@cache
def _seen_query(dialect: Dialect) -> tuple[str, Callable[[str, datetime, list[str]], Any]]:
    """`_seen_statement` in the driver's SQL, and what makes its parameters (in the driver's
    order and types) of a source id, the window's start and the ids."""
    compiled = _seen_statement(dialect.name).compile(dialect=dialect)
    since_of = bind_processor(SeenMessage.__table__.c.seen_at.type, dialect) or (lambda value: value)

    def parameters(source_id: str, since: datetime, ids: list[str]) -> Any:
        named = {"source_id": source_id, "since": since_of(since), "ids": jsoncodec.dumps_text(ids)}
        return tuple(named[name] for name in compiled.positiontup) if compiled.positional else named
    return compiled.string, parameters


@cache
def _remember_statement(dialect: str) -> TextClause:
    """Upserts a source's ids as seen :at; each id once (PostgreSQL won't update a row twice in
    a statement). `WHERE true`: SQLite's parser needs a WHERE before ON CONFLICT here."""
    return text(f"INSERT INTO {SeenMessage.__tablename__} (source_id, message_id, seen_at) "
                f"SELECT :source_id, value, :at FROM {_IDS[dialect]} WHERE true "
                "ON CONFLICT (source_id, message_id) DO UPDATE SET seen_at = excluded.seen_at"
                ).bindparams(bindparam("at", type_=UtcDateTime()))


class IngestRecords:
    def __init__(self, engine: Engine, window_s: float):
        self.engine, self.window_s = engine, window_s
        self.recent: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.lock = threading.Lock()
        self.pending: queue.SimpleQueue = queue.SimpleQueue()
        self.writer: threading.Thread | None = None
        self.purged_at = 0.0
        self.writes = 0  # transactions committed, for tests to wait on

    # --- messageId dedupe -------------------------------------------------------------

    def duplicates(self, source_id: str, message_ids: Iterable[str]) -> set[str]:
        """The ids this source sent within the window (in memory here, or in the database)."""
        ids = set(message_ids)
        if not ids or self.window_s <= 0:
            return set()
        cutoff = time.monotonic() - self.window_s
        with self.lock:
            seen = {m for m in ids if (source_id, m) in self.recent and self.recent[(source_id, m)] >= cutoff}
        rest = ids - seen
        if rest:
            seen |= self._seen_in_database(source_id, rest)
        return seen

    def _seen_in_database(self, source_id: str, ids: set[str]) -> set[str]:
        """Of `ids`, those the database has for this source within the window: another
        process's, or this one's before a restart. In the caller's thread (ingest's Receiver
        already makes one call of the requests arriving together), on the driver's connection:
        through SQLAlchemy (a pool checkout, the engine's BEGIN, the statement, its result)
        it cost ~200 us, a third of receive_many for a single event."""
        sql, parameters = _seen_query(self.engine.dialect)
        since, wanted, found = now() - timedelta(seconds=self.window_s), list(ids), set()
        driver_error = self.engine.dialect.loaded_dbapi.Error
        with driver_errors_raised_as_sqlalchemy(sql, driver_error):
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                for at in range(0, len(wanted), MAX_LOOKUP_IDS):
                    cursor.execute(sql, parameters(source_id, since, wanted[at:at + MAX_LOOKUP_IDS]))
                    found.update(message_id for message_id, in cursor.fetchall())
                cursor.close()
            except driver_error as error:
                if self.engine.dialect.is_disconnect(error, connection.dbapi_connection, None):
                    connection.invalidate(error)  # as SQLAlchemy would: the pool drops it
                raise
            finally:
                connection.close()  # back to the pool, rolled back
        return found

    def remember(self, source_id: str, message_ids: list[str], duplicates: int) -> None:
        """Appended `message_ids` (and `duplicates` acknowledged but not appended)."""
        if self.window_s > 0 and message_ids:
            at = time.monotonic()
            with self.lock:
                for message_id in message_ids:
                    self.recent[(source_id, message_id)] = at
                    self.recent.move_to_end((source_id, message_id))
                while len(self.recent) > MEMORY_LIMIT:
                    self.recent.popitem(last=False)
            self._write(("seen", source_id, message_ids))
        if duplicates:
            self._write(("duplicates", source_id, duplicates))

    def violations(self, rows: list[dict]) -> None:
        if rows:
            self._write(("violations", rows))

    # --- the background writer --------------------------------------------------------

    def _write(self, item: tuple) -> None:
        self.pending.put(item)
        with self.lock:
            if self.writer is None or not self.writer.is_alive():
                self.writer = threading.Thread(target=self._run, name="ingest-records", daemon=True)
                self.writer.start()

    def _run(self) -> None:
        while True:
            try:
                batch = [self.pending.get(timeout=IDLE_EXIT_S)]
            except queue.Empty:
                with self.lock:
                    if self.pending.empty():
                        self.writer = None
                        return
                continue
            gathered_until = time.monotonic() + GATHER_S
            while len(batch) < 5_000 and (wait := gathered_until - time.monotonic()) > 0:
                try:
                    batch.append(self.pending.get(timeout=wait))
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[tuple]) -> None:
        seen_at, duplicates, violations = now(), {}, []
        seen: dict[str, dict[str, None]] = {}  # per source, each id once, in order
        for kind, *rest in batch:
            if kind == "seen":
                seen.setdefault(rest[0], {}).update(dict.fromkeys(rest[1]))
            elif kind == "duplicates":
                duplicates[rest[0]] = duplicates.get(rest[0], 0) + rest[1]
            else:
                violations += rest[0]
        try:
            with writing(self.engine) as session:
                remember = _remember_statement(self.engine.dialect.name)
                for source_id, message_ids in seen.items():
                    session.execute(remember, {"source_id": source_id, "at": seen_at,
                                               "ids": jsoncodec.dumps_text(list(message_ids))})
                for source_id, count in duplicates.items():
                    session.execute(update(Source).where(Source.id == source_id)
                                    .values(duplicates=Source.duplicates + count))
                if violations:
                    session.add_all(PlanViolation(**row) for row in violations)
                self._purge(session, seen_at)
            self.writes += 1
        except Exception:  # noqa: BLE001 - losing these only weakens dedupe, never loses events
            logger.exception("ingest: could not record %d seen messageIds / violations", len(batch))

    def _purge(self, session, at) -> None:
        if time.monotonic() - self.purged_at < PURGE_EVERY_S:
            return
        self.purged_at = time.monotonic()
        session.execute(delete(SeenMessage).where(SeenMessage.seen_at < at - timedelta(seconds=self.window_s)))
