"""POST /v1/privacy/deletions (202 and a request id) and GET it for its status."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from services.identity.domain.rules import Rules
from services.privacy.requests import request_deletion
from services.privacy.tables import DeletionRequest
from services.runtime.access import require
from services.runtime.clock import format_time
from services.runtime.db import writing
from services.runtime.http import ApiError, EngineDep, ReadSession

Privacy = Annotated[None, require("privacy")]
Mode = Literal["delete_and_suppress", "suppress"]


class DeletionBody(BaseModel):
    type: str = Field(min_length=1, max_length=64, description="any identifier type: email, user_id, phone, ...")
    value: str = Field(min_length=1, max_length=512)
    mode: Mode | None = Field(None, description="default: the erasure_mode setting")


class DeletionStatus(BaseModel):
    id: str
    status: Literal["pending", "done"]
    identifier_type: str
    mode: Mode
    requested_at: str
    done_at: str | None
    error: str | None = Field(None, description="the last failed attempt's error (it is retried)")
    outcome: dict


def status_of(row: DeletionRequest) -> DeletionStatus:
    return DeletionStatus(id=row.id, status=row.status, identifier_type=row.identifier_type, mode=row.mode,
                          requested_at=format_time(row.requested_at),
                          done_at=format_time(row.done_at) if row.done_at else None,
                          error=row.error, outcome=row.outcome or {})


def router_for(rules: Rules) -> APIRouter:
    router = APIRouter(prefix="/v1/privacy", tags=["privacy"])

    @router.post("/deletions", status_code=202, response_model=DeletionStatus)
    def delete_person(body: DeletionBody, request: Request, engine: EngineDep, _: Privacy) -> DeletionStatus:
        """Erase the person an identifier names: 202 at once, then GET the request for its status."""
        runtime = request.app.state.runtime
        with writing(engine) as session:
            row = request_deletion(session, runtime.keys, rules, body.type, body.value,
                                   body.mode or runtime.settings.erasure_mode)
        return status_of(row)

    @router.get("/deletions/{request_id}", response_model=DeletionStatus)
    def deletion_status(request_id: str, session: ReadSession, _: Privacy) -> DeletionStatus:
        row = session.get(DeletionRequest, request_id)
        if row is None:
            raise ApiError(404, "not_found", f"no deletion request {request_id!r}", "request_id")
        return status_of(row)

    return router
