"""Access tokens for every route but ingest's: stored hashed, checked in constant time."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from services.runtime import audit
from services.runtime.clock import now
from services.runtime.db import Base, Json, UtcDateTime
from services.runtime.http import ApiError, ReadSession

SCOPES = ("profiles:read", "segments:read", "segments:write", "admin", "privacy")
AUDITED_SCOPES = ("admin", "privacy")
# an identifier's value is personal data: the audit log says that someone was looked up or
# exported, not who (else erasing the person would have to rewrite the audit log)
PERSONAL_PARAMETERS, REDACTED = {"value"}, "[redacted]"  # every use is audited; other scopes only their writes
TOKEN_PREFIX = "rpt_"


class AccessToken(Base):
    __tablename__ = "access_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, name: str, scopes: list[str]) -> tuple[AccessToken, str]:
    """Store a new token (hashed); answers its row and its only plain-text copy."""
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = AccessToken(id=secrets.token_hex(8), name=name, token_hash=_digest(token), scopes=sorted(set(scopes)),
                      created_at=now())
    session.add(row)
    return row, token


def create_token(session: Session, name: str, scopes: list[str]) -> str:
    return issue_token(session, name, scopes)[1]


def token_holder(session: Session, token: str) -> AccessToken | None:
    """The live token matching `token` (looked up by hash, compared in constant time)."""
    row = session.scalars(select(AccessToken).where(AccessToken.token_hash == _digest(token))).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, _digest(token)):
        return None
    return row


def token_scopes(session: Session, token: str) -> list[str] | None:
    holder = token_holder(session, token)
    return holder.scopes if holder else None


def presented_token(header: str) -> str | None:
    """`Bearer TOKEN`, or `Basic base64(TOKEN:)` as Segment's Profile API clients send it."""
    kind, _, credential = header.partition(" ")
    if kind.lower() == "bearer":
        return credential.strip() or None
    if kind.lower() == "basic":
        try:
            return base64.b64decode(credential, validate=True).decode().partition(":")[0] or None
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


def require(scope: str):
    """A dependency that lets a request through only with a token holding `scope` (or admin)."""

    def check(request: Request, session: ReadSession) -> Iterator[None]:
        token = presented_token(request.headers.get("authorization", ""))
        if not token:
            raise ApiError(401, "unauthorized", "an access token is required (Authorization: Bearer ...)",
                           "Authorization", {"WWW-Authenticate": "Bearer"})
        holder = token_holder(session, token.strip())
        if holder is None:
            raise ApiError(401, "unauthorized", "unknown or revoked access token", "Authorization",
                           {"WWW-Authenticate": "Bearer"})
        if scope not in holder.scopes and "admin" not in holder.scopes:
            raise ApiError(403, "forbidden", f"this token lacks the {scope!r} scope", "Authorization")
        actor = f"token {holder.id} ({holder.name})"
        yield  # the route runs; only what succeeded is audited
        if scope in AUDITED_SCOPES or request.method not in ("GET", "HEAD", "OPTIONS"):
            audit.record(request.app.state.engine, actor, f"{request.method} {request.url.path}",
                         {k: REDACTED if k in PERSONAL_PARAMETERS else v for k, v in request.query_params.items()})

    return Depends(check)


ProfilesRead = Annotated[None, require("profiles:read")]
SegmentsRead = Annotated[None, require("segments:read")]
SegmentsWrite = Annotated[None, require("segments:write")]
