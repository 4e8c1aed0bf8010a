"""Access tokens for every route but ingest's: stored hashed, checked in constant time."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from services.runtime.clock import now
from services.runtime.db import Base, Json, UtcDateTime
from services.runtime.http import ApiError, ReadSession

SCOPES = ("profiles:read", "segments:read", "segments:write", "admin", "privacy")
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


def create_token(session: Session, name: str, scopes: list[str]) -> str:
    """Store a new token (hashed) and answer its only plain-text copy."""
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(AccessToken(id=secrets.token_hex(8), name=name, token_hash=_digest(token),
                            scopes=scopes, created_at=now()))
    return token


def token_scopes(session: Session, token: str) -> list[str] | None:
    row = session.scalars(select(AccessToken).where(AccessToken.token_hash == _digest(token))).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, _digest(token)):
        return None
    return row.scopes


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

    def check(request: Request, session: ReadSession) -> None:
        token = presented_token(request.headers.get("authorization", ""))
        if not token:
            raise ApiError(401, "unauthorized", "an access token is required (Authorization: Bearer ...)",
                           "Authorization", {"WWW-Authenticate": "Bearer"})
        scopes = token_scopes(session, token.strip())
        if scopes is None:
            raise ApiError(401, "unauthorized", "unknown or revoked access token", "Authorization",
                           {"WWW-Authenticate": "Bearer"})
        if scope not in scopes and "admin" not in scopes:
            raise ApiError(403, "forbidden", f"this token lacks the {scope!r} scope", "Authorization")

    return Depends(check)


ProfilesRead = Annotated[None, require("profiles:read")]
SegmentsRead = Annotated[None, require("segments:read")]
SegmentsWrite = Annotated[None, require("segments:write")]
