"""Segment-compatible HTTP routes: the write key is the Basic auth username."""
from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from services.ingest.domain.messages import Rejection
from services.ingest.service import Ingest
from services.ingest.tables import Source
from services.runtime.http import ApiError

router = APIRouter(tags=["ingest"])


def get_ingest(request: Request) -> Ingest:
    return Ingest(request.app.state.engine, request.app.state.log)


IngestDep = Annotated[Ingest, Depends(get_ingest)]


def write_key_of(request: Request) -> str | None:
    kind, _, encoded = request.headers.get("authorization", "").partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode().partition(":")[0] or None
    except (binascii.Error, UnicodeDecodeError):
        return None


async def authenticated_source(request: Request, ingest: IngestDep) -> Source:
    write_key = write_key_of(request)
    if write_key is None:
        raise ApiError(401, "unauthorized", "a write key is required as the HTTP Basic username",
                       "Authorization", {"WWW-Authenticate": 'Basic realm="rapport"'})
    source = await run_in_threadpool(ingest.source, write_key)
    if source is None or not source.enabled:
        raise ApiError(401, "unauthorized", "unknown or disabled write key", "Authorization")
    return source


SourceDep = Annotated[Source, Depends(authenticated_source)]


async def json_body(request: Request) -> Any:
    """The body as JSON whatever the Content-Type says (browser SDKs send text/plain)."""
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {error}", "body") from None


async def _accept(kind: str, request: Request, source: Source, ingest: Ingest) -> dict:
    body = await json_body(request)
    try:
        await run_in_threadpool(ingest.accept, source, kind, body)
    except Rejection as rejection:
        raise ApiError(400, rejection.rule, rejection.message, rejection.field) from None
    return {"success": True}


@router.post("/v1/track")
async def track(request: Request, source: SourceDep, ingest: IngestDep) -> dict:
    """Record an action a person took (Segment's track call)."""
    return await _accept("track", request, source, ingest)


@router.post("/v1/identify")
async def identify(request: Request, source: SourceDep, ingest: IngestDep) -> dict:
    """Tie a person to their identifiers and traits (Segment's identify call)."""
    return await _accept("identify", request, source, ingest)
