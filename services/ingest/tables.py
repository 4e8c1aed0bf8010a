"""Sources and their write keys; messageIds seen per source; tracking plan violations."""
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime.db import Base, UtcDateTime


class Source(Base):
    __tablename__ = "sources"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # website, mobile, server, social, shop, helpdesk
    write_key: Mapped[str] = mapped_column(String(128), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    plan_mode: Mapped[str] = mapped_column(String(8), default="allow", server_default="allow")
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class SeenMessage(Base):
    """A messageId appended for a source: a retry within the dedupe window is not appended again."""

    __tablename__ = "ingest_seen_messages"
    source_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class PlanViolation(Base):
    """What an event broke in its source's tracking plan (warn and block modes)."""

    __tablename__ = "plan_violations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_id: Mapped[str] = mapped_column(String(64), index=True)
    message_id: Mapped[str] = mapped_column(String(200))
    event: Mapped[str | None] = mapped_column(String(200), nullable=True)
    type: Mapped[str] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000))
    blocked: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
