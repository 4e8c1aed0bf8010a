"""Set-based entries and exits of one segment over a range of profiles (the backfill's fast path).

The caller holds the catalog lock alone, so no live evaluation runs meanwhile. History rows
take consecutive numbers after the sequence row's `last`, locked to the commit as `next_seq`
does; member rows are then written from those history rows, and each change is published.
"""
from __future__ import annotations

from datetime import datetime

import orjson
from sqlalchemy import ColumnElement, and_, delete, exists, func, insert, literal, not_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from services.runtime import metrics, topics
from services.runtime.clock import format_time, now
from services.runtime.db import UtcDateTime
from services.runtime.log import Message
from services.runtime.projector import Output
from services.segments.membership import SEQUENCE_ROW
from services.segments.tables import MembershipChange, SegmentMember, SegmentProfile, SegmentSequence


def profiles_between(after: str, upto: str | None) -> ColumnElement:
    """Profile ids in (after, upto]; to the end when upto is None."""
    lower = SegmentProfile.profile_id > after
    return lower if upto is None else and_(lower, SegmentProfile.profile_id <= upto)


def apply_segment(session: Session, key: str, matches: ColumnElement, chosen: ColumnElement) -> list[Output]:
    """Enter the chosen profiles that match and aren't members, exit the members that don't."""
    conn, at = session.connection(), now()  # core statements: no ORM rows for the RETURNING
    if conn.scalar(select(SegmentMember.profile_id).where(SegmentMember.segment_key == key).limit(1)) is None:
        entered = _record(conn, key, "entered", and_(chosen, matches), at)  # a new segment: no exits
        exited = []
    else:
        member = exists().where(SegmentMember.segment_key == key, SegmentMember.profile_id == SegmentProfile.profile_id)
        entered = _record(conn, key, "entered", and_(chosen, matches, ~member), at)
        exited = _record(conn, key, "exited", and_(chosen, member, not_(matches)), at)
    if entered:
        conn.execute(insert(SegmentMember).from_select(
            ["segment_key", "profile_id", "entered_at"],
            select(MembershipChange.segment_key, MembershipChange.profile_id, MembershipChange.at)
            .where(MembershipChange.seq.between(entered[0][0], entered[-1][0]))))
    if exited:
        conn.execute(delete(SegmentMember).where(
            SegmentMember.segment_key == key, SegmentMember.profile_id.in_(
                select(MembershipChange.profile_id).where(MembershipChange.seq.between(exited[0][0], exited[-1][0])))))
    return _messages(key, "Audience Entered", entered, at) + _messages(key, "Audience Exited", exited, at)


def _record(conn: Connection, key: str, change: str, where: ColumnElement, at: datetime) -> list[tuple[int, str]]:
    """History rows for the profiles `where` selects, numbered on from the locked sequence
    row in profile order; answers (seq, profile id) in seq order."""
    last = conn.scalar(update(SegmentSequence).where(SegmentSequence.id == SEQUENCE_ROW)  # locked to the commit
                       .values(last=SegmentSequence.last).returning(SegmentSequence.last))
    if last is None:
        conn.execute(insert(SegmentSequence).values(id=SEQUENCE_ROW, last=0))
        last = 0
    numbered = select(literal(last) + func.row_number().over(order_by=SegmentProfile.profile_id),
                      literal(key), SegmentProfile.profile_id, literal(change), literal(at, UtcDateTime()))
    rows = sorted(conn.execute(insert(MembershipChange).from_select(
        ["seq", "segment_key", "profile_id", "change", "at"], numbered.where(where))
        .returning(MembershipChange.seq, MembershipChange.profile_id)).all())
    conn.execute(update(SegmentSequence).where(SegmentSequence.id == SEQUENCE_ROW).values(last=last + len(rows)))
    metrics.SEGMENT_CHANGES.labels(key, change).inc(len(rows))
    return [tuple(r) for r in rows]


def _messages(key: str, event: str, rows: list[tuple[int, str]], at: datetime) -> list[Output]:
    stamp = format_time(at)
    return [(topics.SEGMENTS_MEMBERSHIP, Message(profile_id, orjson.dumps({
        "type": "track", "event": event, "profile_id": profile_id, "segment": key, "seq": seq,
        "timestamp": stamp}))) for seq, profile_id in rows]
