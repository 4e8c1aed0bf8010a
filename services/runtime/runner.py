"""Runs services: their routers in one FastAPI app, their projectors and workers in threads."""
from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.console import routes as console
from services.runtime import admin, parked
from services.runtime.bootstrap import Runtime, Service
from services.runtime.http import make_app
from services.runtime.projector import Projector, ProjectorTurns

SERVICE_NAMES = ("ingest", "identity", "profile", "segments", "privacy")


def bootstrap_services(runtime: Runtime, names=SERVICE_NAMES) -> list[Service]:
    return [importlib.import_module(f"services.{name}.main").bootstrap(runtime) for name in names]


def projector_for(runtime: Runtime, consumer: str) -> Projector:
    """A (not started) projector of the consumer group `consumer`, from whichever service has it."""
    for service in bootstrap_services(runtime):
        if service.projector is not None and service.projector.handler.name == consumer:
            return service.projector
    raise KeyError(consumer)


def build_app(runtime: Runtime, services: list[Service], *, run_projectors: bool = True) -> FastAPI:
    """One app with every service's routes; projectors run for the app's lifetime.

    On shutdown (uvicorn's SIGTERM handling: in-flight requests drain first) each
    projector is told to stop, finishes and commits the batch it is applying, and exits.
    """
    routers = [r for s in services for r in s.routers] + [parked.router, admin.router, console.router]
    app = make_app("Rapport", routers, runtime.engine, runtime.log)
    app.state.runtime = runtime
    projectors = [s.projector for s in services if s.projector is not None]
    if len(projectors) > 1:  # taking turns in one thread (see ProjectorTurns)
        projectors = [ProjectorTurns(projectors)]
    loops = projectors + [worker for s in services for worker in s.workers]  # and tickers, backfills

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Iterator[None]:
        app.state.stopping = False
        app.state.projector_threads = [loop.start() for loop in loops] if run_projectors else []
        yield
        app.state.stopping = True
        for loop in loops:
            loop.stop.set()
        for thread in app.state.projector_threads:
            thread.join(timeout=30)

    app.router.lifespan_context = lifespan
    return app
