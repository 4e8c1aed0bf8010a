"""The Segment call routes are answered by `http.DirectRoutes`, past FastAPI's router, with
what the router's path gave them: CORS, request ids, metrics by route template."""
from __future__ import annotations

import importlib.util

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from services import migrations
from services.ingest.routes import CORS
from services.ingest.sources import new_source
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.db import writing
from services.runtime.http import _otel_telemetry
from services.runtime.runner import bootstrap_services, build_app
from tests.ingest.conftest import ids


def requests_counted(route: str, status: str) -> float:
    labels = {"method": "POST", "route": route, "status": status}
    return REGISTRY.get_sample_value("rapport_http_requests_total", labels) or 0.0


CORS_LINES = {name.lower(): [value] for name, value in CORS.items()}


def cors_lines(response) -> dict[str, list[str]]:
    """Each CORS header of `response` with every value it was sent with (once each, or it's wrong)."""
    names = {*CORS_LINES, "access-control-allow-origin", "access-control-allow-credentials", "vary"}
    return {name: response.headers.get_list(name) for name in names if name in response.headers}


def test_otel_instrumentation_is_left_to_fastapi_only_where_the_sdk_is_installed(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "opentelemetry.sdk" else real(name))
    assert _otel_telemetry() == {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert _otel_telemetry() == {}


def test_call_routes_answer_past_the_router_with_cors_request_ids_and_metrics(settings):
    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    with writing(runtime.engine) as session:
        key = new_source(session, "web", "website").write_key
    try:
        services = bootstrap_services(runtime)
        for router in (r for s in services for r in s.routers if getattr(r, "direct", None)):
            # the routers no longer route these POSTs: only DirectRoutes can answer them
            router.routes[:] = [r for r in router.routes if not (r.path in ("/v1/track", "/v1/b") and "POST" in r.methods)]
        client = TestClient(build_app(runtime, services, run_projectors=False))
        before = requests_counted("/v1/track", "200"), requests_counted("/v1/b", "400")
        track = client.post("/v1/track", json={**ids(), "event": "Signed Up"}, auth=(key, ""),
                            headers={"Origin": "https://shop.example", "X-Request-ID": "req-7"})
        bad_batch = client.post("/v1/b", json={"batch": "not a list"}, auth=(key, ""))
        no_origin = client.post("/v1/track", json={**ids(), "event": "Signed Up"}, auth=(key, ""))
        preflight = client.options("/v1/track", headers={"Origin": "https://shop.example"})
        wrong_method = client.get("/v1/track")
    finally:
        runtime.close()
    assert (track.status_code, track.json()) == (200, {"success": True})
    assert track.headers["access-control-allow-origin"] == "https://shop.example"
    assert track.headers["x-request-id"] == "req-7"
    assert cors_lines(track) == {"access-control-allow-origin": ["https://shop.example"],
                                 "access-control-allow-credentials": ["true"], "vary": ["Origin"], **CORS_LINES}
    assert cors_lines(bad_batch) == cors_lines(no_origin) == {"access-control-allow-origin": ["*"], **CORS_LINES}
    assert (bad_batch.status_code, bad_batch.json()["error"]["field"]) == (400, "batch")
    assert (requests_counted("/v1/track", "200"), requests_counted("/v1/b", "400")) == (before[0] + 2, before[1] + 1)
    assert preflight.status_code == 204  # other methods go on to the router
    assert wrong_method.status_code == 405
