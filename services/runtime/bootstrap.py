"""Builds what every service needs (settings, engine, log) once; tests pass overrides."""
from __future__ import annotations

import gc
from dataclasses import dataclass, field

from fastapi import APIRouter
from sqlalchemy.engine import Engine

from services.runtime import topics
from services.runtime.db import make_engine
from services.runtime.log import Log, open_log
from services.runtime.projector import Handler, Projector
from services.runtime.sealing import KeyStore, SealingLog
from services.runtime.settings import Settings, get_settings


# A request or a projector's batch allocates thousands of objects (parsed JSON, pydantic
# models, rows), so at the default threshold (700) the collector runs every few requests and
# a full collection walks every object the process has: that stalled ingest's requests tens
# of milliseconds (p99 of /v1/track 70 ms, p50 9 ms) and took ~5% of the profile projector.
# Objects made at start are frozen out of the collector's walks and the young generation is
# collected every 50,000 allocations instead.
GC_THRESHOLDS = (50_000, 50, 100)


def tune_gc() -> None:
    """For a service's process (every entry point calls it once its app is built)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    log: Log  # a SealingLog: what it appends to profile-keyed topics is sealed
    keys: KeyStore

    def projector(self, handler: Handler) -> Projector:
        return Projector(handler, self.engine, self.log, keys=self.keys,
                         batch_size=self.settings.batch_size,
                         poll_timeout_s=self.settings.poll_timeout_ms / 1000)

    def close(self) -> None:
        self.log.close()
        self.engine.dispose()
        self.keys.engine.dispose()


@dataclass
class Service:
    """One service of the data flow: its HTTP routes, its projector, other background loops."""

    name: str
    routers: list[APIRouter] = field(default_factory=list)
    projector: Projector | None = None
    workers: list = field(default_factory=list)  # each with start() -> Thread and a stop Event


def bootstrap_runtime(settings: Settings | None = None, *, engine: Engine | None = None,
                      log: Log | None = None) -> Runtime:
    settings = settings or get_settings()
    keys = KeyStore.for_settings(settings)
    log = log or open_log(settings)
    log = log if isinstance(log, SealingLog) else SealingLog(log, keys)
    runtime = Runtime(settings, engine or make_engine(settings.database_url), log, keys)
    runtime.log.ensure_topics(topics.ALL)
    return runtime
