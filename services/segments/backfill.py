"""Evaluates a new or edited segment over existing profiles in the background.

Profiles are taken in chunks by id, each chunk in its own transaction with its
snapshot rows locked, so the live projector and the backfill never evaluate one
profile on different snapshots; live updates go on between chunks. Progress is
kept on the segment row (done / total), readable over the API and the CLI.
"""
from __future__ import annotations

from sqlalchemy import func, select

from services.runtime.background import BackgroundLoop
from services.runtime.bootstrap import Runtime
from services.runtime.db import reading, writing
from services.runtime.log import publish_all
from services.segments.membership import load_index, lock_catalog, reevaluate
from services.segments.tables import Segment, SegmentMember, SegmentProfile

CHUNK = 500


class SegmentBackfill(BackgroundLoop):
    name, idle_wait_s = "segment-backfill", 0.2

    def __init__(self, runtime: Runtime, chunk: int = CHUNK):
        super().__init__()
        self.engine, self.log, self.chunk = runtime.engine, runtime.log, chunk

    def step(self) -> bool:
        """Evaluate one chunk of one pending segment; False when there is nothing to do."""
        with writing(self.engine) as session:
            lock_catalog(session, exclusive=False)
            segment = session.scalars(select(Segment).where(Segment.backfill_state != "done")
                                      .order_by(Segment.updated_at).limit(1).with_for_update()).first()
            if segment is None:
                return False
            index, _ = load_index(session)
            keys = index.dependents_of({segment.key})
            profiles = list(session.scalars(
                select(SegmentProfile).where(SegmentProfile.profile_id > segment.backfill_after)
                .order_by(SegmentProfile.profile_id).limit(self.chunk).with_for_update()))
            outputs = [o for p in profiles for o in reevaluate(session, p.profile_id, p, index, keys)]
            segment.backfill_done += len(profiles)
            segment.backfill_total = max(segment.backfill_total, segment.backfill_done)
            segment.backfill_after = profiles[-1].profile_id if profiles else segment.backfill_after
            segment.backfill_state = "running" if len(profiles) == self.chunk else "done"
            publish_all(self.log, outputs)
        return True


def progress_of(engine, key: str) -> dict | None:
    """A segment's size and backfill progress (the CLI follows it)."""
    with reading(engine) as session:
        segment = session.get(Segment, key)
        if segment is None:
            return None
        size = session.scalar(select(func.count()).select_from(SegmentMember).where(SegmentMember.segment_key == key))
        return {"state": segment.backfill_state, "done": segment.backfill_done, "total": segment.backfill_total,
                "size": size}
