"""Replay: rebuild a projection from the start of the log into fresh tables, swap them in.

The live projection keeps serving and consuming while its copy is rebuilt:
- the copy lives in scratch tables: on PostgreSQL a schema `replay_<consumer>` in the same
  database (the handler runs with schema_translate_map), on SQLite a file next to the
  database (attached as `replay` for the swap). The handler is the live one; its output is
  discarded (it is on the log already), and it reads from a fresh consumer group.
- inputs that are not projections (segment definitions, operator overrides) are copied
  into the scratch tables first, and must be unchanged at the swap.
- a projection whose tables follow from each key's last record (segments: a profile's last
  snapshot) is rebuilt from those records only, found by a first pass over the keys.
- the swap is one transaction: it locks the live consumer's offset rows (the live
  projector pauses), applies the last records so the copy is exactly as far as the live
  projection, counts differing rows, makes the live rows equal to the copy (deleting the
  rows only live and inserting those only rebuilt; profiles, whose versions are raised, and
  tables keyed by a surrogate id are replaced whole), and commits. Readers see the old rows
  until the commit (MVCC; SQLite's WAL snapshot).

`rebuild_all` rebuilds several projections each in a process of its own, at the same time:
they share no table (on SQLite each copy is a file of its own, so they don't queue for one
writer; only the swaps take the live file's lock, one after the other), and one Python
process uses one core. The processes are forked from a server process that has imported the
services once (multiprocessing's forkserver, where the platform has it): each spawned afresh
imported them itself, 1-2 s of CPU a process, as long as a replay of ten thousand events.
"""
from __future__ import annotations

import multiprocessing
import resource
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import (ColumnElement, Connection, Engine, MetaData, Table, create_engine, delete, event,
                        exists, func, insert, select, text, update)
from sqlalchemy.engine import make_url

from services.runtime.db import Base, make_engine
from services.runtime.log import Consumer, Log, Message, Record, TopicPartition
from services.runtime.projector import Handler, Positions, Projector
from services.runtime.tables import ConsumerOffset

SCRATCH = "replay"
STALL_S = 120.0
Progress = Callable[[int, int], None]  # (records applied, records to apply)


@dataclass(frozen=True)
class Projection:
    consumer: str
    tables: tuple[str, ...]  # rebuilt by replay and swapped in
    inputs: tuple[str, ...] = ()  # read by the handler, written elsewhere: copied, must not change
    volatile: dict[str, tuple[str, ...]] = field(default_factory=dict)  # wall-clock of applying
    lock: tuple[str, ...] = ()  # statements the swap runs first, to order it with other writers
    # counters readers compare across the swap (profile versions order snapshots): the swap
    # adds the live maximum, so they keep growing; not compared
    monotonic: dict[str, str] = field(default_factory=dict)
    # the tables hold what each key's last record says, whatever came before it (snapshots):
    # the replay applies only that record of each key
    latest_only: bool = False

    def uncompared(self, table: str) -> tuple[str, ...]:
        return self.volatile.get(table, ()) + tuple(c for t, c in self.monotonic.items() if t == table)


PROJECTIONS = {p.consumer: p for p in (
    Projection("identity", ("identity_links", "identity_components", "identity_events",
                            "identity_profiles", "identity_merges", "identity_refusals"),
               inputs=("identity_overrides", "identity_rules", "suppressed_identifiers")),
    Projection("profile", ("profiles", "profile_traits", "profile_events", "profile_aliases",
                           "profile_identities"),
               inputs=("computed_trait_definitions",), monotonic={"profiles": "version"}),
    # membership history is not swapped: its sequence numbers are marketing tools' cursors
    # a profile's snapshot, memberships and stage follow from its last profiles.changed record
    # alone (the lifecycle tables, whose transitions would need every snapshot, are not rebuilt)
    Projection("segments", ("segment_profiles", "segment_members"),
               inputs=("segments", "segment_catalog"), volatile={"segment_members": ("entered_at",)},
               lock=("UPDATE segment_catalog SET version = version",), latest_only=True),
)}


class ReplayAborted(RuntimeError):
    pass


