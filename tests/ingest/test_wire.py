"""Wire compatibility with the Segment and RudderStack SDKs: one test per rule."""
from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from services.runtime import topics
from services.runtime.clock import format_time, parse_time
from tests.ingest.conftest import ids, message_ids, read_topic


def raw_events(pipeline, *wanted: str) -> dict[str, dict]:
    """The events.raw events with these messageIds, by messageId."""
    found = read_topic(pipeline.runtime, topics.EVENTS_RAW, lambda ms: set(wanted) <= set(message_ids(ms)))
    return {e["messageId"]: e for e in found if e["messageId"] in wanted}


def rejections(pipeline, *wanted: str) -> dict[str, dict]:
    found = read_topic(pipeline.runtime, topics.EVENTS_REJECTED,
                       lambda ms: set(wanted) <= set(message_ids(ms)))
    return {m["payload"]["messageId"]: m for m in found
            if isinstance(m.get("payload"), dict) and m["payload"].get("messageId") in wanted}


CALLS = {"track": {"event": "Signed Up"}, "identify": {"traits": {"plan": "pro"}},
         "page": {"name": "Home"}, "screen": {"name": "Settings"}, "group": {"groupId": "acme"},
         "alias": {"previousId": "anon-1"}}


@pytest.mark.parametrize("path, kind", [
    *((f"/v1/{kind}", kind) for kind in CALLS), *((f"/v1/{kind[0]}", kind) for kind in CALLS)])
def test_every_call_type_and_its_short_path_is_taken(pipeline, path, kind):
    body = ids(**CALLS[kind])
    response = pipeline.ingest.post(path, json=body)
    assert response.status_code == 200 and response.json() == {"success": True}, response.text
    assert raw_events(pipeline, body["messageId"])[body["messageId"]]["type"] == kind


