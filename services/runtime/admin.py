"""Admin API of the shared runtime: access tokens and the audit log."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from services.runtime.access import SCOPES, AccessToken, issue_token, require
from services.runtime.audit import AuditEntry
from services.runtime.clock import format_time, now
from services.runtime.db import writing
from services.runtime.http import ApiError, EngineDep, ReadSession

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Admin = Annotated[None, require("admin")]


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1, description=f"some of: {', '.join(SCOPES)}")


def token_view(row: AccessToken) -> dict:
    return {"id": row.id, "name": row.name, "scopes": row.scopes, "created_at": format_time(row.created_at),
            "revoked_at": format_time(row.revoked_at) if row.revoked_at else None}


@router.post("/tokens", status_code=201)
def create(body: TokenIn, engine: EngineDep, _: Admin) -> dict:
    """A new token; its plain text is in this answer only (it is stored hashed)."""
    with writing(engine) as session:
        try:
            row, token = issue_token(session, body.name, body.scopes)
        except ValueError as error:
            raise ApiError(422, "invalid_scopes", f"scopes: {error}", "scopes") from None
        return token_view(row) | {"token": token}


@router.get("/tokens")
def list_tokens(session: ReadSession, _: Admin) -> list[dict]:
    return [token_view(r) for r in session.scalars(select(AccessToken).order_by(AccessToken.created_at))]


@router.delete("/tokens/{token_id}", status_code=204)
def revoke(token_id: str, engine: EngineDep, _: Admin) -> None:
    with writing(engine) as session:
        row = session.get(AccessToken, token_id)
        if row is None:
            raise ApiError(404, "not_found", f"no token {token_id!r}", "token_id")
        row.revoked_at = row.revoked_at or now()


@router.get("/audit")
def audit_log(session: ReadSession, _: Admin,
              after: Annotated[int, Query(ge=0, le=2**63 - 1, description="the `next` of the previous call")] = 0,
              limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict:
    rows = list(session.scalars(select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id).limit(limit)))
    return {"entries": [{"id": r.id, "at": format_time(r.at), "actor": r.actor, "action": r.action,
                         "details": r.details} for r in rows], "next": rows[-1].id if rows else after}