@dataclass
class Report:
    consumer: str
    records: int
    differences: dict[str, tuple[int, int]]  # table: (rows only live, rows only rebuilt)
    swapped: bool
    superseded: int = 0  # records not applied: a later record of their key says it all
    peak_memory_mb: float = 0.0  # the most resident memory of the process that rebuilt it

    @property
    def equal(self) -> bool:
        return not any(a or b for a, b in self.differences.values())


class DiscardingLog:
    """The live log for reading; writes go nowhere (replayed output is on the log already)."""

    def __init__(self, log: Log):
        self.log = log

    def append(self, topic: str, messages: Sequence[Message]) -> None:
        pass

    def __getattr__(self, name):
        return getattr(self.log, name)


class Scratch:
    """Where a projection's copy is built, and a connection that sees it beside the live tables."""

    def __init__(self, live: Engine, consumer: str):
        self.live, self.sqlite = live, live.dialect.name == "sqlite"
        if self.sqlite:
            database = Path(make_url(live.url).database)
            self.path = database.with_name(f"{database.name}.replay-{consumer}")
            self.path.unlink(missing_ok=True)
            self.engine, self.schema = make_engine(f"sqlite:///{self.path}"), SCRATCH
            self.both = _sqlite_with_attached(live.url, self.path)
        else:
            self.schema = f"replay_{consumer}"
            with live.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
                conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            self.engine = live.execution_options(schema_translate_map={None: self.schema})
            self.both = live
        Base.metadata.create_all(self.engine)
        if not self.sqlite:
            self._unlogged()

    def _unlogged(self) -> None:
        """PostgreSQL: the copy's tables write no WAL. A crash empties them, and a replay
        cut short starts again from the start anyway; the swap writes the live (logged)
        tables, so what it commits is as durable as any write."""
        with self.live.begin() as conn:
            for table in Base.metadata.sorted_tables:
                conn.execute(text(f'ALTER TABLE "{self.schema}"."{table.name}" SET UNLOGGED'))

    def table(self, name: str) -> Table:
        return Base.metadata.tables[name].to_metadata(MetaData(), schema=self.schema)

    def drop(self) -> None:
        if self.sqlite:
            self.both.dispose()
            self.engine.dispose()
            self.path.unlink(missing_ok=True)
        else:
            with self.live.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))


def _sqlite_with_attached(url, path: Path) -> Engine:
    """The live SQLite database with the scratch file attached. BEGIN is deferred so the
    swap's first write locks only the live file (the scratch one stays writable)."""
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout=60000")
        dbapi_connection.execute(f"ATTACH DATABASE '{path}' AS {SCRATCH}")

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN")

    return engine


def rebuild(runtime, handler: Handler, *, swap: bool = True, progress: Progress | None = None) -> Report:
    """Rebuild `handler`'s projection from the log; swap it in unless `swap` is False."""
    projection = PROJECTIONS[handler.name]
    scratch = Scratch(runtime.engine, handler.name)
    try:
        with scratch.both.begin() as conn:
            _copy(conn, projection.inputs, source=_live, target=scratch.table)
        target = live_offsets(runtime.engine, handler.name)
        latest_only = projection.latest_only and runtime.settings.replay_latest_only
        last = _last_of_each_key(runtime.log, handler.topics, target) if latest_only else None
        replayer = Projector(handler, scratch.engine, DiscardingLog(runtime.log), keys=runtime.keys,
                             batch_size=runtime.settings.replay_batch_size, keep=last.keeps if last else None)
        consumer = _reader(runtime.log, handler.name, handler.topics, replayer.stored_positions)
        try:
            _catch_up(replayer, consumer, target, progress)
            with scratch.both.begin() as conn:
                report = _swap(conn, scratch, projection, replayer, consumer, swap, progress)
            report.superseded = last.superseded if last else 0
            report.peak_memory_mb = peak_memory_mb()
            return report
        finally:
            consumer.close()
    finally:
        scratch.drop()


NamedProgress = Callable[[str, int, int], None]  # (projection, records applied, records to apply)


