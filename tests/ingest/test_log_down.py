"""When the log can't take a write: 503 with Retry-After, and nothing acknowledged is lost."""
from __future__ import annotations

import sqlite3
import uuid

from services.runtime import topics
from services.runtime.settings import Settings
from tests.ingest.conftest import message_ids, read_topic
from tests.support import RunningPipeline


def test_the_log_down_answers_503_and_nothing_acknowledged_is_lost(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", embedded_log_write_timeout_ms=300)
    person = f"u-{uuid.uuid4().hex[:8]}"
    events = [{"userId": person, "event": "Step", "messageId": f"m-{i}"} for i in range(12)]
    acknowledged, refused = [], []
    with RunningPipeline(settings) as pipeline:
        def send(event):
            response = pipeline.ingest.post("/v1/track", json=event)
            (acknowledged if response.status_code == 200 else refused).append(event["messageId"])
            return response

        for event in events[:4]:
            send(event)
        # another process holds the log's write lock: the log can't take writes
        holder = sqlite3.connect(settings.data_dir / "log.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            down = send(events[4])
            assert down.status_code == 503
            assert down.headers["retry-after"] == "1"
            assert down.json()["error"]["code"] == "log_unavailable"
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        for event in events[4:]:  # the client retries what was refused, then goes on
            assert send(event).status_code == 200
        logged = read_topic(pipeline.runtime, topics.EVENTS_RAW, lambda ms: "m-11" in message_ids(ms))
    assert refused == ["m-4"]
    assert sorted(message_ids(logged)) == sorted(acknowledged) == sorted(e["messageId"] for e in events)
