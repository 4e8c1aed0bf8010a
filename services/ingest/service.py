"""Ingest's edge: find the source, validate, append to events.raw or events.rejected."""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from services.ingest.domain.messages import Rejection, canonical, partition_key
from services.ingest.tables import Source
from services.runtime import topics
from services.runtime.clock import format_time, now
from services.runtime.db import reading
from services.runtime.log import Log, Message


class Ingest:
    def __init__(self, engine: Engine, log: Log):
        self.engine, self.log = engine, log

    def source(self, write_key: str) -> Source | None:
        with reading(self.engine) as session:
            return session.scalars(select(Source).where(Source.write_key == write_key)).first()

    def accept(self, source: Source, kind: str, body: Any) -> dict:
        """Append a valid message to events.raw; returns only once the log has it durably.

        An invalid one is kept on events.rejected with its reason, then raised.
        """
        received_at = now()
        try:
            event = canonical(kind, body, source.id, received_at)
        except Rejection as rejection:
            self.log.append(topics.EVENTS_REJECTED, [Message.of(source.id, {
                "sourceId": source.id, "kind": kind, "receivedAt": format_time(received_at),
                "reason": rejection.as_error(), "payload": _printable(body)})])
            raise
        self.log.append(topics.EVENTS_RAW, [Message.of(partition_key(event), event)])
        return event


def _printable(body: Any) -> Any:
    try:
        json.dumps(body)
        return body
    except (TypeError, ValueError):
        return repr(body)
