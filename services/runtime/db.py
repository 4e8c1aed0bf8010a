"""Database engine, table base and the transaction helpers every service uses.

SQLite notes: the pysqlite driver's own transaction handling is switched off and we
emit BEGIN ourselves, IMMEDIATE for writers, so two writers never deadlock on a lock
upgrade (they queue on busy_timeout instead; within one process, `writing()` queues them
in arrival order first).
"""
from __future__ import annotations

import sqlite3
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from datetime import datetime, timezone

from sqlalchemy import (JSON, DateTime, LargeBinary, MetaData, String, Text, and_, bindparam, cast, column, create_engine, event,
                        exc, false, func, literal_column, or_, select, true, tuple_, update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

from services.runtime import jsoncodec

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every projection table; Alembic migrations are generated from it."""

    metadata = MetaData(naming_convention=NAMING)


class Json(TypeDecorator):
    """JSON on SQLite, JSONB on PostgreSQL."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        return dialect.type_descriptor(JSON())


class SortedJson(Json):
    """JSONB on PostgreSQL; on SQLite text with every object's keys sorted, so equal values
    are stored as equal text (SQLite keeps JSON as written, and replay compares rebuilt rows
    with the live ones as rows) without sorting the value in Python first."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        return super().load_dialect_impl(dialect) if dialect.name == "postgresql" else dialect.type_descriptor(Text())

    def process_bind_param(self, value, dialect):
        if dialect.name == "postgresql" or value is None:
            return value
        return jsoncodec.dumps_sorted(value).decode()

    def process_result_value(self, value, dialect):
        if dialect.name == "postgresql" or value is None:
            return value
        return jsoncodec.loads(value)


class UtcDateTime(TypeDecorator):
    """An aware UTC datetime on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# PostgreSQL plans each run of a statement psycopg has prepared for its parameters and the
# tables' sizes now. Its default may switch to a generic plan made once, kept until the next
# ANALYZE: one chosen while a table was small (a new deployment's first minute, a replay's
# copies) scans it per batch, or per id of a look-up, as it grows (a look-up of 100 ids
# planned at 300 rows took 562 ms at 100,000). `bench/load.py`, 1,000 events/s: PostgreSQL's
# CPU 12.9-13.6 -> 11.5 s in 30 s; planning every run costs less than those scans.
PLAN_CACHE_MODE = "force_custom_plan"


def make_engine(url: str, *, durable: bool = False) -> Engine:
    """An engine for `url`. `durable` makes SQLite fsync every commit (the embedded log)."""
    codec = {"json_serializer": jsoncodec.dumps_text, "json_deserializer": jsoncodec.loads}
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10,
                             connect_args={"options": f"-c plan_cache_mode={PLAN_CACHE_MODE}"}, **codec)
    _make_parent_dir(url)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60}, **codec)

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn):
        if conn.get_execution_options().get("rapport_read_only", False):
            conn.exec_driver_sql("BEGIN")
            return
        # the write lock, waited for promptly rather than by SQLite's busy handler (see
        # begin_immediate): another process's writers (ingest --workers) hold it often
        driver = conn.connection.dbapi_connection
        with driver_errors_raised_as_sqlalchemy("BEGIN IMMEDIATE", sqlite3.Error):
            driver.execute("PRAGMA busy_timeout=0")
            try:
                begin_immediate(driver, BUSY_TIMEOUT_MS / 1000)
            finally:
                driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    return engine


# How often a writer tries a SQLite file's write lock again while another connection holds
# it: after 0.2 ms, then twice as long each time up to 2 ms (a long holder, a backfill's
# chunk, costs ~500 tries a second). SQLite's own busy handler sleeps 1, 2, 5, 10, ... 100 ms
# between tries: behind a writer that commits every few ms it loses most races and sleeps on
# (two ingest processes on one embedded log had a single-event p99 of 180 ms).
LOCK_POLL_S, LOCK_POLL_MAX_S = 0.0002, 0.002
BUSY_TIMEOUT_MS = 60_000  # any other wait for a lock (reads, checkpoints)
_sleep = time.sleep  # tests count the tries


@contextmanager
def driver_errors_raised_as_sqlalchemy(statement: str, driver_error: type[Exception]) -> Iterator[None]:
    """For code that calls the driver itself: its errors raised as SQLAlchemy raises them
    (OperationalError and kin, which the services answer with 503, not 500)."""
    try:
        yield
    except driver_error as error:
        raise exc.DBAPIError.instance(statement, None, error, driver_error) from error


