"""Segment definitions, the profiles they are evaluated on, membership and its history."""
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, PrimaryKeyConstraint, String, text, true
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime.db import Base, Json, UtcDateTime


class Segment(Base):
    __tablename__ = "segments"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    condition: Mapped[dict] = mapped_column(Json)  # canonical tree (domain/conditions.py)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    text: Mapped[str | None] = mapped_column(String(4000), nullable=True)
    requires_consent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # background evaluation over existing profiles after a create or an edit
    backfill_state: Mapped[str] = mapped_column(String(16), default="done", server_default="done")
    backfill_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    backfill_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    backfill_after: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # PostgreSQL's set-based backfill reads segment_profiles in heap order (backfill.py): the next
    # row position (block << 16 | offset); the transaction that saved the definition (no older
    # one saw it); segment_profiles' file (a rewrite such as VACUUM FULL moves every row: start
    # again); and whether every row read must be looked up in the members and may have to exit
    # (members from before the save, i.e. an edit; or a pass started again)
    backfill_tid: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    backfill_since: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    backfill_heap: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    backfill_check_all: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class SegmentCatalog(Base):
    """One row whose lock orders definition changes against profile evaluation."""

    __tablename__ = "segment_catalog"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class SegmentProfile(Base):
    """The latest profile snapshot seen on profiles.changed, for (re)evaluation."""

    __tablename__ = "segment_profiles"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    traits: Mapped[dict] = mapped_column(Json)
    computed: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    stage: Mapped[str | None] = mapped_column(String(32), nullable=True)
    consent: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))


class SegmentMember(Base):
    __tablename__ = "segment_members"
    segment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    entered_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MembershipChange(Base):
    """Append-only history of entries and exits; seq only grows, in commit order. Keyed by
    (segment_key, seq), the order the changes feed reads (one index to write, not two);
    seq is unique across segments too, given out by the locked SegmentSequence row."""

    __tablename__ = "segment_membership_changes"
    __table_args__ = (PrimaryKeyConstraint("segment_key", "seq"),)
    seq: Mapped[int] = mapped_column(Integer, autoincrement=False)
    segment_key: Mapped[str] = mapped_column(String(100))
    profile_id: Mapped[str] = mapped_column(String(64))
    change: Mapped[str] = mapped_column(String(8))  # "entered" | "exited"
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class SegmentSequence(Base):
    """The last seq given out. Its row lock is held to the commit, so sequence numbers
    become visible in order and a cursor never skips a change committed late."""

    __tablename__ = "segment_sequence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(BigInteger)


class LifecycleStage(Base):
    """A profile's current lifecycle stage and since when."""

    __tablename__ = "lifecycle_stages"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16), index=True)
    since: Mapped[datetime] = mapped_column(UtcDateTime)
    why: Mapped[str] = mapped_column(String(200))


class LifecycleTransition(Base):
    """Every move between stages; seq only grows, in commit order (the incremental feed)."""

    __tablename__ = "lifecycle_transitions"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(64), index=True)
    from_stage: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_stage: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    why: Mapped[str] = mapped_column(String(200))
