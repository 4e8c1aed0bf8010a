"""Segment- and RudderStack-compatible HTTP routes, the browser SDK's settings, and webhooks.

Every route here answers with CORS headers (errors too), so browsers can send to it.
The write key is the HTTP Basic username, or `writeKey` in the body.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import exc

from services.ingest.domain.mapping import messages_from
from services.ingest.domain.wire import (CALLS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES, SHORT_PATHS,
                                         batch_items, call_of, write_key_in)
from services.ingest.service import Ingest, Outcome
from services.runtime import jsoncodec
from services.runtime.clock import now
from services.runtime.http import ApiError, error_body
from services.runtime.log import LogUnavailable

CORS = {"Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding, X-Retry-Count",
        "Access-Control-Expose-Headers": "Retry-After", "Access-Control-Max-Age": "86400"}
# as raw header lines: MutableHeaders rescans every header on each one it sets (5 us a response)
_CORS_LINES = [(name.lower().encode(), value.encode()) for name, value in CORS.items()]
_ANY_ORIGIN = [(b"access-control-allow-origin", b"*")]
ANY_JSON = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "additionalProperties": True}},
    "text/plain": {"schema": {"type": "string"}}}}}


_SUCCESS = {"success": True}  # the common answer, encoded once
_SUCCESS_JSON = b'{"success":true}'
# Blocking work of a request (the durable log append) runs here: a plain executor is a
# fraction of the cost of anyio's run_in_threadpool (cancel scope, capacity limiter) a call.
_BLOCKING = ThreadPoolExecutor(max_workers=64, thread_name_prefix="ingest")


async def blocking(fn, *args):
    """`fn(*args)` in a thread, with this request's context (its request id in the logs)."""
    return await asyncio.get_running_loop().run_in_executor(_BLOCKING, contextvars.copy_context().run, fn, *args)


