"""The unmodified segment-analytics-python package sends every call type to Rapport."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from segment.analytics import Client

from services.runtime import topics
from services.runtime.clock import parse_time
from tests.ingest.conftest import message_ids, read_topic
from tests.support import RunningPipeline


@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "plain"])
def test_the_segment_python_sdk_sends_every_call_type(settings, gzip):
    errors = []
    at = (datetime.now(timezone.utc) - timedelta(minutes=5)).replace(microsecond=123000)  # the SDK sends ms
    user = f"sdk-{uuid.uuid4().hex[:8]}"
    with RunningPipeline(settings) as pipeline:
        client = Client(pipeline.write_key, host=f"http://127.0.0.1:{pipeline.port}", gzip=gzip,
                        max_retries=2, on_error=lambda e, batch: errors.append(e))
        sent = {
            "identify": client.identify(user, {"email": " Ada@Example.com ", "phone": "+44 7911 123456"},
                                        timestamp=at),
            "track": client.track(user, "Order Completed", {"revenue": 42.5}, timestamp=at),
            "page": client.page(user, "Docs", "Getting started", {"url": "https://rapport.example/docs"},
                                timestamp=at),
            "screen": client.screen(user, "App", "Settings", timestamp=at),
            "group": client.group(user, "acme", {"name": "Acme"}, timestamp=at),
            "alias": client.alias("anon-42", user, timestamp=at),
        }
        client.shutdown()  # flushes the queue: the SDK batches the six calls
        assert errors == []
        wanted = {message["messageId"] for _ok, message in sent.values()}
        logged = read_topic(pipeline.runtime, topics.EVENTS_RAW, lambda ms: wanted <= set(message_ids(ms)))
    events = {e["type"]: e for e in logged if e["messageId"] in wanted}
    assert set(events) == set(sent)
    for event in events.values():
        assert event["userId"] == user and event["context"]["library"]["name"] == "analytics-python"
        # corrected for clock skew: receivedAt - (sentAt - originalTimestamp)
        assert parse_time(event["originalTimestamp"]) == at
        assert parse_time(event["timestamp"]) == (parse_time(event["receivedAt"])
                                                  - (parse_time(event["sentAt"]) - at))
    assert events["track"]["event"] == "Order Completed" and events["track"]["properties"] == {"revenue": 42.5}
    assert events["identify"]["normalised"] == {"email": "ada@example.com", "phone": "+447911123456"}
    assert events["identify"]["traits"]["email"] == " Ada@Example.com "  # the original is kept
    assert events["page"]["name"] == "Getting started" and events["page"]["category"] == "Docs"
    assert events["group"]["groupId"] == "acme" and events["alias"]["previousId"] == "anon-42"
