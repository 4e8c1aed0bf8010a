"""Parked events: records a consumer's handler failed on, listed and retried by an operator.

A retry applies the record with its consumer's handler now, in one transaction that
also marks it resolved, and publishes the handler's output like the projector does.
Handlers are order-independent (invariant 4), so applying an old record late is sound.
"""
from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Request
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from services.runtime.access import require
from services.runtime.clock import format_time, now
from services.runtime.db import reading, writing
from services.runtime.http import ApiError
from services.runtime.log import Record
from services.runtime.projector import Projector
from services.runtime.sealing import KeyStore, open_values
from services.runtime.tables import ParkedEvent


class RetryRefused(Exception):
    pass


def list_parked(engine: Engine, consumer: str | None = None, resolved: bool = False) -> list[ParkedEvent]:
    statement = select(ParkedEvent).order_by(ParkedEvent.id)
    if consumer:
        statement = statement.where(ParkedEvent.consumer == consumer)
    if not resolved:
        statement = statement.where(ParkedEvent.resolved_at.is_(None))
    with reading(engine) as session:
        return list(session.scalars(statement))


def consumer_of(engine: Engine, parked_id: int) -> str:
    with reading(engine) as session:
        row = session.get(ParkedEvent, parked_id)
    if row is None:
        raise KeyError(parked_id)
    return row.consumer


def retry(projector: Projector, parked_id: int) -> ParkedEvent:
    """Apply a parked record again; raises RetryRefused (with the new error) if it fails."""
    failure = None
    with writing(projector.engine) as session:
        row = session.get(ParkedEvent, parked_id, with_for_update=True)
        if row is None or row.consumer != projector.handler.name:
            raise KeyError(parked_id)
        if row.resolved_at is not None:
            raise RetryRefused(f"parked event {parked_id} was resolved at {format_time(row.resolved_at)}")
        row.attempts += 1
        try:
            outputs = _apply_in_savepoint(session, projector, row)
        except Exception as error:  # noqa: BLE001 - kept on the row for the operator
            row.error = failure = f"{type(error).__name__}: {error}"[:10_000]
        else:
            projector.publish(outputs)  # before the commit, as the projector loop does
            row.resolved_at = now()
    if failure is not None:
        raise RetryRefused(failure)
    return row


def _apply_in_savepoint(session: Session, projector: Projector, row: ParkedEvent):
    record = Record(row.topic, row.partition, row.offset, row.key, row.value, row.timestamp_ms)
    with session.begin_nested():  # a failing handler's writes roll back; the attempt is kept
        return projector.handler.apply(session, projector.open([record]))


def as_json(row: ParkedEvent, keys: KeyStore | None = None) -> dict:
    """The row, its value opened with `keys` when it is sealed (operators must see what failed)."""
    raw = (open_values(keys, [row.value])[0] if keys is not None else None) or row.value
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw.decode("utf-8", "replace")
    return {"id": row.id, "consumer": row.consumer, "topic": row.topic, "partition": row.partition,
            "offset": row.offset, "key": row.key, "value": value, "error": row.error,
            "attempts": row.attempts, "parked_at": format_time(row.parked_at),
            "resolved_at": format_time(row.resolved_at) if row.resolved_at else None}


router = APIRouter(prefix="/v1/admin/parked", tags=["operations"])
Admin = Annotated[None, require("admin")]


@router.get("")
def parked_events(request: Request, _: Admin, consumer: str | None = None,
                  resolved: bool = False) -> dict:
    """Parked events, oldest first (add resolved=true to include those retried successfully)."""
    rows = list_parked(request.app.state.engine, consumer, resolved)
    return {"parked": [as_json(row, request.app.state.runtime.keys) for row in rows]}


@router.post("/{parked_id}/retry")
def retry_parked(request: Request, parked_id: Annotated[int, Path(ge=1, le=2**63 - 1)], _: Admin) -> dict:
    """Apply a parked event again with its consumer's handler: 200 when it applied, 409 if not."""
    from services.runtime.runner import projector_for  # the runner includes this router

    try:
        runtime = request.app.state.runtime
        row = retry(projector_for(runtime, consumer_of(runtime.engine, parked_id)), parked_id)
    except KeyError:
        raise ApiError(404, "not_found", f"no parked event {parked_id}", "parked_id") from None
    except RetryRefused as refused:
        raise ApiError(409, "retry_failed", str(refused), "parked_id") from None
    return {"parked": as_json(row, runtime.keys)}