def test_the_write_key_may_be_in_the_body_and_the_body_json_whatever_the_content_type(pipeline):
    body = ids(event="Signed Up", writeKey=pipeline.write_key)
    response = httpx.post(pipeline.ingest.base_url.join("/v1/t"), content=json.dumps(body),
                          headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    assert raw_events(pipeline, body["messageId"])


def test_nan_and_infinity_are_accepted_and_written_as_null(pipeline):
    """JSON has no NaN: the README's decision. The log holds null, which unsets a trait."""
    body = ids(traits={"score": float("nan"), "limit": float("inf"), "plan": "pro"})
    response = pipeline.ingest.post("/v1/identify", content=json.dumps(body),  # NaN, Infinity
                                    headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert raw_events(pipeline, body["messageId"])[body["messageId"]]["traits"] == {
        "score": None, "limit": None, "plan": "pro"}


def test_a_gzipped_body_is_read(pipeline):
    body = ids(event="Signed Up")
    response = pipeline.ingest.post("/v1/track", content=gzip.compress(json.dumps(body).encode()),
                                    headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert raw_events(pipeline, body["messageId"])


def test_a_body_that_is_not_gzip_though_it_says_so_is_a_400(pipeline):
    response = pipeline.ingest.post("/v1/track", content=b"{}", headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_gzip"


def test_browsers_get_cors_on_preflight_and_on_errors(pipeline):
    origin = {"Origin": "https://shop.example"}
    preflight = httpx.options(pipeline.ingest.base_url.join("/v1/batch"), headers={
        **origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    refused = httpx.post(pipeline.ingest.base_url.join("/v1/track"), json={}, headers=origin)
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "https://shop.example"


def test_a_batch_merges_its_context_and_integrations_into_each_item(pipeline):
    first, second = ids(type="track", event="A", context={"ip": "203.0.113.9"}), ids(type="identify")
    response = pipeline.ingest.post("/v1/batch", json={
        "batch": [first, second], "context": {"library": {"name": "analytics-python"}, "ip": "10.0.0.1"},
        "integrations": {"All": False}})
    assert response.status_code == 200 and response.json() == {"success": True}, response.text
    events = raw_events(pipeline, first["messageId"], second["messageId"])
    assert events[first["messageId"]]["context"] == {"library": {"name": "analytics-python"}, "ip": "203.0.113.9"}
    assert events[second["messageId"]]["context"] == {"library": {"name": "analytics-python"}, "ip": "10.0.0.1"}
    assert events[second["messageId"]]["integrations"] == {"All": False}


def test_the_timestamp_is_corrected_for_the_clock_skew_of_the_client(pipeline):
    client_now = datetime.now(timezone.utc) + timedelta(hours=3)  # a client clock 3 h fast
    body = ids(event="Signed Up", timestamp=format_time(client_now - timedelta(seconds=30)),
               sentAt=format_time(client_now))
    before = datetime.now(timezone.utc)
    assert pipeline.ingest.post("/v1/track", json=body).status_code == 200
    event = raw_events(pipeline, body["messageId"])[body["messageId"]]
    received = parse_time(event["receivedAt"])
    assert parse_time(event["timestamp"]) == received - timedelta(seconds=30)
    assert event["originalTimestamp"] == body["timestamp"]
    assert before <= received <= datetime.now(timezone.utc)


def test_an_oversized_request_is_a_413(pipeline):
    big = [ids(type="track", event="x", properties={"pad": "p" * 20_000}) for _ in range(30)]
    response = pipeline.ingest.post("/v1/batch", json={"batch": big})
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    single = pipeline.ingest.post("/v1/track", json=ids(event="x", properties={"pad": "p" * 33_000}))
    assert single.status_code == 413


def test_an_oversized_item_is_rejected_with_its_reason_and_the_rest_of_the_batch_goes_in(pipeline):
    good, big = ids(type="track", event="x"), ids(type="track", event="x", properties={"pad": "p" * 33_000})
    response = pipeline.ingest.post("/v1/batch", json={"batch": [good, big]})
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == [{"index": 1, "error": {
        "code": "too_large", "message": "body: an event may be at most 32 KB", "field": "body"}}]
    assert raw_events(pipeline, good["messageId"])
    assert rejections(pipeline, big["messageId"])[big["messageId"]]["reason"]["code"] == "too_large"


def test_a_body_that_is_not_json_is_a_400_naming_the_body(pipeline):
    response = pipeline.ingest.post("/v1/track", content=b"{not json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and error["field"] == "body" and error["message"]


def test_a_message_about_nobody_is_a_400_and_kept_on_events_rejected(pipeline):
    body = {"event": "x", "messageId": f"m-{uuid.uuid4().hex}"}
    response = pipeline.ingest.post("/v1/track", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "userId"
    kept = rejections(pipeline, body["messageId"])[body["messageId"]]
    assert kept["payload"] == body and "userId or anonymousId" in kept["reason"]["message"]


def test_a_mixed_batch_keeps_the_good_and_rejects_the_bad(pipeline):
    good, bad, unknown = ids(type="track", event="x"), ids(type="track"), ids(type="launch")
    response = pipeline.ingest.post("/v1/batch", json={"batch": [good, bad, unknown]})
    assert response.status_code == 200
    assert [(r["index"], r["error"]["field"]) for r in response.json()["rejected"]] == [(1, "event"), (2, "type")]
    assert raw_events(pipeline, good["messageId"])
    assert set(rejections(pipeline, bad["messageId"], unknown["messageId"])) == {bad["messageId"], unknown["messageId"]}


def test_an_unknown_write_key_is_a_401(pipeline):
    response = httpx.post(pipeline.ingest.base_url.join("/v1/track"), json=ids(event="x"),
                          auth=("wk_nobody", ""))
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


def test_no_write_key_at_all_is_a_401(pipeline):
    response = httpx.post(pipeline.ingest.base_url.join("/v1/track"), json=ids(event="x"))
    assert response.status_code == 401


def admin(pipeline, method: str, path: str, **kwargs) -> dict:
    response = pipeline.api.request(method, path, **kwargs)
    assert response.is_success, response.text
    return response.json()


def test_a_disabled_write_key_is_a_401(pipeline):
    source = admin(pipeline, "POST", "/v1/sources", json={"name": "app", "kind": "mobile"})
    send = lambda: httpx.post(pipeline.ingest.base_url.join("/v1/track"), json=ids(event="x"),  # noqa: E731
                              auth=(source["write_key"], ""))
    assert send().status_code == 200
    admin(pipeline, "POST", f"/v1/sources/{source['id']}/disable")
    assert send().status_code == 401


def test_a_duplicate_message_id_is_acknowledged_and_counted_but_not_appended_twice(pipeline):
    source = admin(pipeline, "POST", "/v1/sources", json={"name": "dupes", "kind": "server"})
    auth = (source["write_key"], "")
    person = f"u-{uuid.uuid4().hex[:8]}"
    body = {"userId": person, "event": "Order Completed", "messageId": f"m-{uuid.uuid4().hex}"}
    url = pipeline.ingest.base_url
    assert httpx.post(url.join("/v1/track"), json=body, auth=auth).json() == {"success": True}
    assert httpx.post(url.join("/v1/track"), json=body, auth=auth).json() == {"success": True}
    batch = httpx.post(url.join("/v1/batch"), auth=auth, json={"batch": [{**body, "type": "track"}] * 2})
    assert batch.json() == {"success": True}
    marker = {"userId": person, "event": "after", "messageId": f"m-{uuid.uuid4().hex}"}
    httpx.post(url.join("/v1/track"), json=marker, auth=auth).raise_for_status()
    # one person: one partition, in order, so the marker comes after any second copy
    logged = read_topic(pipeline.runtime, topics.EVENTS_RAW, lambda ms: marker["messageId"] in message_ids(ms))
    assert message_ids(logged).count(body["messageId"]) == 1
    from tests.support import wait_until
    wait_until(lambda: admin(pipeline, "GET", f"/v1/sources/{source['id']}")["duplicates"] == 3,
               what="three duplicates counted")


def test_past_the_rate_of_a_key_is_a_429_with_retry_after(tmp_path):
    from services.runtime.settings import Settings
    from tests.support import RunningPipeline

    settings = Settings(data_dir=tmp_path / "data", ingest_rate_per_key=1, ingest_burst_per_key=2)
    with RunningPipeline(settings) as running:
        assert running.ingest.post("/v1/batch", json={"batch": [ids(type="track", event="x")] * 2}).status_code == 200
        refused = running.ingest.post("/v1/track", json=ids(event="x"))
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1


def test_the_browser_sdk_settings_point_it_at_this_host(pipeline):
    response = httpx.get(pipeline.ingest.base_url.join(f"/v1/projects/{pipeline.write_key}/settings"))
    assert response.status_code == 200
    segment_io = response.json()["integrations"]["Segment.io"]
    assert segment_io["apiHost"] == f"127.0.0.1:{pipeline.port}/v1"
    assert segment_io["apiKey"] == pipeline.write_key and segment_io["protocol"] == "http"
    assert httpx.get(pipeline.ingest.base_url.join("/v1/projects/wk_nobody/settings")).status_code == 401


def test_the_basic_auth_username_is_the_write_key():
    from services.ingest.routes import write_key_of

    class Request:
        headers = {"authorization": "Basic " + base64.b64encode(b"wk_abc:").decode()}
    assert write_key_of(Request()) == "wk_abc"


def test_accepted_rejected_and_deduplicated_events_are_counted_by_source(pipeline):
    from prometheus_client import REGISTRY

    def counted(name, **labels):
        return sum(s.value for m in REGISTRY.collect() for s in m.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
    before = {n: counted(n) for n in ("rapport_ingest_events_accepted_total",
                                      "rapport_ingest_events_deduplicated_total")}
    before_missing = counted("rapport_ingest_events_rejected_total", reason="missing")
    body = {"batch": [{"type": "track", "userId": "m", "event": "E", "messageId": "metric-1"},
                      {"type": "track", "userId": "m", "event": "E", "messageId": "metric-1"},
                      {"type": "track", "userId": "m", "messageId": "metric-2"}]}
    assert pipeline.ingest.post("/v1/batch", json=body).status_code in (200, 400)
    assert counted("rapport_ingest_events_accepted_total") - before["rapport_ingest_events_accepted_total"] == 1
    assert counted("rapport_ingest_events_deduplicated_total") - before["rapport_ingest_events_deduplicated_total"] == 1
    assert counted("rapport_ingest_events_rejected_total", reason="missing") - before_missing == 1
