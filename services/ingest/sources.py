"""Sources of events and their write keys: created, listed, rotated, disabled, planned."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.ingest.domain.plan import MODES
from services.ingest.tables import Source
from services.runtime.clock import now

KINDS = ("website", "mobile", "server", "social", "shop", "helpdesk")


class UnknownSource(LookupError):
    pass


@dataclass(frozen=True)
class SourceView:
    """What ingest needs of a source on every request (cached, so plain and immutable)."""

    id: str
    kind: str
    write_key: str
    enabled: bool
    plan_mode: str

    @classmethod
    def of(cls, source: Source) -> "SourceView":
        return cls(source.id, source.kind, source.write_key, source.enabled, source.plan_mode or "allow")


def _new_write_key() -> str:
    return "wk_" + secrets.token_urlsafe(24)


def new_source(session: Session, name: str, kind: str, plan_mode: str = "allow") -> Source:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    _check_mode(plan_mode)
    source = Source(id="src_" + secrets.token_hex(6), name=name, kind=kind, write_key=_new_write_key(),
                    enabled=True, created_at=now(), plan_mode=plan_mode, duplicates=0)
    session.add(source)
    session.flush()
    return source


def all_sources(session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.created_at, Source.id)))


def source_by_id(session: Session, source_id: str) -> Source:
    source = session.get(Source, source_id, with_for_update=True)
    if source is None:
        raise UnknownSource(source_id)
    return source


def rotate_key(session: Session, source_id: str) -> Source:
    """A new write key; the old one stops working (within the ingest key cache's TTL)."""
    source = source_by_id(session, source_id)
    source.write_key = _new_write_key()
    return source


def set_enabled(session: Session, source_id: str, enabled: bool) -> Source:
    source = source_by_id(session, source_id)
    source.enabled = enabled
    return source


def set_plan_mode(session: Session, source_id: str, mode: str) -> Source:
    _check_mode(mode)
    source = source_by_id(session, source_id)
    source.plan_mode = mode
    return source


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"plan mode must be one of {', '.join(MODES)}")


def described(source: Source) -> dict:
    return {"id": source.id, "name": source.name, "kind": source.kind, "write_key": source.write_key,
            "enabled": source.enabled, "plan_mode": source.plan_mode, "duplicates": source.duplicates,
            "created_at": source.created_at}
