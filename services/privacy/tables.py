"""Erasure requests and the identifiers erased people are suppressed by (both kept for good:
operator input, never rebuilt by a replay)."""
from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime.db import Base, Json, UtcDateTime


class DeletionRequest(Base):
    """A right-to-be-forgotten request. It never holds the identifier's value: only its type
    and kid (an HMAC), and the profile it named when it was made."""

    __tablename__ = "deletion_requests"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    identifier_type: Mapped[str] = mapped_column(String(64))
    identifier_kid: Mapped[str] = mapped_column(String(64))
    profile_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mode: Mapped[str] = mapped_column(String(32))  # delete_and_suppress | suppress
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending | done | failed
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome: Mapped[dict] = mapped_column(Json, default=dict)  # what was erased, counted


class SuppressedIdentifier(Base):
    """An erased identifier, by kid: identity drops every event that carries it."""

    __tablename__ = "suppressed_identifiers"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    identifier_type: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    suppressed_at: Mapped[datetime] = mapped_column(UtcDateTime)
