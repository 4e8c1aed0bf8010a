"""Set-based entries and exits of one segment over a range of profiles (the backfill's fast path).

The caller holds the catalog lock alone, so no live evaluation runs meanwhile. History rows
take consecutive numbers after the sequence row's `last`, locked to the commit as `next_seq`
does; member rows are then written from those history rows, in the database. Each change's
messages are handed to `publish` as soon as its history rows are written, so the caller can
append them to the log while the member rows are being written; it must wait for that
append before it commits (published before the commit, as the projector does).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import orjson
from sqlalchemy import (ColumnElement, and_, delete, exists, func, insert, literal, literal_column, not_, or_, select,
                        update)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from services.runtime import metrics, topics
from services.runtime.clock import format_time, now
from services.runtime.db import UtcDateTime
from services.runtime.log import Message
from services.runtime.projector import Output
from services.segments.membership import SEQUENCE_ROW
from services.segments.tables import MembershipChange, SegmentMember, SegmentProfile, SegmentSequence

Publish = Callable[[Callable[[], list[Output]]], None]  # takes what builds the messages, to append them
LAST_BLOCK = 2 ** 32 - 1  # PostgreSQL block numbers are 32 bits


def profiles_between(after: str, upto: str | None) -> ColumnElement:
    """Profile ids in (after, upto]; to the end when upto is None."""
    lower = SegmentProfile.profile_id > after
    return lower if upto is None else and_(lower, SegmentProfile.profile_id <= upto)


def tids_between(start: tuple[int, int], end: tuple[int, int] | None) -> ColumnElement:
    """PostgreSQL: the segment_profiles rows at heap positions (block, offset) in [start, end),
    to the table's end when end is None; read by a TID range scan (PostgreSQL 14 and later)
    that touches no other block."""
    ctid = literal_column("segment_profiles.ctid")
    lower = ctid >= _tid(start)
    return lower if end is None else and_(lower, ctid < _tid(end))


def _tid(position: tuple[int, int]) -> ColumnElement:
    block, offset = position
    return literal_column(f"CAST('({min(int(block), LAST_BLOCK)},{int(offset)})' AS tid)")


def apply_segment(session: Session, key: str, matches: ColumnElement, chosen: ColumnElement, publish: Publish,
                  *, members_among: ColumnElement | None = None, exits: bool = True) -> None:
    """Enter the chosen profiles that match and aren't members, exit the members that don't.
    `members_among`: the chosen rows that may be members already (None: any may be);
    `exits`: whether any member may have to exit."""
    conn, at = session.connection(), now()  # core statements: no ORM rows for the RETURNING
    member = exists().where(SegmentMember.segment_key == key, SegmentMember.profile_id == SegmentProfile.profile_id)
    if conn.scalar(select(SegmentMember.profile_id).where(SegmentMember.segment_key == key).limit(1)) is None:
        entering, exits = and_(chosen, matches), False  # no members yet: none to look up, none to exit
    elif members_among is None:
        entering = and_(chosen, matches, ~member)
    else:  # looked up only where it may be one (a subplan, not a join over every member)
        entering = and_(chosen, matches, or_(not_(members_among), ~member))
    entered, last = _record(conn, key, "entered", entering, at)
    if entered:
        publish(lambda: _messages(key, "Audience Entered", entered, at))
        conn.execute(insert(SegmentMember).from_select(
            ["segment_key", "profile_id", "entered_at"],
            select(MembershipChange.segment_key, MembershipChange.profile_id, MembershipChange.at)
            .where(MembershipChange.segment_key == key, MembershipChange.seq > last,
                   MembershipChange.seq <= last + len(entered))))
    if not exits:
        return
    exited, last = _record(conn, key, "exited", and_(chosen, member, not_(matches)), at)
    if exited:
        publish(lambda: _messages(key, "Audience Exited", exited, at))
        conn.execute(delete(SegmentMember).where(
            SegmentMember.segment_key == key, SegmentMember.profile_id.in_(
                select(MembershipChange.profile_id).where(MembershipChange.segment_key == key,
                                                          MembershipChange.seq > last,
                                                          MembershipChange.seq <= last + len(exited)))))


def _record(conn: Connection, key: str, change: str, where: ColumnElement,
            at: datetime) -> tuple[list[tuple[int, str]], int]:
    """History rows for the profiles `where` selects, numbered last + 1, last + 2, ... from the
    locked sequence row in profile order; answers their (seq, profile id) and that `last`."""
    last = conn.scalar(update(SegmentSequence).where(SegmentSequence.id == SEQUENCE_ROW)  # locked to the commit
                       .values(last=SegmentSequence.last).returning(SegmentSequence.last))
    if last is None:
        conn.execute(insert(SegmentSequence).values(id=SEQUENCE_ROW, last=0))
        last = 0
    numbered = select(literal(last) + func.row_number().over(order_by=SegmentProfile.profile_id),
                      literal(key), SegmentProfile.profile_id, literal(change), literal(at, UtcDateTime()))
    result = conn.execute(insert(MembershipChange).from_select(
        ["seq", "segment_key", "profile_id", "change", "at"], numbered.where(where))
        .returning(MembershipChange.seq, MembershipChange.profile_id))
    with result:
        rows = result.cursor.fetchall()  # the driver's tuples: Row objects cost 4x the fetch here
    if rows:
        conn.execute(update(SegmentSequence).where(SegmentSequence.id == SEQUENCE_ROW).values(last=last + len(rows)))
    metrics.SEGMENT_CHANGES.labels(key, change).inc(len(rows))
    return rows, last


def _messages(key: str, event: str, rows: list[tuple[int, str]], at: datetime) -> list[Output]:
    """One message per change, in seq order; the bytes orjson gives the dict {type, event,
    profile_id, segment, seq, timestamp}, with only the profile id and seq formatted per row."""
    dumps = orjson.dumps
    head = b'{"type":"track","event":%b,"profile_id":' % dumps(event)
    middle = b',"segment":%b,"seq":' % dumps(key)
    tail = b',"timestamp":%b}' % dumps(format_time(at))
    topic = topics.SEGMENTS_MEMBERSHIP
    return [(topic, Message(profile_id, b"%b%b%b%d%b" % (head, dumps(profile_id), middle, seq, tail)))
            for seq, profile_id in sorted(rows)]
