"""The identity graph: identifiers, components, evidence, profiles, merges, refusals, splits."""
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime.db import Base, Json, UtcDateTime


class IdentityLink(Base):
    """An identifier, the profile it belongs to, and its component (the lock unit)."""

    __tablename__ = "identity_links"
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(512), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(64), index=True)
    first_message_id: Mapped[str] = mapped_column(String(200))
    component: Mapped[str] = mapped_column(String(64), index=True)
    # merge protection dropped it for breaking a limit: it links nothing beyond its first profile
    shared: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    first_at: Mapped[str | None] = mapped_column(String(40), nullable=True)  # its earliest evidence


class IdentityComponent(Base):
    """Identifiers joined by any evidence, refused links included: the unit that is
    locked, and recomputed when late evidence arrives. Absorbed components stay (merged_into
    set) so that a worker holding an old id finds a row to lock and learns where it went."""

    __tablename__ = "identity_components"
    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_key: Mapped[str] = mapped_column(String(300))  # greatest evidence key applied
    merged_into: Mapped[str | None] = mapped_column(String(64), nullable=True)


class IdentityEvent(Base):
    """Every resolved event: its evidence, its profile and where it is in the log."""

    __tablename__ = "identity_events"
    message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    component: Mapped[str] = mapped_column(String(64), index=True)
    profile_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[str] = mapped_column(String(40))
    identifiers: Mapped[list] = mapped_column(Json)
    topic: Mapped[str] = mapped_column(String(200))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(Integer, default=0)  # times it was resolved again


class IdentityProfile(Base):
    """Every profile id ever issued; an id reads as the profile now holding the identifier
    it is named after (merged_into keeps that answer when it is another profile)."""

    __tablename__ = "identity_profiles"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    merged_into: Mapped[str | None] = mapped_column(String(64), index=True)
    named_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    named_value: Mapped[str | None] = mapped_column(String(512), nullable=True)


class IdentityMerge(Base):
    """A merge, with the event and identifiers that caused it (its evidence)."""

    __tablename__ = "identity_merges"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    survivor: Mapped[str] = mapped_column(String(64), index=True)
    absorbed: Mapped[str] = mapped_column(String(64), index=True)
    message_id: Mapped[str] = mapped_column(String(200))
    identifiers: Mapped[list] = mapped_column(Json)
    merged_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IdentityRefusal(Base):
    """A link merge protection refused, and why."""

    __tablename__ = "identity_refusals"
    __table_args__ = (UniqueConstraint("message_id", "dropped_type", "dropped_value"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(200), index=True)
    profile_id: Mapped[str] = mapped_column(String(64), index=True)
    dropped_type: Mapped[str] = mapped_column(String(64))
    dropped_value: Mapped[str] = mapped_column(String(512))
    conflict_type: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(2000))
    refused_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IdentityCorrection(Base):
    """A change that published merges or splits. Its id, `seq` on those records, orders the
    corrections of an id: their copies go to several partitions, so a reader may consume an
    older one after a newer one, and must not apply it then (docs/identity.md)."""

    __tablename__ = "identity_corrections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    made_at: Mapped[datetime] = mapped_column(UtcDateTime)  # nothing of the person: erasure keeps it


class IdentitySplit(Base):
    """A profile split apart, by an operator or by late evidence, and into what."""

    __tablename__ = "identity_splits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    profile_id: Mapped[str] = mapped_column(String(64), index=True)
    parts: Mapped[dict] = mapped_column(Json)
    removed: Mapped[list] = mapped_column(Json)
    cause: Mapped[str] = mapped_column(String(300))  # a message id, or "operator: ..."
    split_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IdentityOverride(Base):
    """An operator's unmerge: a blocked value never links; an isolated one links to nothing.
    Operator input, not a projection: it is kept when the projections are replayed."""

    __tablename__ = "identity_overrides"
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(512), primary_key=True)
    action: Mapped[str] = mapped_column(String(16))  # block | isolate
    profile_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IdentityRules(Base):
    """The rules an admin stored (PUT /v1/identity/rules), one row; they replace the file's.
    Operator input, kept when the projections are replayed."""

    __tablename__ = "identity_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict] = mapped_column(Json)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
