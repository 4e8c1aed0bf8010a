"""Evaluates a new or edited segment over existing profiles in the background.

Profiles are taken in chunks by id, each chunk in its own transaction; live updates go on
between chunks. When every segment to evaluate (the edited one and those reading it)
compiles to SQL (domain/predicate.py), a chunk of CHUNK_SQL profiles is one set-based
step per segment, with the catalog locked alone so live evaluation waits for it. Otherwise
CHUNK profiles are evaluated one at a time in Python with their snapshot rows locked.
Either way the live projector and the backfill never evaluate one profile on different
snapshots. Progress is kept on the segment row (done / total), readable over the API and CLI.
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.runtime.background import BackgroundLoop
from services.runtime.bootstrap import Runtime
from services.runtime.db import reading, writing
from services.runtime.log import publish_all
from services.runtime.projector import Output
from services.segments.domain.predicate import Predicate, compile_condition
from services.segments.membership import load_index, lock_catalog, reevaluate
from services.segments.membership_sql import apply_segment, profiles_between
from services.segments.predicate_sql import to_sql
from services.segments.tables import Segment, SegmentMember, SegmentProfile

CHUNK = 500
CHUNK_SQL = 100_000  # profiles a set-based chunk; live evaluation waits for one (~0.5 s at 1M on 2 cores)


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
        with writing(self.engine) as session:
            set_based = compiled(session, key) is not None
            lock_catalog(session, exclusive=set_based)  # before the segment row, as save() does
            predicates, segment = compiled(session, key), session.get(Segment, key, with_for_update=True)
            if segment is None or segment.backfill_state == "done" or set_based != (predicates is not None):
                return True  # changed before the lock was taken: look again
            if set_based:
                done, last, outputs = self._set_based(session, segment.backfill_after, predicates)
            else:
                done, last, outputs = self._one_by_one(session, segment.backfill_after, key)
            segment.backfill_done += done
            segment.backfill_total = max(segment.backfill_total, segment.backfill_done)
            segment.backfill_after = last or segment.backfill_after
            segment.backfill_state = "running" if done == (self.chunk_sql if set_based else self.chunk) else "done"
            publish_all(self.log, outputs)
        return True

    def _set_based(self, session: Session, after: str, predicates: dict) -> tuple[int, str | None, list[Output]]:
        upto = session.scalar(select(SegmentProfile.profile_id).where(SegmentProfile.profile_id > after)
                              .order_by(SegmentProfile.profile_id).offset(self.chunk_sql - 1).limit(1))
        chosen = profiles_between(after, upto)
        dialect = session.get_bind().dialect.name
        outputs = [o for k, p in predicates.items() for o in apply_segment(session, k, to_sql(p, dialect), chosen)]
        if upto is not None:
            return self.chunk_sql, upto, outputs
        done, last = session.execute(select(func.count(), func.max(SegmentProfile.profile_id)).where(chosen)).one()
        return done, last, outputs

    def _one_by_one(self, session: Session, after: str, key: str) -> tuple[int, str | None, list[Output]]:
        index, _ = load_index(session)
        keys = index.dependents_of({key})
        profiles = list(session.scalars(
            select(SegmentProfile).where(SegmentProfile.profile_id > after)
            .order_by(SegmentProfile.profile_id).limit(self.chunk).with_for_update()))
        outputs = [o for p in profiles for o in reevaluate(session, p.profile_id, p, index, keys)]
        return len(profiles), profiles[-1].profile_id if profiles else None, outputs


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
