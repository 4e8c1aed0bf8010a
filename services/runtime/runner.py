"""Runs services: their routers in one FastAPI app, their projectors in threads."""
from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.runtime.bootstrap import Runtime, Service
from services.runtime.http import make_app

SERVICE_NAMES = ("ingest", "identity", "profile", "segments")


def bootstrap_services(runtime: Runtime, names=SERVICE_NAMES) -> list[Service]:
    return [importlib.import_module(f"services.{name}.main").bootstrap(runtime) for name in names]


def build_app(runtime: Runtime, services: list[Service], *, run_projectors: bool = True) -> FastAPI:
    """One app with every service's routes; projectors run for the app's lifetime."""
    app = make_app("Rapport", [r for s in services for r in s.routers], runtime.engine, runtime.log)
    projectors = [w for s in services for w in s.background()]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Iterator[None]:
        threads = [p.start() for p in projectors] if run_projectors else []
        yield
        for projector in projectors:
            projector.stop.set()
        for thread in threads:
            thread.join(timeout=30)

    app.router.lifespan_context = lifespan
    return app
