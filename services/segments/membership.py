"""Keeps membership rows in step with evaluations; shared by the handler and the routes."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.runtime import topics
from services.runtime.clock import format_time, now
from services.runtime.log import Message
from services.runtime.projector import Output
from services.segments.domain.conditions import evaluate
from services.segments.tables import MembershipChange, Segment, SegmentCatalog, SegmentMember

CATALOG_ROW = 1


def lock_catalog(session: Session, *, exclusive: bool) -> None:
    """Evaluations share this lock, definition changes take it alone: a new segment is
    never evaluated against a profile snapshot that a running batch is replacing."""
    statement = select(SegmentCatalog).where(SegmentCatalog.id == CATALOG_ROW)
    row = session.scalars(statement.with_for_update(read=not exclusive)).one_or_none()
    if row is None:
        session.add(SegmentCatalog(id=CATALOG_ROW, version=1))
    elif exclusive:
        row.version += 1
    session.flush()


def reevaluate(session: Session, profile_id: str, traits: dict | None,
               segments: list[Segment]) -> list[Output]:
    """Enter or exit `profile_id` in each segment; traits None means the profile is gone."""
    current = set(session.scalars(select(SegmentMember.segment_key)
                                  .where(SegmentMember.profile_id == profile_id)))
    outputs = []
    for segment in segments:
        member = traits is not None and evaluate(segment.condition, traits)
        if member != (segment.key in current):
            outputs.append(_change(session, segment.key, profile_id, member))
    return outputs


def _change(session: Session, segment_key: str, profile_id: str, entered: bool) -> Output:
    at = now()
    if entered:
        session.add(SegmentMember(segment_key=segment_key, profile_id=profile_id, entered_at=at))
    else:
        session.delete(session.get(SegmentMember, (segment_key, profile_id)))
    change = MembershipChange(segment_key=segment_key, profile_id=profile_id,
                              change="entered" if entered else "exited", at=at)
    session.add(change)
    session.flush()
    return (topics.SEGMENTS_MEMBERSHIP, Message.of(profile_id, {
        "type": "track", "event": "Audience Entered" if entered else "Audience Exited",
        "profile_id": profile_id, "segment": segment_key, "seq": change.seq,
        "timestamp": format_time(at)}))