def begin_immediate(db: sqlite3.Connection, timeout_s: float) -> int:
    """BEGIN IMMEDIATE on the driver's connection `db` (whose busy_timeout is 0), tried again
    after LOCK_POLL_S, then twice as long each time up to LOCK_POLL_MAX_S, while another
    connection holds the write lock, for up to `timeout_s`; answers how many tries failed."""
    deadline, failed, wait = time.monotonic() + timeout_s, 0, LOCK_POLL_S
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return failed
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        _sleep(wait)
        failed, wait = failed + 1, min(wait * 2, LOCK_POLL_MAX_S)


def _make_parent_dir(url: str) -> None:
    path = url.split("///", 1)[-1] if "///" in url else ""
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


class _WriterQueue:
    """First come, first served among one process's writers of one SQLite file. SQLite's
    busy handler makes a waiting writer sleep and retry (up to 100 ms a try), so a writer
    that commits and begins again at once (a busy projector) starves the others for seconds."""

    def __init__(self):
        self._lock, self._waiting, self._held, self._owner = threading.Lock(), deque(), False, None

    @contextmanager
    def turn(self) -> Iterator[None]:
        if self._owner == threading.get_ident():  # nested: the thread has its turn already
            yield
            return
        with self._lock:
            mine = threading.Event() if self._held else None
            self._held = True
            if mine is not None:
                self._waiting.append(mine)
        if mine is not None:
            mine.wait()  # the writer before hands its turn over
        self._owner = threading.get_ident()
        try:
            yield
        finally:
            self._owner = None
            with self._lock:
                if self._waiting:
                    self._waiting.popleft().set()
                else:
                    self._held = False


_writer_queues: dict[str, _WriterQueue] = defaultdict(_WriterQueue)
_writer_queues_lock = threading.Lock()


def _writer_queue(engine: Engine) -> _WriterQueue:
    with _writer_queues_lock:
        return _writer_queues[str(engine.url)]


@contextmanager
def writing(engine: Engine) -> Iterator[Session]:
    """One write transaction: commits on success, rolls back on any exception."""
    if engine.dialect.name != "sqlite":
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
        return
    with _writer_queue(engine).turn(), Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """A read-only session (a deferred transaction on SQLite, so it never blocks writers)."""
    with engine.connect() as conn:
        conn = conn.execution_options(rapport_read_only=True)
        with Session(bind=conn) as session:
            yield session


def core_rows(session: Session, statement: Any) -> Any:
    """The rows of a select of columns as plain tuples: pending ORM objects flushed first, as
    `Session.execute` does, but not each row through the ORM's loading (in identity's reads
    of a batch's links, ~6% of the handler's py-spy samples on SQLite)."""
    session.flush()
    return session.connection().execute(statement)


IN_LIST = 500  # values in one IN (...): well under SQLite's and PostgreSQL's parameter limits


def in_chunks(values: Iterable, size: int = IN_LIST) -> list[list]:
    """`values`, sorted, in lists short enough for one IN (...) each."""
    ordered = sorted(values)
    return [ordered[at:at + size] for at in range(0, len(ordered), size)]


def each_in(session: Session, column: Any, values: Iterable) -> Iterator[Any]:
    """`column IN values` as conditions to query in turn, in sorted order (lock order): on
    PostgreSQL one `column IN (SELECT unnest(:array))`, one parameter, so SQLAlchemy expands
    no list and psycopg parses the statement once (it parses statements of over 50
    parameters every time); on SQLite IN lists short enough for its parameter limit.
    Not `column = ANY(:array)`: once psycopg prepares the statement, PostgreSQL's generic
    plan of a table it scans (small, or not analysed yet, as after a replay) compares each
    row with every element in turn: 28 ms for 2,000 rows and 500 ids, against under 1 ms
    for the semi-join, which hashes the ids or probes the index with each."""
    if session.get_bind().dialect.name != "postgresql":
        yield from (column.in_(chunk) for chunk in in_chunks(values))
    elif ordered := sorted(values):
        yield in_array(column, ordered)


def in_array(column: Any, values: list) -> Any:
    """PostgreSQL: `column IN (SELECT unnest(:array))`, the values as one array parameter."""
    return column.in_(select(_unnested(values, column.type)))


