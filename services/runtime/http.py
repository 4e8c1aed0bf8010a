"""What every HTTP app shares: error shape, database and log dependencies, health."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from services.runtime.db import reading
from services.runtime.log import Log, LogUnavailable


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
        field = ".".join(str(p) for p in detail["loc"] if p not in ("body", "query", "path"))
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

health = APIRouter(tags=["health"])


@health.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


def make_app(title: str, routers: list[APIRouter], engine: Engine, log: Log) -> FastAPI:
    app = FastAPI(title=title, version="0.1.0")
    app.state.engine, app.state.log = engine, log
    install_error_handlers(app)
    for router in [health, *routers]:
        app.include_router(router)
    return app
