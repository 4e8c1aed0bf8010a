"""Ingest's entry point: HTTP routes, and the retention of raw events in the embedded log."""
from services.ingest.admin import admin_router
from services.ingest.routes import router_for
from services.ingest.service import Ingest
from services.runtime.bootstrap import Runtime, Service, tune_gc
from services.runtime.retention import RawEventRetention


def bootstrap(runtime: Runtime) -> Service:
    tune_gc()  # here too: `serve --workers` builds each process's app through this
    ingest = Ingest(runtime.engine, runtime.log, runtime.settings)
    days = runtime.settings.raw_retention_days
    embedded = runtime.settings.log_backend == "embedded"
    return Service("ingest", routers=[router_for(ingest), admin_router(ingest)],
                   workers=[RawEventRetention(runtime.log, days)] if days and embedded else [])
