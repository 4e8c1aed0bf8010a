"""Keeps membership rows in step with evaluations; shared by the projector, the backfill
and the routes."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.runtime import metrics, topics
from services.runtime.clock import format_time, now
from services.runtime.log import Message
from services.runtime.projector import Output
from services.segments.domain.conditions import ProfileFacts
from services.segments.domain.index import SegmentIndex, effective_condition, membership_changes
from services.segments.tables import (MembershipChange, Segment, SegmentCatalog, SegmentMember,
                                      SegmentProfile, SegmentSequence)

CATALOG_ROW = SEQUENCE_ROW = 1
LIFECYCLE_SEQUENCE_ROW = 2


def lock_catalog(session: Session, *, exclusive: bool) -> None:
    """Evaluations share this lock; definition changes and set-based backfill chunks take it
    alone: a new segment is never evaluated against a profile snapshot that a running batch
    is replacing, and a chunk never races the live evaluation of the same profiles."""
    statement = select(SegmentCatalog).where(SegmentCatalog.id == CATALOG_ROW)
    row = session.scalars(statement.with_for_update(read=not exclusive)).one_or_none()
    if row is None:
        session.add(SegmentCatalog(id=CATALOG_ROW, version=1))
    elif exclusive:
        row.version += 1
    session.flush()


def load_index(session: Session) -> tuple[SegmentIndex, dict[str, Segment]]:
    segments = {s.key: s for s in session.scalars(select(Segment))}
    return SegmentIndex({k: effective_condition(s.condition, s.requires_consent)
                         for k, s in segments.items()}), segments


def facts_of(profile: SegmentProfile | None) -> ProfileFacts | None:
    if profile is None:
        return None
    return ProfileFacts(profile.traits or {}, profile.computed or {}, profile.stage, profile.consent or {})


def reevaluate(session: Session, profile_id: str, profile: SegmentProfile | None, index: SegmentIndex,
               keys: list[str]) -> list[Output]:
    """Enter or exit `profile_id` in the segments `keys` (in dependency order); a profile
    that is gone (None) exits everything."""
    current = session.scalars(select(SegmentMember.segment_key).where(SegmentMember.profile_id == profile_id))
    return [_change(session, key, profile_id, entered)
            for key, entered in membership_changes(index, keys, facts_of(profile), current)]


def reserve(session: Session, count: int, sequence: int = SEQUENCE_ROW) -> int:
    """The first of `count` consecutive numbers of a sequence; its row stays locked until
    this transaction commits, so numbers become visible in the order they were given."""
    row = session.execute(update(SegmentSequence).where(SegmentSequence.id == sequence)
                          .values(last=SegmentSequence.last + count).returning(SegmentSequence.last)).first()
    if row is None:
        session.add(SegmentSequence(id=sequence, last=count))
        session.flush()
        return 1
    return row[0] - count + 1


def next_seq(session: Session, sequence: int = SEQUENCE_ROW) -> int:
    return reserve(session, 1, sequence)


def membership_message(profile_id: str, segment_key: str, entered: bool, seq: int, at: datetime) -> Output:
    return (topics.SEGMENTS_MEMBERSHIP, Message.of(profile_id, {
        "type": "track", "event": "Audience Entered" if entered else "Audience Exited",
        "profile_id": profile_id, "segment": segment_key, "seq": seq, "timestamp": format_time(at)}))


def _change(session: Session, segment_key: str, profile_id: str, entered: bool) -> Output:
    at = now()
    if entered:
        session.add(SegmentMember(segment_key=segment_key, profile_id=profile_id, entered_at=at))
    else:
        session.delete(session.get(SegmentMember, (segment_key, profile_id)))
    change = MembershipChange(seq=next_seq(session), segment_key=segment_key, profile_id=profile_id,
                              change="entered" if entered else "exited", at=at)
    session.add(change)
    session.flush()
    metrics.segment_changed(segment_key, entered)
    return membership_message(profile_id, segment_key, entered, change.seq, at)
