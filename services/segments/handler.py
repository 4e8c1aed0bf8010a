"""Re-evaluates segments for each changed profile; publishes segments.membership."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.runtime import topics
from services.runtime.log import Record
from services.runtime.projector import Output
from services.segments.membership import lock_catalog, reevaluate
from services.segments.tables import Segment, SegmentProfile


class SegmentsHandler:
    name = "segments"
    topics = (topics.PROFILES_CHANGED,)

    def apply(self, session: Session, batch: list[Record]) -> list[Output]:
        lock_catalog(session, exclusive=False)
        segments = list(session.scalars(select(Segment).order_by(Segment.key)))
        outputs: list[Output] = []
        for record in batch:
            change = record.json()
            if "merged_into" in change:
                outputs += self._forget(session, change["profile_id"], segments)
            else:
                outputs += self._update(session, change, segments)
        return outputs

    @staticmethod
    def _update(session: Session, change: dict, segments: list[Segment]) -> list[Output]:
        stored = session.get(SegmentProfile, change["profile_id"])
        if stored is not None and stored.version >= change["version"]:
            return []  # an older or redelivered snapshot
        if stored is None:
            stored = SegmentProfile(profile_id=change["profile_id"])
            session.add(stored)
        stored.version, stored.traits = change["version"], change["traits"]
        return reevaluate(session, change["profile_id"], change["traits"], segments)

    @staticmethod
    def _forget(session: Session, profile_id: str, segments: list[Segment]) -> list[Output]:
        stored = session.get(SegmentProfile, profile_id)
        if stored is not None:
            session.delete(stored)
        return reevaluate(session, profile_id, None, segments)
