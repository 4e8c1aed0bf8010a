"""The identity graph: identifiers, profiles (with where each was merged) and merges."""
from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime.db import Base, Json, UtcDateTime


class IdentityLink(Base):
    """An identifier and the profile it belongs to."""

    __tablename__ = "identity_links"
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(512), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(64), index=True)
    first_message_id: Mapped[str] = mapped_column(String(200))


class IdentityProfile(Base):
    __tablename__ = "identity_profiles"
    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    merged_into: Mapped[str | None] = mapped_column(String(64), index=True)


class IdentityMerge(Base):
    """A merge, with the event and identifiers that caused it (its evidence)."""

    __tablename__ = "identity_merges"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    survivor: Mapped[str] = mapped_column(String(64), index=True)
    absorbed: Mapped[str] = mapped_column(String(64), index=True)
    message_id: Mapped[str] = mapped_column(String(200))
    identifiers: Mapped[list] = mapped_column(Json)
    merged_at: Mapped[datetime] = mapped_column(UtcDateTime)
