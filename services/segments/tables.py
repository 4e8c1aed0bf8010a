"""Segment definitions, the profiles they are evaluated on, membership and its history."""
from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime.db import Base, Json, UtcDateTime


class Segment(Base):
    __tablename__ = "segments"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    condition: Mapped[dict] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


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


class SegmentMember(Base):
    __tablename__ = "segment_members"
    segment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entered_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MembershipChange(Base):
    """Append-only history of entries and exits; seq only grows."""

    __tablename__ = "segment_membership_changes"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    segment_key: Mapped[str] = mapped_column(String(100), index=True)
    profile_id: Mapped[str] = mapped_column(String(64))
    change: Mapped[str] = mapped_column(String(8))  # "entered" | "exited"
    at: Mapped[datetime] = mapped_column(UtcDateTime)