def pairs_in(session: Session, first: Any, second: Any, pairs: Iterable[tuple]) -> Any:
    """`(first, second) IN pairs`. On PostgreSQL against two unnested array parameters: one
    statement text whatever the number of pairs, so SQLAlchemy expands no list and psycopg
    parses it once. On SQLite spelled as `first = a AND second IN (...)` per first value: it
    answers a row-value IN (VALUES ...) by scanning the whole table, this by its index."""
    pairs = list(pairs)
    if session.get_bind().dialect.name == "postgresql":
        return tuple_(first, second).in_(select(_unnested([a for a, _ in pairs], first.type),
                                                _unnested([b for _, b in pairs], second.type)))
    grouped: dict[Any, list] = defaultdict(list)
    for a, b in pairs:
        grouped[a].append(b)
    return or_(false(), *(and_(first == a, second.in_(bs)) for a, bs in sorted(grouped.items())))


def _unnested(values: list, type_: Any) -> Any:
    return func.unnest(_array(values, type_))


def _array(values: list, type_: Any) -> Any:
    """An array parameter. Strings go as one array literal, spelled by `array_literal` at
    0.2 us a value: psycopg's ListDumper, Python code, took 1.7 us (a tenth of the identity
    projector's time, py-spy under bench/load.py)."""
    if isinstance(type_, String) and all(v is None or type(v) is str for v in values):
        return cast(bindparam(None, array_literal(values), type_=Text()), postgresql.ARRAY(type_))
    return cast(bindparam(None, values, type_=postgresql.ARRAY(type_)), postgresql.ARRAY(type_))