def rebuild_all(runtime, names: Sequence[str], *, swap: bool = True,
                progress: NamedProgress | None = None) -> list[Report]:
    """Rebuild the projections `names` (see the module's note); reports in that order. A
    projection that aborts raises once the others have finished (each swaps on its own)."""
    if len(names) < 2:
        handlers = replayable(runtime)
        return [rebuild(runtime, handlers[name], swap=swap, progress=_for(progress, name)) for name in names]
    context = _workers_context()
    updates = context.SimpleQueue()  # handed to each worker as it starts (a queue can't go with a task)
    with ProcessPoolExecutor(len(names), mp_context=context, initializer=_receive_updates,
                             initargs=(updates,)) as pool:
        futures = [pool.submit(_rebuild_in_process, runtime.settings, name, swap) for name in names]
        while not all(f.done() for f in futures):
            wait(futures, timeout=0.1)
            _relay(updates, progress)
        _relay(updates, progress)  # a put returns once written, so every one came before its result
    return [f.result() for f in futures]


def _workers_context():
    """Workers forked from a server process that imported what they need before any engine or
    thread existed (so forking it is safe, unlike forking this process); where the platform
    has no fork server, each worker is a fresh interpreter."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from services.runtime.runner import SERVICE_NAMES

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", "services.runtime.bootstrap", "services.runtime.runner",
                                    *(f"services.{name}.main" for name in SERVICE_NAMES)])
    return context


_updates = None  # in a worker: the queue its progress goes to


def _receive_updates(updates) -> None:
    global _updates
    _updates = updates


def _for(progress: NamedProgress | None, name: str) -> Progress | None:
    return (lambda done, total: progress(name, done, total)) if progress else None


def _relay(updates, progress: NamedProgress | None) -> None:
    """Pass the workers' progress so far on to `progress`."""
    while not updates.empty():
        message = updates.get()
        if progress:
            progress(*message)


def _rebuild_in_process(settings, name: str, swap: bool) -> Report:
    from services.runtime.bootstrap import bootstrap_runtime, tune_gc

    runtime = bootstrap_runtime(settings)
    try:
        handler = replayable(runtime)[name]
        tune_gc()
        return rebuild(runtime, handler, swap=swap, progress=lambda done, total: _updates.put((name, done, total)))
    finally:
        runtime.close()


def _swap(conn: Connection, scratch: Scratch, projection: Projection, replayer: Projector,
          consumer: Consumer, swap: bool, progress: Progress | None) -> Report:
    target = _lock_live(conn, projection)
    _catch_up(replayer, consumer, target, progress)
    changed = [t for t in projection.inputs if any(_compared(conn, scratch, t, ()))]
    if changed:
        raise ReplayAborted(f"{', '.join(changed)} changed during the replay; run it again")
    replaced = [t for t in projection.tables if t in projection.monotonic or _generated(_live(t))]
    differences = {t: _compared(conn, scratch, t, projection.uncompared(t), write=swap and t not in replaced)
                   for t in projection.tables}
    if swap:
        floors = {t: conn.execute(select(func.max(_live(t).c[c]))).scalar() or 0
                  for t, c in projection.monotonic.items()}
        for name in replaced:
            conn.execute(delete(_live(name)))
        _copy(conn, replaced, source=scratch.table, target=_live)
        for name, column in projection.monotonic.items():
            live = _live(name)
            conn.execute(update(live).values({column: live.c[column] + floors[name]}))
    return Report(projection.consumer, sum(target.values()), differences, swap)


def _reader(log: Log, name: str, topics: Sequence[str], on_assign) -> Consumer:
    return log.consumer(f"replay.{name}.{uuid.uuid4().hex[:8]}", topics, on_assign)


class LastOfEachKey:
    """Each key's last offset below the replay's first target, per partition: a record is kept
    if none of its key comes after it there (records past the target are all kept)."""

    def __init__(self):
        self.last: dict[TopicPartition, dict[str, int]] = {}
        self.superseded = 0

    def keeps(self, record: Record) -> bool:
        last = self.last.get(record.tp, {}).get(record.key) if record.key is not None else None
        return last is None or last <= record.offset


