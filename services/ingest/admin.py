"""The sources admin API: create, list, rotate, disable and plan sources (admin scope)."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from services.ingest.rejections import recent_rejections
from services.ingest.service import Ingest
from services.ingest.sources import (KINDS, UnknownSource, all_sources, described, new_source,
                                     rotate_key, set_enabled, set_plan_mode, source_by_id)
from services.ingest.tables import PlanViolation
from services.runtime.access import require
from services.runtime.db import reading, writing
from services.runtime.http import ApiError

Kind = Literal[KINDS]  # type: ignore[valid-type]
Mode = Literal["allow", "warn", "block"]


class NewSource(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: Kind = "server"
    plan_mode: Mode = "allow"


class SourceChange(BaseModel):
    plan_mode: Mode | None = None
    enabled: bool | None = None


def admin_router(ingest: Ingest) -> APIRouter:
    router = APIRouter(prefix="/v1/sources", tags=["sources"], dependencies=[require("admin")])

    def changed(source_id: str, change) -> dict:
        with writing(ingest.engine) as session:
            try:
                source = described(change(session, source_id))
            except UnknownSource:
                raise ApiError(404, "not_found", f"no source {source_id!r}", "source_id") from None
        ingest.forget_keys()
        return source

    @router.post("", status_code=201)
    def create(body: NewSource) -> dict:
        """A new source with its write key."""
        with writing(ingest.engine) as session:
            return described(new_source(session, body.name, body.kind, body.plan_mode))

    @router.get("")
    def listed() -> dict:
        with reading(ingest.engine) as session:
            return {"sources": [described(s) for s in all_sources(session)]}

    @router.get("/{source_id}")
    def one(source_id: str) -> dict:
        return changed(source_id, source_by_id)

    @router.post("/{source_id}/rotate")
    def rotate(source_id: str) -> dict:
        """A new write key; the old one stops working at once here, within the key cache TTL elsewhere."""
        return changed(source_id, rotate_key)

    @router.post("/{source_id}/disable")
    def disable(source_id: str) -> dict:
        return changed(source_id, lambda s, i: set_enabled(s, i, False))

    @router.post("/{source_id}/enable")
    def enable(source_id: str) -> dict:
        return changed(source_id, lambda s, i: set_enabled(s, i, True))

    @router.patch("/{source_id}")
    def change(source_id: str, body: SourceChange) -> dict:
        def apply(session, i):
            source = source_by_id(session, i)
            if body.plan_mode is not None:
                set_plan_mode(session, i, body.plan_mode)
            if body.enabled is not None:
                set_enabled(session, i, body.enabled)
            return source
        return changed(source_id, apply)

    @router.get("/{source_id}/violations")
    def violations(source_id: str, limit: int = Query(100, ge=1, le=1000)) -> dict:
        """The latest tracking plan violations of a source, newest first."""
        with reading(ingest.engine) as session:
            rows = session.scalars(select(PlanViolation).where(PlanViolation.source_id == source_id)
                                   .order_by(PlanViolation.id.desc()).limit(limit)).all()
            return {"violations": [{"message_id": r.message_id, "event": r.event, "type": r.type,
                                    "field": r.field, "description": r.description,
                                    "blocked": r.blocked, "at": r.at} for r in rows]}

    @router.get("/{source_id}/rejected")
    def rejected(source_id: str, limit: int = Query(50, ge=1, le=500)) -> dict:
        """The source's latest rejected events (from the tail of events.rejected), newest
        first, each with the reason and the payload as it was sent."""
        changed(source_id, source_by_id)  # a 404 for an unknown source
        return {"rejected": recent_rejections(ingest.log, ingest.settings, source_id, limit)}

    return router