def array_literal(values: list[str | None]) -> str:
    """PostgreSQL's text form of a one-dimensional array: each value quoted, with its
    backslashes and double quotes escaped, so no content reads as syntax; None as NULL."""
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def upsert(session: Session, model: Any, rows: Sequence[dict], keys: Iterable[str],
           update: Iterable[str] | None = None, where: Any = None) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE/NOTHING on SQLite and PostgreSQL alike (on
    PostgreSQL one JSON document, see `_recordset_insert`). Rows name table columns,
    all the same ones; a key may come once only when updating (PostgreSQL's rule)."""
    if not rows:
        return
    statement, parameters = _many_rows(session, getattr(model, "__table__", model), rows)
    keys = list(keys)
    if update is None:
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    else:
        changes = {name: getattr(statement.excluded, name) for name in update}
        statement = statement.on_conflict_do_update(index_elements=keys, set_=changes, where=where)
    session.flush()  # as an ORM insert would: pending objects first, in the order they came
    session.connection().execute(statement, parameters)


def insert_rows(session: Session, model: Any, rows: Sequence[dict]) -> None:
    """A plain INSERT of `rows` (a key taken already raises), in one statement on PostgreSQL."""
    if rows:
        session.flush()
        session.connection().execute(*_many_rows(session, getattr(model, "__table__", model), rows))


def _many_rows(session: Session, table: Any, rows: Sequence[dict]) -> tuple[Any, Any]:
    """An INSERT of `rows` and its parameters: one JSON document on both backends (VALUES on
    SQLite for a table with a binary column: JSON has no bytes)."""
    dialect = session.get_bind().dialect
    names = list(rows[0])
    if dialect.name != "postgresql":
        if any(isinstance(table.c[name].type, LargeBinary) for name in names):
            return sqlite.insert(table), list(rows)
        return _json_each_insert(table, tuple(names)), {"rows": _bound_rows(dialect, table, names, rows)}
    _refuse_naive_times(table, names, rows)
    binary = [name for name in names if isinstance(table.c[name].type, LargeBinary)]
    if binary:  # bytea's text form; JSON has no bytes
        rows = [row | {name: None if row[name] is None else "\\x" + row[name].hex() for name in binary}
                for row in rows]
    return _recordset_insert(table, names), {"rows": jsoncodec.dumps_text(rows)}


@cache
def _json_each_insert(table: Any, names: tuple[str, ...]) -> Any:
    """INSERT INTO table (names) SELECT json_extract(value, '$[0]'), ... FROM json_each(:rows)
    WHERE true (SQLite): the rows as one JSON array of arrays, each value already as the
    column's bind processor makes it. An executemany ran SQLAlchemy's parameter processing,
    in Python, for every value of every row: a fifth of the profile projector's time.
    `WHERE true`: SQLite's parser needs a WHERE before an ON CONFLICT here."""
    rows = func.json_each(bindparam("rows", type_=Text())).table_valued("value")
    return sqlite.insert(table).from_select(list(names), select(*(
        func.json_extract(rows.c.value, literal_column(f"'$[{i}]'")) for i in range(len(names)))).where(true()))


def bind_processor(type_: Any, dialect: Any) -> Any:
    """What SQLAlchemy makes of a value of `type_` before the driver gets it (None: nothing),
    for code that hands values to the driver or to SQL itself. The dialect's implementation's,
    not the type's own: a `UtcDateTime`'s own leaves a datetime, which SQLite's driver writes
    as "...+00:00" where SQLAlchemy stores "...123456"."""
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _bound_rows(dialect: Any, table: Any, names: list[str], rows: Sequence[dict]) -> str:
    """`rows` as a JSON array of arrays of what each column's bind processor makes of its
    value (a JSON column's text, a time's text), so SQLite stores what an executemany stores."""
    pairs = [(name, bind_processor(table.c[name].type, dialect)) for name in names]
    return jsoncodec.dumps_text([[row[name] if process is None else process(row[name]) for name, process in pairs]
                                 for row in rows])


def insert_new_rows(session: Session, model: Any, rows: Sequence[dict], keys: Sequence[str]) -> set[tuple]:
    """Insert the rows whose keys don't exist yet, in one statement; answers the new keys."""
    if not rows:
        return set()
    table = model.__table__
    statement, parameters = _many_rows(session, table, rows)
    statement = statement.on_conflict_do_nothing(index_elements=list(keys)).returning(*(table.c[k] for k in keys))
    return {tuple(row) for row in session.connection().execute(statement, parameters)}


def _recordset_insert(table: Any, names: list[str]) -> Any:
    """INSERT INTO table (names) SELECT ... FROM jsonb_to_recordset(:rows): the rows as one
    JSON document, one text parameter that orjson writes. A multi-row VALUES has a parameter
    a value, and psycopg parses every such statement afresh (a sixth of the profile
    projector's time); arrays a column (unnest) cost psycopg's array dumper, written in
    Python, an eighth of it still. JSON null is kept as JSON null in JSON columns, as an
    ORM insert writes None."""
    rows = _recordset([(name, table.c[name].type) for name in names])
    return postgresql.insert(table).from_select(names, select(*(
        func.coalesce(rows.c[name], literal_column("'null'::jsonb"))
        if isinstance(table.c[name].type, Json) else rows.c[name] for name in names)))


def _recordset(fields: list[tuple[str, Any]]) -> Any:
    """The rows of the JSON document bound as :rows, each field typed (PostgreSQL)."""
    return (func.jsonb_to_recordset(cast(bindparam("rows", type_=Text()), postgresql.JSONB()))
            .table_valued(*(column(name, type_) for name, type_ in fields))
            .render_derived(name="row", with_types=True))


def update_each(session: Session, table: Any, key: str, changes: dict[Any, dict[str, Any]]) -> None:
    """UPDATE table SET values WHERE key = k, for each k and its values (all setting the same
    columns): on PostgreSQL one statement joined to the changes unnested from an array a
    column, on SQLite an executemany. Not joined to a JSON document: PostgreSQL guesses that
    `jsonb_to_recordset` yields 100 rows, so for a key of ~10 rows each it expected ~1,000 to
    update and chose to scan the whole table (identity_events at 60,000 rows: 11-14 ms
    against 1.2-2.7 ms probing the key's index); it plans `unnest` for the array's length."""
    if not changes:
        return
    names = list(next(iter(changes.values())))
    session.flush()
    if session.get_bind().dialect.name != "postgresql":
        statement = update(table).where(table.c[key] == bindparam("match_")).values(
            {n: bindparam(f"new_{n}") for n in names})
        session.connection().execute(statement, [{"match_": k, **{f"new_{n}": v for n, v in values.items()}}
                                                 for k, values in changes.items()])
        return
    keys = list(changes)
    new = func.unnest(_array(keys, table.c[key].type), *(_array([changes[k][n] for k in keys], table.c[n].type)
                                                         for n in names)
                      ).table_valued("match_", *(f"new_{n}" for n in names)).render_derived(name="changes")
    statement = update(table).where(table.c[key] == new.c.match_).values({n: new.c[f"new_{n}"] for n in names})
    session.connection().execute(statement)


def _refuse_naive_times(table: Any, names: list[str], rows: Sequence[dict]) -> None:
    """As UtcDateTime does for one value: a naive time would be read in the server's zone."""
    for name in names:
        if isinstance(table.c[name].type, UtcDateTime) and any(
                row[name] is not None and row[name].tzinfo is None for row in rows):
            raise ValueError(f"naive datetime given to the UTC column {table.name}.{name}")


def insert_new(session: Session, model: Any, row: dict, keys: Iterable[str]) -> bool:
    """Insert `row` unless its key exists; True when it was new (idempotent writes)."""
    keys = list(keys)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (dialect.insert(model).values(**row).on_conflict_do_nothing(index_elements=keys)
                 .returning(getattr(model, keys[0])))  # rowcount is -1 on some drivers
    return session.execute(statement).first() is not None