def _last_of_each_key(log: Log, topics: Sequence[str], target: Positions) -> LastOfEachKey:
    """A first pass over the records below `target`, reading only their keys and offsets."""
    found, read, stall = LastOfEachKey(), {tp: 0 for tp in target}, Stall()
    consumer = _reader(log, "keys", topics, lambda assigned: {tp: 0 for tp in assigned})
    try:
        while any(read[tp] < end for tp, end in target.items()):
            for record in consumer.poll(10_000, 0.2):
                if record.offset < target.get(record.tp, 0):
                    read[record.tp] = record.offset + 1
                    if record.key is not None:
                        keys = found.last.setdefault(record.tp, {})
                        found.superseded += record.key in keys
                        keys[record.key] = record.offset
            done = sum(read.values())
            stall.check(done, f"reading keys at {done} records")
    finally:
        consumer.close()
    return found


def peak_memory_mb() -> float:
    """This process's peak resident memory so far: what replay_batch_size trades for speed."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes there, KiB on Linux


def live_offsets(engine: Engine, consumer: str) -> Positions:
    with engine.connect() as conn:
        rows = conn.execute(select(ConsumerOffset.topic, ConsumerOffset.partition, ConsumerOffset.next_offset)
                            .where(ConsumerOffset.consumer == consumer))
        return {TopicPartition(t, p): o for t, p, o in rows}


def _lock_live(conn: Connection, projection: Projection) -> Positions:
    """Lock the live consumer's offsets (a no-op update takes the row locks on both backends)."""
    conn.execute(update(ConsumerOffset).where(ConsumerOffset.consumer == projection.consumer)
                 .values(next_offset=ConsumerOffset.next_offset))
    for statement in projection.lock:
        conn.execute(text(statement))
    rows = conn.execute(select(ConsumerOffset.topic, ConsumerOffset.partition, ConsumerOffset.next_offset)
                        .where(ConsumerOffset.consumer == projection.consumer))
    return {TopicPartition(t, p): o for t, p, o in rows}


class Stall:
    """Aborts a replay whose count of records done has not moved for STALL_S."""

    def __init__(self):
        self.done, self.since = -1, time.monotonic()

    def check(self, done: int, where: str) -> None:
        if done != self.done:
            self.done, self.since = done, time.monotonic()
        elif time.monotonic() - self.since > STALL_S:
            raise ReplayAborted(f"no progress for {STALL_S:.0f}s {where}")


def _catch_up(replayer: Projector, consumer: Consumer, target: Positions,
              progress: Progress | None) -> None:
    """Apply records until the copy is exactly at `target` (records past it are read again
    later: the consumer is moved back to the target)."""
    total, stall = sum(target.values()), Stall()
    while True:
        applied = sum(min(replayer.applied(tp), end) for tp, end in target.items())
        if progress:
            progress(applied, total)
        if applied >= total:
            return
        stall.check(applied, f"at {applied}/{total} records")
        if wanted := _next_batch(replayer, consumer, target, stall):
            replayer.apply_or_recover(consumer, wanted)


def _next_batch(replayer: Projector, consumer: Consumer, target: Positions, stall: Stall) -> list[Record]:
    """Up to a replay batch of records below `target`, over as many polls as that takes: a
    Kafka poll answers what its fetches brought, a few thousand records, and a batch's work
    grows with the profiles it touches more than with its records, so fewer, larger batches
    touch each profile fewer times. A partition read past `target` is moved back to it (its
    records there are read again after the swap's lock) and ends the batch."""
    batch: list[Record] = []
    reached = {tp for tp, end in target.items() if replayer.applied(tp) >= end}
    done = sum(min(replayer.applied(tp), end) for tp, end in target.items())
    while len(batch) < replayer.batch_size and len(reached) < len(target):
        polled = consumer.poll(replayer.batch_size - len(batch), replayer.poll_timeout_s)
        beyond = {r.tp: target.get(r.tp, 0) for r in polled if r.offset >= target.get(r.tp, 0)}
        batch += [r for r in polled if r.offset < target.get(r.tp, 0)]
        reached |= {r.tp for r in polled if r.offset + 1 >= target.get(r.tp, 0)}
        if beyond:
            consumer.seek(beyond)
            break
        stall.check(done + len(batch), f"at {done + len(batch)}/{sum(target.values())} records")
    return batch


