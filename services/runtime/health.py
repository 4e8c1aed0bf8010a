"""Probes: /healthz says the process is up, /readyz that it can do its work.

Ready means: the database answers, its schema is at the latest migration, and the log
answers. Each check is quick and bounded, since the kubelet calls it every few seconds.
"""
from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from services import migrations
from services.runtime import topics
from services.runtime.log import Log, TopicPartition

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
LOG_TIMEOUT_MS = 3000


def database_reachable(engine) -> bool:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return True


def log_reachable(log: Log) -> bool:
    servers = getattr(log, "servers", None)
    if servers is None:  # the embedded log: its SQLite file answers a read
        log.end_offsets([TopicPartition(topics.EVENTS_RAW, 0)])
        return True
    from kafka import KafkaAdminClient  # bootstrapping fetches metadata from a broker

    KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=LOG_TIMEOUT_MS,
                     api_version_auto_timeout_ms=LOG_TIMEOUT_MS).close()
    return True


def _passes(name: str, check, *args) -> bool:
    try:
        return bool(check(*args))
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"
        logger.warning("readiness check %s failed: %s", name, error)
        return False


def readiness(engine, log: Log) -> dict[str, bool]:
    database = _passes("database", database_reachable, engine)
    return {"database": database,
            "migrations": database and _passes("migrations", migrations.at_head, engine),
            "log": _passes("log", log_reachable, log)}


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """Up, and no projector thread has died (a dead one needs a restart)."""
    dead = [t.name for t in getattr(request.app.state, "projector_threads", []) if not t.is_alive()]
    stopping = getattr(request.app.state, "stopping", False)
    if dead and not stopping:
        return JSONResponse({"status": "failing", "dead": dead}, status_code=500)
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    checks = readiness(request.app.state.engine, request.app.state.log)
    ready = all(checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)
