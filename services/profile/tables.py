"""Profile projection tables."""
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime.db import Base, Json, UtcDateTime


class Profile(Base):
    __tablename__ = "profiles"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    event_count: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(BigInteger)  # grows on every change; orders snapshots


class ProfileTrait(Base):
    """A trait's winning value with its provenance."""

    __tablename__ = "profile_traits"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[Any] = mapped_column(Json, nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    message_id: Mapped[str] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(200))


class ProfileEvent(Base):
    """The timeline; its key makes a redelivered event a no-op."""

    __tablename__ = "profile_events"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    timestamp: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    properties: Mapped[dict] = mapped_column(Json)


class ProfileAlias(Base):
    """An absorbed profile id and the survivor it now reads as."""

    __tablename__ = "profile_aliases"
    absorbed: Mapped[str] = mapped_column(String(64), primary_key=True)
    survivor: Mapped[str] = mapped_column(String(64), index=True)
