"""Ingest's entry point: HTTP routes only, no projector."""
from services.ingest.routes import router
from services.runtime.bootstrap import Runtime, Service


def bootstrap(runtime: Runtime) -> Service:
    return Service("ingest", routers=[router])