def _live(name: str) -> Table:
    return Base.metadata.tables[name]


def _generated(table: Table) -> set[str]:
    """A surrogate integer key: numbered anew on insert, so neither compared nor copied."""
    pk = list(table.primary_key.columns)
    if len(pk) == 1 and pk[0].autoincrement is True:
        return {pk[0].name}
    return set()


def _columns(table: Table, skip=()) -> list[str]:
    return [c.name for c in table.columns if c.name not in _generated(table) | set(skip)]


def _copy(conn: Connection, names: Sequence[str], *, source, target) -> None:
    for name in names:
        columns = _columns(_live(name))
        src, dst = source(name), target(name)
        conn.execute(delete(dst))
        conn.execute(insert(dst).from_select(columns, select(*[src.c[c] for c in columns])))


def _compared(conn: Connection, scratch: Scratch, name: str, uncompared: Sequence[str], *,
              write: bool = False) -> tuple[int, int]:
    """(rows only live, rows only rebuilt), compared on every column but `uncompared` ones;
    with `write`, the live table made equal to the copy (see `_merged`)."""
    if _generated(_live(name)):  # no natural key to match rows by
        return _differences(conn, scratch, name, uncompared)
    return _merged(conn, scratch, name, uncompared, write=write)


def _merged(conn: Connection, scratch: Scratch, name: str, volatile: Sequence[str], *,
            write: bool) -> tuple[int, int]:
    """(rows only live, rows only rebuilt) of a table keyed by natural columns, compared on
    all but `volatile` ones; with `write`, the live table made equal to the copy by deleting
    the first and inserting the second. Rows in both are left alone, `volatile` values too (a
    member stays a member since when it entered, not since the replay). Replacing every row
    instead (DELETE, INSERT ... SELECT) took half of a swap's time, with the live projector
    paused, to write back what was there already."""
    live, copy = _live(name), scratch.table(name).alias("rebuilt")  # the same name: told apart

    def has_identical(row: Table, other: Table) -> ColumnElement:
        keys = [other.c[c.name] == row.c[c.name] for c in live.primary_key.columns]  # by the index
        same = [other.c[c].is_not_distinct_from(row.c[c]) for c in _columns(live, volatile)]
        return exists().where(*keys, *same)

    if not write:
        count = (lambda t, where: conn.execute(select(func.count()).select_from(t).where(where)).scalar())
        return count(live, ~has_identical(live, copy)), count(copy, ~has_identical(copy, live))
    only_live = conn.execute(delete(live).where(~has_identical(live, copy))).rowcount
    new = ~exists().where(*(live.c[c.name] == copy.c[c.name] for c in live.primary_key.columns))
    columns = _columns(live)  # a row left live has its identical copy: copies of other keys are new
    only_rebuilt = conn.execute(insert(live).from_select(columns, select(*[copy.c[c] for c in columns]).where(new)),
                                execution_options={"preserve_rowcount": True})  # else -1 on PostgreSQL
    return only_live, only_rebuilt.rowcount


def _differences(conn: Connection, scratch: Scratch, name: str, volatile) -> tuple[int, int]:
    """(rows only live, rows only rebuilt) of a table keyed by a surrogate id, which replay
    numbers anew: compared as rows of every column but it and `volatile` ones (EXCEPT)."""
    columns = _columns(_live(name), volatile)
    live, copy = _live(name), scratch.table(name)
    as_rows = (lambda t: select(*[t.c[c] for c in columns]))

    def count_except(a, b) -> int:
        return conn.execute(select(func.count()).select_from(as_rows(a).except_(as_rows(b)).subquery())).scalar()

    return count_except(live, copy), count_except(copy, live)


def replayable(runtime) -> dict[str, Handler]:
    """The handlers of every projection replay knows, by consumer name."""
    from services.runtime.runner import bootstrap_services  # it imports every service

    return {s.projector.handler.name: s.projector.handler for s in bootstrap_services(runtime)
            if s.projector is not None and s.projector.handler.name in PROJECTIONS}

