"""Profile projection tables."""
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime.db import Base, Json, UtcDateTime


class Profile(Base):
    __tablename__ = "profiles"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    event_count: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(BigInteger)  # grows on every change; orders snapshots
    computed: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)


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
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    channel: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ProfileAlias(Base):
    """An absorbed profile id and the survivor it now reads as."""

    __tablename__ = "profile_aliases"
    absorbed: Mapped[str] = mapped_column(String(64), primary_key=True)
    survivor: Mapped[str] = mapped_column(String(64), index=True)


class ProfileIdentity(Base):
    """An identifier seen on a profile's events (the 360 view and lookups)."""

    __tablename__ = "profile_identities"
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(512), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class ComputedTraitDefinition(Base):
    """A computed trait declared through the admin API (the config file adds more)."""

    __tablename__ = "computed_trait_definitions"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    definition: Mapped[dict] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RfmCuts(Base):
    """Population quintile cut points for RFM scores, refreshed by the profile ticker."""

    __tablename__ = "rfm_cuts"
    dimension: Mapped[str] = mapped_column(String(16), primary_key=True)
    cuts: Mapped[list] = mapped_column(Json)
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime)
