"""Evaluates a new or edited segment over existing profiles in the background.

Profiles are taken in chunks, each chunk in its own transaction; live updates go on between
chunks. When every segment to evaluate (the edited one and those reading it) compiles to SQL
(domain/predicate.py), a chunk of about CHUNK_SQL profiles is one set-based step per segment,
with the catalog locked alone so live evaluation waits for it. Otherwise CHUNK profiles are
evaluated one at a time in Python with their snapshot rows locked, in profile id order.
Either way the live projector and the backfill never evaluate one profile on different
snapshots. Progress is kept on the segment row (done / total), readable over the API and CLI.

On PostgreSQL a set-based chunk is a range of segment_profiles' heap (a TID range scan), not
a range of ids: ids are random, so a range of them is spread over nearly every block of the
table and each chunk read all of it again. A row moves when it is updated, maybe into a
range already passed, and the live projector evaluates a change only for the segments that
read what changed; so the last chunk also evaluates every row written since the definition
was saved (xmin no older than the saving transaction). Those are also the only rows that can
be members of a new segment before the pass reaches them (live evaluation sees it from the
save on), so for a new segment only they are looked up in the members, and none can have to
exit.

A chunk's messages are appended to the log on a second thread while its member rows are
written, and the chunk commits only once they are appended (published before the commit,
as the projector does: a crash replays the chunk, it never loses a message).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import ColumnElement, func, literal_column, select, text
from sqlalchemy.orm import Session

from services.runtime.background import BackgroundLoop
from services.runtime.bootstrap import Runtime
from services.runtime.db import in_array, reading, writing
from services.runtime.log import Log, publish_all
from services.runtime.projector import Output
from services.segments.domain.predicate import Predicate, compile_condition
from services.segments.membership import load_index, lock_catalog, reevaluate
from services.segments.membership_sql import Publish, apply_segment, profiles_between, tids_between
from services.segments.predicate_sql import to_sql
from services.segments.tables import Segment, SegmentMember, SegmentProfile

CHUNK = 500
CHUNK_SQL = 100_000  # profiles a set-based chunk; live evaluation waits for one (~0.3 s at 1M on 2 cores)
ROWS_PER_BLOCK = 50  # PostgreSQL's guess before the table is first analysed (only chunk sizes depend on it)
OFFSET_BITS = 16  # a heap position is block << 16 | line pointer offset (at most 1291 a block)

HEAP = text("""SELECT pg_relation_filenode(c.oid), pg_relation_size(c.oid) / current_setting('block_size')::int,
                      CASE WHEN c.reltuples > 0 AND c.relpages > 0 THEN c.reltuples / c.relpages END
               FROM pg_class c WHERE c.oid = CAST(:table AS regclass)""")
THIS_TRANSACTION = text("SELECT pg_current_xact_id()::text::bigint % 4294967296")


def queue_backfill(session: Session, segment: Segment) -> None:
    """A pass over every profile for a new or edited definition; save() calls it holding the
    catalog lock alone, so every live evaluation that sees the definition runs in a later
    transaction than this one, whose id is kept (PostgreSQL)."""
    segment.backfill_state, segment.backfill_done, segment.backfill_after = "pending", 0, ""
    segment.backfill_total = session.scalar(select(func.count()).select_from(SegmentProfile))
    segment.backfill_tid = segment.backfill_heap = 0
    segment.backfill_since = session.scalar(THIS_TRANSACTION) if session.get_bind().dialect.name == "postgresql" else 0
    segment.backfill_check_all = session.scalar(select(SegmentMember.profile_id)  # an edit: old members may not match
                                                .where(SegmentMember.segment_key == segment.key).limit(1)) is not None


def written_since(since: int) -> ColumnElement:
    """PostgreSQL: the segment_profiles rows written by transaction `since` or a later one
    (xids compared by age, so the 32-bit counter wrapping around is no matter)."""
    return (func.age(literal_column("segment_profiles.xmin"))
            <= func.age(literal_column(f"CAST('{int(since)}' AS xid)")))


class SegmentBackfill(BackgroundLoop):
    name, idle_wait_s = "segment-backfill", 0.5  # a new segment starts filling within this

    def __init__(self, runtime: Runtime, chunk: int = CHUNK, chunk_sql: int = CHUNK_SQL):
        super().__init__()
        self.engine, self.log, self.chunk, self.chunk_sql = runtime.engine, runtime.log, chunk, chunk_sql

    def step(self) -> bool:
        """Evaluate one chunk of one pending segment; False when there is nothing to do."""
        with reading(self.engine) as session:  # idle most of the time: no write lock just to look
            key = session.scalar(select(Segment.key).where(Segment.backfill_state != "done")
                                 .order_by(Segment.updated_at).limit(1))
        if key is None:
            return False
        # the publisher is left (its appends waited for) before the transaction commits
        with writing(self.engine) as session, Publisher(self.log) as publish:
            set_based = compiled(session, key) is not None
            lock_catalog(session, exclusive=set_based)  # before the segment row, as save() does
            predicates, segment = compiled(session, key), session.get(Segment, key, with_for_update=True)
            if segment is None or segment.backfill_state == "done" or set_based != (predicates is not None):
                return True  # changed before the lock was taken: look again
            if not set_based:
                done, finished = self._one_by_one(session, segment, publish)
            elif session.get_bind().dialect.name == "postgresql":
                done, finished = self._heap_range(session, segment, predicates, publish)
            else:
                done, finished = self._id_range(session, segment, predicates, publish)
            segment.backfill_done += done
            segment.backfill_total = max(segment.backfill_total, segment.backfill_done)
            segment.backfill_state = "done" if finished else "running"
        return True

    def _heap_range(self, session: Session, segment: Segment, predicates: dict, publish: Publish) -> tuple[int, bool]:
        """PostgreSQL: the rows from the segment's heap position on, about chunk_sql of them by
        the table's rows per block; the last chunk then takes every row written since the save,
        wherever it is now (a segment saved before migration 0013 has no saving transaction
        kept: age(0) is the largest, so that is every row)."""
        # the membership look-ups' estimated cost passes jit_above_cost, and compiling them
        # (about 0.1 s a statement) costs more than the chunk's statements take
        session.execute(text("SET LOCAL jit = off"))
        heap, pages, per_block = session.execute(HEAP, {"table": SegmentProfile.__tablename__}).one()
        if segment.backfill_tid and segment.backfill_heap != heap:  # rewritten (VACUUM FULL, CLUSTER): rows moved
            segment.backfill_tid = segment.backfill_done = 0  # and some rows read again are members already
            segment.backfill_check_all = True
        segment.backfill_heap = heap
        block, offset = divmod(segment.backfill_tid, 1 << OFFSET_BITS)
        end = _advance(block, offset, self.chunk_sql, per_block or ROWS_PER_BLOCK)
        finished = end[0] >= pages
        chosen = tids_between((block, offset), None if finished else end)
        self._apply(session, segment, predicates, chosen, publish)
        # counted while the messages are appended, from blocks now in shared buffers
        done = session.scalar(select(func.count()).select_from(SegmentProfile).where(chosen))
        if not finished:
            segment.backfill_tid = end[0] << OFFSET_BITS | end[1]
            return done, False
        written = list(session.scalars(select(SegmentProfile.profile_id).where(written_since(segment.backfill_since))))
        if written:  # updated since the save: maybe moved behind the pass
            self._apply(session, segment, predicates, in_array(SegmentProfile.profile_id, written), publish)
        return done, True

    def _id_range(self, session: Session, segment: Segment, predicates: dict, publish: Publish) -> tuple[int, bool]:
        """SQLite: chunk_sql profile ids on from the segment's cursor (the primary key's order)."""
        after = segment.backfill_after
        upto = session.scalar(select(SegmentProfile.profile_id).where(SegmentProfile.profile_id > after)
                              .order_by(SegmentProfile.profile_id).offset(self.chunk_sql - 1).limit(1))
        chosen = profiles_between(after, upto)
        self._apply(session, segment, predicates, chosen, publish)
        if upto is not None:
            segment.backfill_after = upto
            return self.chunk_sql, False
        done, last = session.execute(select(func.count(), func.max(SegmentProfile.profile_id)).where(chosen)).one()
        segment.backfill_after = last or after
        return done, True

    @staticmethod
    def _apply(session: Session, segment: Segment, predicates: dict[str, Predicate], chosen: ColumnElement,
               publish: Publish) -> None:
        """Each segment over the chosen rows, in dependency order (a dependent sees what it reads).

        A new segment (no members when saved) has members only from this pass or from live
        evaluations since the save: a chosen row can be one only if it was written since (live
        evaluation, or moved here after an earlier chunk), and none has to exit (a live change
        of what it reads is evaluated live). PostgreSQL then looks members up for those rows
        only; else for every matching row, and looks for exits."""
        dialect = session.get_bind().dialect.name
        for key, predicate in predicates.items():
            if key == segment.key and not segment.backfill_check_all and dialect == "postgresql":
                apply_segment(session, key, to_sql(predicate, dialect), chosen, publish,
                              members_among=written_since(segment.backfill_since), exits=False)
            else:
                apply_segment(session, key, to_sql(predicate, dialect), chosen, publish)

    def _one_by_one(self, session: Session, segment: Segment, publish: Publish) -> tuple[int, bool]:
        index, _ = load_index(session)
        keys = index.dependents_of({segment.key})
        profiles = list(session.scalars(
            select(SegmentProfile).where(SegmentProfile.profile_id > segment.backfill_after)
            .order_by(SegmentProfile.profile_id).limit(self.chunk).with_for_update()))
        outputs = [o for p in profiles for o in reevaluate(session, p.profile_id, p, index, keys)]
        if outputs:
            publish(lambda: outputs)
        if profiles:
            segment.backfill_after = profiles[-1].profile_id
        return len(profiles), len(profiles) < self.chunk


def _advance(block: int, offset: int, rows: int, per_block: float) -> tuple[int, int]:
    """The heap position about `rows` rows after (block, offset), at `per_block` rows a block;
    always after it (so chunks never overlap and never stall)."""
    per_block = min(max(float(per_block), 1.0), (1 << OFFSET_BITS) - 1.0)
    reach = block * per_block + offset + max(rows, 1)
    end_block = int(reach // per_block)
    end = (end_block, int(reach - end_block * per_block))
    return end if end > (block, offset) else (block, offset + 1)


class Publisher:
    """Appends messages to the log on its own thread, in the order they are handed in, while
    the chunk's statements go on. Called with what builds the messages (built on that thread
    too); leaving waits for every append and raises the first failure, unless the chunk
    itself failed."""

    def __init__(self, log: Log):
        self.log, self.pool, self.appends = log, None, []

    def __call__(self, build) -> None:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="segment-backfill-publish")
        self.appends.append(self.pool.submit(self._append, build))

    def _append(self, build) -> None:
        outputs: list[Output] = build()
        publish_all(self.log, outputs)

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, failure_type, _failure, _traceback) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if failure_type is None:
            for append in self.appends:
                append.result()


def compiled(session: Session, key: str) -> dict[str, Predicate] | None:
    """The predicates of `key` and every segment reading it, in dependency order; None if
    some condition doesn't compile (those are evaluated in Python)."""
    index, _ = load_index(session)
    predicates = {k: compile_condition(index.conditions[k]) for k in index.dependents_of({key})}
    return None if any(p is None for p in predicates.values()) else predicates


def progress_of(engine, key: str) -> dict | None:
    """A segment's size and backfill progress (the CLI follows it)."""
    with reading(engine) as session:
        segment = session.get(Segment, key)
        if segment is None:
            return None
        size = session.scalar(select(func.count()).select_from(SegmentMember).where(SegmentMember.segment_key == key))
        return {"state": segment.backfill_state, "done": segment.backfill_done, "total": segment.backfill_total,
                "size": size}
