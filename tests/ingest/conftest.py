"""Fixtures of the ingest tests: a running pipeline on the embedded default, and log readers."""
from __future__ import annotations

import uuid

import pytest

from services.runtime.sealing import read_json
from services.runtime.settings import Settings
from tests.support import RunningPipeline, log_reader, wait_until


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Every service on the embedded default, shared by one module's tests."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("ingest") / "data", poll_timeout_ms=50)
    with RunningPipeline(settings) as running:
        yield running


def read_topic(runtime, topic: str, until, timeout_s: float = 30) -> list[dict]:
    """Every message on `topic` from the start, once `until(messages)` holds."""
    consumer = log_reader(runtime.log, runtime.settings, [topic], f"test-{uuid.uuid4().hex[:8]}")
    messages: list[dict] = []
    try:
        def enough():
            messages.extend(read_json(runtime.log, consumer.poll(1000, 0.2)))
            return until(messages)
        wait_until(enough, timeout_s, f"messages on {topic}")
    finally:
        consumer.close()
    return messages


def message_ids(messages: list[dict]) -> list[str]:
    """messageIds of events, or of the payloads of rejections."""
    payloads = [m["payload"] if "payload" in m else m for m in messages]
    return [p.get("messageId") for p in payloads if isinstance(p, dict)]


def ids(**extra) -> dict:
    """A fresh person and messageId, so tests sharing a pipeline don't see each other's events."""
    return {"userId": f"u-{uuid.uuid4().hex[:10]}", "messageId": f"m-{uuid.uuid4().hex}", **extra}
