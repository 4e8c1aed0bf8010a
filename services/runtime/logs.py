"""Structured logs: one JSON object per line, carrying the request or event being handled.

The HTTP middleware sets `request_id` and the projector sets `event_id` (topic/partition/
offset of the record) in context variables, so every log line written while handling
them says which one it was, without threading ids through every call.
"""
from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Iterator

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
event_id: ContextVar[str | None] = ContextVar("event_id", default=None)

# attributes every LogRecord has; anything else was passed with `extra=` and is logged
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for name, var in (("request_id", request_id), ("event_id", event_id)):
            if var.get() is not None:
                line[name] = var.get()
        line |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Route the root logger (and uvicorn's, which keep their own handlers) to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


@contextmanager
def handling_event(topic: str, partition: int, offset: int) -> Iterator[None]:
    token = event_id.set(f"{topic}/{partition}/{offset}")
    try:
        yield
    finally:
        event_id.reset(token)
