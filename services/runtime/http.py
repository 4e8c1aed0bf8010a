"""What every HTTP app shares: error shape, database and log dependencies, health,
metrics, and request ids in logs."""
from __future__ import annotations

import importlib.util
import inspect
import logging
import time
import uuid
from collections.abc import Iterator
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from services.runtime import health, logs, metrics
from services.runtime.db import reading
from services.runtime.log import Log, LogUnavailable

access_logger = logging.getLogger("rapport.access")


class ApiError(Exception):
    """An error answered as {"error": {"code", "message", "field"}}."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


def error_body(code: str, message: str, field: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "field": field}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError):
        return JSONResponse(error_body(error.code, error.message, error.field),
                            status_code=error.status, headers=error.headers)

    @app.exception_handler(LogUnavailable)
    async def _log_down(_request: Request, error: LogUnavailable):
        return JSONResponse(error_body("log_unavailable", f"the event log can't take writes: {error}"),
                            status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError):
        detail = error.errors()[0]
        field = ".".join(str(p) for p in detail["loc"] if p not in ("body", "query", "path")) or "body"
        return JSONResponse(error_body(detail["type"], f"{field}: {detail['msg']}", field),
                            status_code=422)


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_log(request: Request) -> Log:
    return request.app.state.log


def read_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    with reading(engine) as session:
        yield session


EngineDep = Annotated[Engine, Depends(get_engine)]
LogDep = Annotated[Log, Depends(get_log)]
ReadSession = Annotated[Session, Depends(read_session)]

operations = APIRouter(tags=["operations"])


@operations.get("/metrics", include_in_schema=False)
def prometheus_metrics() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


class RequestContext:
    """ASGI middleware: a request id (X-Request-ID, kept if the caller sent one) in the
    logs and the response, one access log line, and the HTTP metrics by route template."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:200] or uuid.uuid4().hex
        token, started, status = logs.request_id.set(rid), time.perf_counter(), [500]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status[0], time.perf_counter() - started)
            logs.request_id.reset(token)

    @staticmethod
    def _record(scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")  # the template: bounded labels
        _requests_counted(scope["method"], route, status).inc()
        _latency_of(scope["method"], route).observe(seconds)
        access_logger.info("%s %s %s", scope["method"], scope["path"], status,
                           extra={"status": status, "route": route,
                                  "duration_ms": round(seconds * 1000, 2)})


# Each request's metric children, found once (prometheus-client's labels() takes a lock and
# builds the label tuple on every call). Bounded: methods x route templates x statuses.
@cache
def _requests_counted(method: str, route: str, status: int):
    return metrics.HTTP_REQUESTS.labels(method, route, str(status))


@cache
def _latency_of(method: str, route: str):
    return metrics.HTTP_LATENCY.labels(method, route)


class DirectRoutes:
    """ASGI middleware: a POST to one of `routes` (path -> its route) goes straight to the
    route's endpoint, past FastAPI's exception middleware, router and request handler. For
    the ingest calls, which answer every error themselves: that plumbing was a third of a
    single event's time under load (py-spy --gil). The routes stay declared on the app for
    the OpenAPI document, their OPTIONS preflights and any other method."""

    def __init__(self, app, routes: dict[str, Any]):
        self.app, self.routes = app, routes

    async def __call__(self, scope, receive, send):
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            return await self.app(scope, receive, send)
        scope["route"] = route  # RequestContext labels the metrics by its template
        response = await route.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)


def _otel_telemetry() -> dict:
    """FastAPI's OpenTelemetry instrumentation (FastAPI 0.16x) as FastAPI sets it up when the
    OpenTelemetry SDK is installed; without it no provider can exist to record anything, so
    it is off, which spares FastAPI looking the providers up on every request (3 us)."""
    if ("telemetry" not in inspect.signature(FastAPI).parameters
            or importlib.util.find_spec("opentelemetry.sdk") is not None):
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def make_app(title: str, routers: list[APIRouter], engine: Engine, log: Log) -> FastAPI:
    app = FastAPI(title=title, version="0.1.0", **_otel_telemetry())
    app.state.engine, app.state.log = engine, log
    install_error_handlers(app)
    direct = {path: route for router in routers for path, route in getattr(router, "direct", {}).items()}
    if direct:
        app.add_middleware(DirectRoutes, routes=direct)  # added first: it runs inside RequestContext
    app.add_middleware(RequestContext)
    for router in [health.router, operations, *routers]:
        app.include_router(router)
    return app
