"""Profile projection tables."""
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime.db import Base, Json, SortedJson, UtcDateTime


class Profile(Base):
    __tablename__ = "profiles"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    event_count: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(BigInteger)  # grows on every change; orders snapshots
    computed: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    # running aggregates of the timeline (domain/summary.py); NULL: fold the timeline again.
    # Deferred: only the projector reads it (by column), not the ORM loads of the views
    summary: Mapped[dict | None] = mapped_column(SortedJson, nullable=True, deferred=True)


class LastWriteWins:
    """Columns of a value kept per profile and name, the latest event's winning, with provenance."""

    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(Json, nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    message_id: Mapped[str] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(200))


class ProfileTrait(LastWriteWins, Base):
    """A trait's winning value (null: unset)."""

    __tablename__ = "profile_traits"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)


class ProfileConsent(LastWriteWins, Base):
    """Consent per purpose: true given, false withdrawn."""

    __tablename__ = "profile_consent"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)  # the purpose


class ProfileEvent(Base):
    """The timeline; its key makes a redelivered event a no-op."""

    __tablename__ = "profile_events"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    timestamp: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    properties: Mapped[dict] = mapped_column(Json)
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # what the event stated, so a profile that loses events can be rebuilt from the rest
    traits: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    consent: Mapped[dict] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    # identity re-publishes an event with a higher version when it moves it to another profile
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class ProfileAlias(Base):
    """An absorbed profile id and the survivor it now reads as."""

    __tablename__ = "profile_aliases"
    absorbed: Mapped[str] = mapped_column(String(64), primary_key=True)
    survivor: Mapped[str] = mapped_column(String(64), index=True)


class ProfileAliasCorrection(Base):
    """The newest identity correction (a merge's or split's `seq`) applied to what an id reads
    as: an older one, consumed late from another partition, is not applied over it."""

    __tablename__ = "profile_alias_corrections"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)


class ProfileIdentity(Base):
    """An identifier seen on a profile's events (the 360 view and lookups)."""

    __tablename__ = "profile_identities"
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(512), primary_key=True)
    # indexed on its own: the 360 view reads a profile's identities by profile id
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


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
