"""The audit log: who did what, when, for admin and privacy actions and every write
through the query APIs (recorded by the access check once the action succeeded)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from services.runtime.clock import now
from services.runtime.db import Base, Json, UtcDateTime, writing


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(300))  # the token (id and name), or "cli (user)"
    action: Mapped[str] = mapped_column(String(500))  # e.g. "DELETE /v1/segments/vip"
    details: Mapped[dict] = mapped_column(Json)


def record(engine: Engine, actor: str, action: str, details: dict | None = None) -> None:
    with writing(engine) as session:
        session.add(AuditEntry(at=now(), actor=actor[:300], action=action[:500], details=details or {}))
