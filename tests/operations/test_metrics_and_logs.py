"""Prometheus metrics on /metrics and JSON logs with request and event ids."""
from __future__ import annotations

import io
import json
import logging

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from services import migrations
from services.runtime import logs, metrics
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.log import Message
from services.runtime.projector import partition_lag
from services.runtime.runner import bootstrap_services, build_app
from tests.contract.counting import INPUT, KEYS, CountingHandler
from tests.operations.poison import PoisonAwareHandler, counting_runtime
from tests.support import caught_up, wait_until


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_lag_per_partition_is_what_was_not_applied(settings):
    runtime = bootstrap_runtime(settings)
    runtime.log.ensure_topics([INPUT])
    runtime.log.append(INPUT, [Message.of(KEYS[i % len(KEYS)], {"n": i}) for i in range(30)])
    consumer = runtime.log.consumer("lag-reader", [INPUT], lambda tps: {tp: 0 for tp in tps})
    try:
        read = []
        wait_until(lambda: read.extend(consumer.poll(100, 0.2)) or len(read) == 30, 60, "every record")
        applied = {tp: 0 for tp in {r.tp for r in read}}
        applied[read[0].tp] = 2  # as if two records of one partition were applied
        lag = partition_lag(runtime.log, consumer, applied)
        per_partition = {tp: sum(r.tp == tp for r in read) for tp in applied}
        assert lag == {tp: n - applied[tp] for tp, n in per_partition.items()}
    finally:
        consumer.close()
        runtime.close()


def test_a_running_consumer_reports_applied_batches_and_zero_lag(settings):
    applied, batches = sample("rapport_consumer_events_applied_total", consumer="counting"), \
        sample("rapport_consumer_batch_apply_seconds_count", consumer="counting")
    runtime = counting_runtime(settings, [Message.of(KEYS[i % len(KEYS)], {"n": i}) for i in range(50)],
                               batch_size=10)
    projector = runtime.projector(CountingHandler())
    thread = projector.start()
    try:
        wait_until(lambda: caught_up(runtime, "counting", 50), 60, "the consumer")
        partitions = runtime.settings.partitions_for(INPUT)
        lag = lambda p: REGISTRY.get_sample_value(  # noqa: E731 - None until reported
            "rapport_consumer_lag_records", {"consumer": "counting", "topic": INPUT, "partition": str(p)})
        wait_until(lambda: [lag(p) for p in range(partitions)] == [0.0] * partitions, 30, "zero lag")
    finally:
        projector.stop.set()
        thread.join(30)
        runtime.close()
    assert sample("rapport_consumer_events_applied_total", consumer="counting") == applied + 50
    assert sample("rapport_consumer_batch_apply_seconds_count", consumer="counting") >= batches + 5


def test_metrics_endpoint_counts_requests_by_route_template_and_status(settings):
    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    try:
        client = TestClient(build_app(runtime, bootstrap_services(runtime), run_projectors=False))
        before = sample("rapport_http_requests_total", method="GET", route="/v1/profiles/{profile_id}",
                        status="401")
        assert client.get("/v1/profiles/someone").status_code == 401
        metrics.event_rejected("web", "missing_field")
        metrics.segment_changed("pro", entered=True)
        body = client.get("/metrics").text
    finally:
        runtime.close()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    requests = {tuple(sorted(s.labels.items())): s.value for s in families["rapport_http_requests"].samples
                if s.name.endswith("_total")}
    key = (("method", "GET"), ("route", "/v1/profiles/{profile_id}"), ("status", "401"))
    assert requests[key] == before + 1
    assert "rapport_http_request_duration_seconds" in families
    assert any(s.labels == {"source": "web", "reason": "missing_field"}
               for s in families["rapport_ingest_events_rejected"].samples)
    assert any(s.labels == {"segment": "pro", "change": "entered"}
               for s in families["rapport_segment_membership_changes"].samples)


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def capture_json_logs() -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    return stream, handler


def test_requests_carry_a_request_id_into_logs_and_the_response(settings):
    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    stream, handler = capture_json_logs()
    try:
        client = TestClient(build_app(runtime, bootstrap_services(runtime), run_projectors=False))
        given = client.get("/healthz", headers={"X-Request-ID": "req-42"})
        made = client.get("/healthz")
    finally:
        logging.getLogger().removeHandler(handler)
        runtime.close()
    assert given.headers["x-request-id"] == "req-42"
    assert len(made.headers["x-request-id"]) == 32
    access = [line for line in json_lines(stream) if line["logger"] == "rapport.access"]
    assert [(a["request_id"], a["status"], a["route"]) for a in access] == [
        ("req-42", 200, "/healthz"), (made.headers["x-request-id"], 200, "/healthz")]


def test_a_parked_record_is_logged_with_its_event_id(settings):
    runtime = counting_runtime(settings, [Message.of(KEYS[0], {"poison": True})])
    stream, handler = capture_json_logs()
    projector = runtime.projector(PoisonAwareHandler())
    thread = projector.start()
    try:
        wait_until(lambda: caught_up(runtime, "counting", 1), 60, "the poison to be parked")
    finally:
        projector.stop.set()
        thread.join(30)
        logging.getLogger().removeHandler(handler)
        runtime.close()
    parking = [line for line in json_lines(stream) if "parking" in line["message"]]
    assert len(parking) == 1
    assert parking[0]["event_id"].startswith(f"{INPUT}/") and parking[0]["event_id"].endswith("/0")
    assert "PoisonError" in parking[0]["exception"]
