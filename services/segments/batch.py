"""What a batch of profiles.changed records reads and writes, in a few statements.

The handler decides each record in order against the state held here, exactly as it
would one record at a time; the state is read once at the start (snapshots locked, in
key order) and its differences written once at the end. Sequence numbers are taken in
one reservation per sequence, so they still grow in record order and in commit order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.runtime import metrics
from services.runtime.db import each_in, in_chunks, insert_new_rows, insert_rows, pairs_in, upsert
from services.runtime.projector import Output, RetryBatch
from services.segments.membership import LIFECYCLE_SEQUENCE_ROW, SEQUENCE_ROW, membership_message, reserve
from services.segments.tables import (LifecycleStage, LifecycleTransition, MembershipChange, SegmentMember,
                                      SegmentProfile)

SNAPSHOT = ("version", "traits", "computed", "stage", "consent")
STAGE = ("stage", "since", "why")


@dataclass
class ProfileState:
    """One profile's rows as the batch goes: snapshot and stage as column dicts (None: no
    row), memberships as segment -> entered_at."""

    snapshot: dict | None
    stage: dict | None
    members: dict[str, datetime]


@dataclass
class BatchState:
    profiles: dict[str, ProfileState]
    before: dict[str, ProfileState]  # as read, to write only the differences
    changes: list[dict] = field(default_factory=list)  # membership history rows, seq to come
    transitions: list[dict] = field(default_factory=list)  # lifecycle transitions, seq to come

    @classmethod
    def read(cls, session: Session, profile_ids: set[str]) -> "BatchState":
        snapshots, stages, members = {}, {}, {pid: {} for pid in profile_ids}
        for condition in each_in(session, SegmentProfile.profile_id, profile_ids):
            rows = session.execute(select(SegmentProfile.__table__).where(condition)
                                   .order_by(SegmentProfile.profile_id).with_for_update())
            snapshots |= {r.profile_id: {c: getattr(r, c) for c in SNAPSHOT} for r in rows}
        for condition in each_in(session, LifecycleStage.profile_id, profile_ids):
            rows = session.execute(select(LifecycleStage.__table__).where(condition))
            stages |= {r.profile_id: {c: getattr(r, c) for c in STAGE} for r in rows}
        for condition in each_in(session, SegmentMember.profile_id, profile_ids):
            for r in session.execute(select(SegmentMember.__table__).where(condition)):
                members[r.profile_id][r.segment_key] = r.entered_at
        def states() -> dict[str, ProfileState]:
            return {pid: ProfileState(snapshots.get(pid), stages.get(pid), dict(members[pid]))
                    for pid in profile_ids}
        return cls(states(), states())

    def enter_or_exit(self, profile_id: str, segment_key: str, entered: bool, at: datetime) -> None:
        members = self.profiles[profile_id].members
        if entered:
            members[segment_key] = at
        else:
            del members[segment_key]
        self.changes.append({"segment_key": segment_key, "profile_id": profile_id,
                             "change": "entered" if entered else "exited", "at": at})

    def write(self, session: Session) -> list[Output]:
        """Every difference from what was read, then the history; the Audience messages."""
        _write_rows(session, SegmentProfile, "snapshot", self.before, self.profiles)
        _write_rows(session, LifecycleStage, "stage", self.before, self.profiles)
        self._write_members(session)
        _numbered(session, LifecycleTransition, self.transitions, LIFECYCLE_SEQUENCE_ROW)
        _numbered(session, MembershipChange, self.changes, SEQUENCE_ROW)
        for change in self.changes:
            metrics.segment_changed(change["segment_key"], change["change"] == "entered")
        return [membership_message(c["profile_id"], c["segment_key"], c["change"] == "entered", c["seq"], c["at"])
                for c in self.changes]

    def _write_members(self, session: Session) -> None:
        gone, new = [], []
        for pid, state in self.profiles.items():
            was = self.before[pid].members
            gone += [(key, pid) for key, at in was.items() if state.members.get(key) != at]
            new += [{"segment_key": key, "profile_id": pid, "entered_at": at}
                    for key, at in state.members.items() if was.get(key) != at]
        member = SegmentMember.__table__.c
        for pairs in in_chunks(gone):
            session.execute(delete(SegmentMember).where(pairs_in(session, member.segment_key, member.profile_id, pairs)))
        _insert(session, SegmentMember, new, ["segment_key", "profile_id"])


def _write_rows(session: Session, model, part: str, before: dict[str, ProfileState],
                after: dict[str, ProfileState]) -> None:
    """A per-profile row (snapshot or stage): deleted, inserted or updated as it ended."""
    gone, new, changed = [], [], []
    for pid, state in after.items():
        was, ended = getattr(before[pid], part), getattr(state, part)
        if was is not None and ended is None:
            gone.append(pid)
        elif was is None and ended is not None:
            new.append({"profile_id": pid, **ended})
        elif was != ended:
            changed.append({"profile_id": pid, **ended})
    for condition in each_in(session, model.profile_id, gone):
        session.execute(delete(model).where(condition))
    _insert(session, model, new, ["profile_id"])
    if changed:  # the rows exist: one statement rather than an UPDATE each
        upsert(session, model, changed, ["profile_id"], update=[c for c in changed[0] if c != "profile_id"])


def _numbered(session: Session, model, rows: list[dict], sequence: int) -> None:
    """Give `rows` consecutive numbers of `sequence`, in order, and insert them."""
    if not rows:
        return
    first = reserve(session, len(rows), sequence)
    for seq, row in enumerate(rows, start=first):
        row["seq"] = seq
    insert_rows(session, model, rows)


def _insert(session: Session, model, rows: list[dict], keys: list[str]) -> None:
    if len(insert_new_rows(session, model, rows, keys)) < len(rows):
        # another worker made one of these rows first: decide the batch again with it known
        raise RetryBatch(f"{model.__tablename__}: a row this batch made was made concurrently")
