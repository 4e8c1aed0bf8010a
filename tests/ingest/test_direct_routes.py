"""The Segment call routes are answered by `http.DirectRoutes`, past FastAPI's router, with
what the router's path gave them: CORS, request ids, metrics by route template."""
from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from services import migrations
from services.ingest.sources import new_source
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.db import writing
from services.runtime.runner import bootstrap_services, build_app
from tests.ingest.conftest import ids


def requests_counted(route: str, status: str) -> float:
    labels = {"method": "POST", "route": route, "status": status}
    return REGISTRY.get_sample_value("rapport_http_requests_total", labels) or 0.0


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
        preflight = client.options("/v1/track", headers={"Origin": "https://shop.example"})
        wrong_method = client.get("/v1/track")
    finally:
        runtime.close()
    assert (track.status_code, track.json()) == (200, {"success": True})
    assert track.headers["access-control-allow-origin"] == "https://shop.example"
    assert track.headers["x-request-id"] == "req-7"
    assert (bad_batch.status_code, bad_batch.json()["error"]["field"]) == (400, "batch")
    assert (requests_counted("/v1/track", "200"), requests_counted("/v1/b", "400")) == (before[0] + 1, before[1] + 1)
    assert preflight.status_code == 204  # other methods go on to the router
    assert wrong_method.status_code == 405