class JSONResponse(Response):
    """A JSON answer encoded by orjson (`jsoncodec`)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if content is _SUCCESS:
            return _SUCCESS_JSON
        return jsoncodec.dumps(content)


def write_key_of(request: Request) -> str | None:
    kind, _, encoded = request.headers.get("authorization", "").partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode().partition(":")[0] or None
    except (binascii.Error, UnicodeDecodeError):
        return None


def with_cors(request: Request, response: Response) -> Response:
    """`response` with the CORS headers (it has none of them yet)."""
    origin = request.headers.get("origin")
    response.raw_headers += _CORS_LINES + (_ANY_ORIGIN if not origin else [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"), (b"vary", b"Origin")])
    return response


async def answered(request: Request, work) -> Response:
    """Run `work`, answering its result or its error as JSON with CORS headers."""
    try:
        status, body = await work()
        response = JSONResponse(body, status_code=status)
    except ApiError as error:
        response = JSONResponse(error_body(error.code, error.message, error.field),
                                status_code=error.status, headers=error.headers)
    except LogUnavailable as error:
        response = JSONResponse(error_body("log_unavailable", f"the event log can't take writes: {error}"),
                                status_code=503, headers={"Retry-After": "1"})
    except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError):  # the database is down: it passes
        response = JSONResponse(error_body("database_unavailable", "the database can't be reached; retry"),
                                status_code=503, headers={"Retry-After": "1"})
    return with_cors(request, response)


async def body_bytes(request: Request, limit: int) -> bytes:
    """The body, un-gzipped, refusing with 413 what would be over `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if request.headers.get("content-encoding", "").strip().lower() in ("gzip", "x-gzip"):
        raw = _gunzipped(raw, limit)
    return raw


def _gunzipped(raw: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)  # never inflates more than the limit
    except zlib.error as error:
        raise ApiError(400, "invalid_gzip", f"the body is not valid gzip: {error}", "body") from None
    if len(out) > limit:
        raise _too_large(limit)
    return out


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"a request may be at most {limit // 1024} KB", "body")


def parsed(raw: bytes) -> Any:
    """JSON whatever the Content-Type says (browser SDKs send text/plain). The codec's
    standard-library fallback decides what orjson refuses (NaN, Infinity, huge integers)."""
    try:
        return jsoncodec.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:  # RecursionError: nested too deeply
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {error}", "body") from None


def router_for(ingest: Ingest) -> APIRouter:
    router = APIRouter(tags=["ingest"])

    def call_route(kind: str):
        async def endpoint(request: Request) -> Response:
            return await answered(request, lambda: _take(ingest, request, kind))
        endpoint.__name__ = f"ingest_{kind}"
        return endpoint

    router.direct = {}  # the call routes, answered past FastAPI's routing (http.DirectRoutes)
    for kind in (*CALLS, "batch"):
        paths = [f"/v1/{kind}"] + [f"/v1/{short}" for short, long in SHORT_PATHS.items() if long == kind]
        for path in paths:
            router.add_api_route(path, call_route(kind), methods=["POST"], openapi_extra=ANY_JSON,
                                 summary=f"Segment {kind} call", include_in_schema=path == paths[0])
            router.direct[path] = router.routes[-1]
            router.add_api_route(path, preflight, methods=["OPTIONS"], include_in_schema=False)

    @router.get("/v1/projects/{write_key}/settings")
    async def project_settings(write_key: str, request: Request) -> Response:
        """What the Segment browser SDK (analytics-next) loads to send its events here."""
        async def work():
            await run_in_threadpool(ingest.authenticated, write_key)
            return 200, browser_settings(request, write_key)
        return await answered(request, work)

    @router.post("/v1/webhooks/{mapping}", openapi_extra=ANY_JSON)
    async def webhook(mapping: str, request: Request) -> Response:
        """A webhook of a tool without an SDK (shop, help desk, social), mapped to canonical events."""
        return await answered(request, lambda: _webhook(ingest, request, mapping))

    router.add_api_route("/v1/projects/{write_key}/settings", preflight, methods=["OPTIONS"],
                         include_in_schema=False)
    router.add_api_route("/v1/webhooks/{mapping}", preflight, methods=["OPTIONS"], include_in_schema=False)
    return router


async def preflight(request: Request) -> Response:
    return with_cors(request, Response(status_code=204))


async def _take(ingest: Ingest, request: Request, kind: str) -> tuple[int, dict]:
    raw = await body_bytes(request, MAX_EVENT_BYTES if kind in CALLS else MAX_REQUEST_BYTES)
    body = parsed(raw)  # first: the write key may be in it
    write_key = write_key_of(request) or write_key_in(body)
    if kind == "batch" and not (isinstance(body, dict) and isinstance(body.get("batch"), list)):
        # the key first: an unknown key is 401 whatever the body
        await blocking(ingest.authenticated, write_key)
        raise ApiError(400, "invalid_batch", "batch: must be a list of messages", "batch")
    items = ([(call_of(item), item) for item in batch_items(body)] if kind == "batch"
             else [(kind, body)])
    source = ingest.cached(write_key) or await blocking(ingest.authenticated, write_key)
    ingest.admit(source, len(items))
    outcome = await _receiver(ingest).receive(source, items)
    if kind != "batch" and outcome.rejected:
        error = outcome.rejected[0]["error"]
        raise ApiError(400, error["code"], error["message"], error["field"])
    return 200, ({"success": True, "rejected": outcome.rejected} if outcome.rejected else _SUCCESS)


class Receiver:
    """Requests arriving together go to the log together.

    Each request's messages wait here on the event loop; a drain takes every request
    waiting and hands them to one thread as one `Ingest.receive_many` (one dedupe lookup,
    one durable append), then answers each request with its own outcome, or all of them
    with the log's error. One group is in flight at a time: while it is checked and
    committed, the event loop reads the next requests, which make the next group. Two groups
    at once (checking one while the other commits) lost more to the two threads contending
    for the GIL than they gained: one gave 14-25% more single events a second (three pairs
    of wrk runs, 16 connections; 19-36% with two processes and 32) and 10-22% more batched
    events. A request is answered only once its group is durably in the log.
    """

    def __init__(self, ingest: Ingest, drains: int = 1, max_items: int = 5_000):
        self.ingest, self.drains, self.max_items = ingest, drains, max_items
        self.waiting: list[tuple[Any, list, datetime, asyncio.Future]] = []
        self.running = 0

    async def receive(self, source, items: list) -> Outcome:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((source, items, now(), future))
        if self.running < self.drains:
            self.running += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.waiting:
                group, size = [], 0
                while self.waiting and (not group or size + len(self.waiting[0][1]) <= self.max_items):
                    group.append(self.waiting.pop(0))
                    size += len(group[-1][1])
                try:
                    outcomes = await blocking(self.ingest.receive_many, [(s, i) for s, i, _, _ in group],
                                              [at for _, _, at, _ in group])
                except BaseException as error:  # noqa: BLE001 - every request of the group hears of it
                    for *_, future in group:
                        if not future.done():
                            future.set_exception(error)
                    if not isinstance(error, Exception):
                        raise
                else:
                    for (*_, future), outcome in zip(group, outcomes):
                        if not future.done():
                            future.set_result(outcome)
        finally:
            self.running -= 1


def _receiver(ingest: Ingest) -> Receiver:
    """The ingest's receiver on the running event loop (tests may run several loops)."""
    loop = asyncio.get_running_loop()
    receiver = getattr(ingest, "_receiver", None)
    if receiver is None or receiver[0] is not loop:
        receiver = ingest._receiver = (loop, Receiver(ingest))
    return receiver[1]


async def _webhook(ingest: Ingest, request: Request, name: str) -> tuple[int, dict]:
    write_key = write_key_of(request) or request.query_params.get("writeKey")
    source = await run_in_threadpool(ingest.authenticated, write_key)
    mapping = ingest.mappings.get(name)
    if mapping is None:
        raise ApiError(404, "unknown_mapping", f"no webhook mapping named {name!r}", "mapping")
    payload = parsed(await body_bytes(request, MAX_REQUEST_BYTES))
    items = [(call_of(message), message) for message in messages_from(mapping, payload)]
    ingest.admit(source, len(items))
    outcome = await blocking(ingest.receive, source, items)
    return 200, {"success": True, "accepted": outcome.accepted, "duplicates": outcome.duplicates,
                 **({"rejected": outcome.rejected} if outcome.rejected else {})}


def browser_settings(request: Request, write_key: str) -> dict:
    """The CDN settings analytics-next reads: its Segment.io destination points at this host."""
    host = request.headers.get("x-forwarded-host") or request.headers.get("host") or request.url.netloc
    scheme = request.headers.get("x-forwarded-proto") or request.url.scheme
    calls = {call: {"__default": {"enabled": True, "integrations": {}}} for call in ("track", "identify", "group")}
    return {
        "integrations": {"Segment.io": {"apiKey": write_key, "apiHost": f"{host}/v1", "protocol": scheme,
                                        "unbundledIntegrations": [], "addBundledMetadata": True,
                                        "maybeBundledConfigIds": {},
                                        "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]}}},
        "plan": calls, "edgeFunction": {}, "analyticsNextEnabled": True, "middlewareSettings": {},
        "enabledMiddleware": {}, "metrics": {"sampleRate": 0}, "legacyVideoPluginsEnabled": False,
        "remotePlugins": [], "consentSettings": {"allCategories": []},
    }
