"""The 360 view, lookups, the timeline and the Segment-compatible Profile API, over HTTP."""
import base64
from contextlib import contextmanager

import httpx
import pytest

from services.identity.domain.identifiers import Identifier
from services.identity.domain.resolution import new_profile_id
from tests.support import RunningPipeline, wait_until

ADA = new_profile_id(Identifier("user_id", "ada"))
EVENTS = [
    ("/v1/identify", {"userId": "ada", "traits": {"email": "Ada@Example.com", "plan": "pro"},
                      "timestamp": "2026-03-01T09:00:00Z", "messageId": "id-1"}),
    ("/v1/track", {"userId": "ada", "event": "Order Completed", "messageId": "o-1",
                   "properties": {"revenue": 100, "currency": "USD"}, "timestamp": "2026-03-02T09:00:00Z"}),
    ("/v1/track", {"userId": "ada", "event": "Order Completed", "messageId": "o-2",
                   "properties": {"revenue": 50, "currency": "USD"}, "timestamp": "2026-03-05T09:00:00Z"}),
    ("/v1/track", {"userId": "ada", "event": "Survey Responded", "messageId": "s-1",
                   "properties": {"nps": 10, "csat": 5}, "timestamp": "2026-03-06T09:00:00Z",
                   "context": {"channel": "helpdesk"}}),
    ("/v1/track", {"anonymousId": "device-9", "event": "Product Viewed", "messageId": "v-1",
                   "timestamp": "2026-03-07T09:00:00Z"}),
]


@contextmanager
def ada_pipeline(settings):
    with RunningPipeline(settings) as running:
        assert running.api.post("/v1/segments", json={
            "key": "pro", "name": "Pro", "condition": {"trait": "plan", "equals": "pro"}}).status_code == 201
        for path, body in EVENTS:
            assert running.ingest.post(path, json=body).status_code == 200
        wait_until(lambda: (r := running.api.get(f"/v1/profiles/{ADA}")).status_code == 200
                   and r.json()["event_count"] == 4 and r.json()["segments"], what="ada's profile")
        yield running


@pytest.fixture
def pipeline(settings):
    with ada_pipeline(settings) as running:
        yield running


@pytest.fixture(scope="module")
def read_pipeline(shared_settings):
    """One pipeline per backend for the tests that only read (the others get their own)."""
    with ada_pipeline(shared_settings) as running:
        yield running


def test_the_360_view_holds_identities_traits_metrics_and_segments(read_pipeline):
    view = read_pipeline.api.get(f"/v1/profiles/{ADA}", params={"provenance": "true"}).json()
    assert {"type": "email", "value": "ada@example.com"} in view["identities"]
    assert view["traits"]["plan"]["value"] == "pro" and view["traits"]["plan"]["message_id"] == "id-1"
    assert view["traits"]["plan"]["updated_at"] == "2026-03-01T09:00:00.000000Z"
    metrics = view["computed_traits"]
    assert (metrics["orders"], metrics["revenue"], metrics["average_order_value"]) == (2, 150.0, 75.0)
    assert (metrics["last_nps_score"], metrics["nps_category"], metrics["csat_average"]) == (10.0, "promoter", 5.0)
    assert view["segments"][0]["segment"] == "pro"
    assert view["first_seen"] == "2026-03-01T09:00:00.000000Z"


def test_lookup_finds_a_profile_by_any_identifier(read_pipeline):
    for kind, value in [("email", "ADA@example.com "), ("user_id", "ada")]:
        found = read_pipeline.api.get("/v1/profiles/lookup", params={"type": kind, "value": value})
        assert found.status_code == 200 and found.json()["profile_id"] == ADA
    missing = read_pipeline.api.get("/v1/profiles/lookup", params={"type": "email", "value": "nobody@x.io"})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "value"


def test_the_timeline_is_filtered_and_paged_with_a_stable_cursor(read_pipeline):
    first = read_pipeline.api.get(f"/v1/profiles/{ADA}/events", params={"limit": 2}).json()
    assert [e["message_id"] for e in first["events"]] == ["s-1", "o-2"]
    second = read_pipeline.api.get(f"/v1/profiles/{ADA}/events", params={"limit": 2, "next": first["next"]}).json()
    assert [e["message_id"] for e in second["events"]] == ["o-1", "id-1"] and second["next"] is None
    orders = read_pipeline.api.get(f"/v1/profiles/{ADA}/events", params={"event": "Order Completed"}).json()
    assert [e["message_id"] for e in orders["events"]] == ["o-2", "o-1"]
    support = read_pipeline.api.get(f"/v1/profiles/{ADA}/events", params={"channel": "helpdesk"}).json()
    assert [e["message_id"] for e in support["events"]] == ["s-1"]
    bad = read_pipeline.api.get(f"/v1/profiles/{ADA}/events", params={"next": "garbage"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "next"


def segment_client(pipeline) -> httpx.Client:
    """As Segment's Profile API clients connect: the token is the Basic username."""
    basic = base64.b64encode(f"{pipeline.token}:".encode()).decode()
    return httpx.Client(base_url=f"http://127.0.0.1:{pipeline.port}/v1/spaces/any-space/collections/users/"
                        "profiles", headers={"Authorization": f"Basic {basic}"})


def test_segment_profile_api_traits_with_include_class_verbose_and_paging(read_pipeline):
    with segment_client(read_pipeline) as client:
        body = client.get("/user_id:ada/traits", params={"limit": 2}).json()
        assert set(body) == {"traits", "cursor"} and len(body["traits"]) == 2
        assert set(body["cursor"]) == {"url", "has_more", "next", "limit"} and body["cursor"]["has_more"]
        following = client.get("/user_id:ada/traits", params={"limit": 2, "next": body["cursor"]["next"]}).json()
        assert not set(following["traits"]) & set(body["traits"])
        chosen = client.get("/email:ada@example.com/traits", params={"include": "plan,orders"}).json()
        assert chosen["traits"] == {"orders": 2, "plan": "pro"}
        audiences = client.get("/user_id:ada/traits", params={"class": "audience"}).json()
        assert audiences["traits"] == {"pro": True}
        verbose = client.get("/user_id:ada/traits", params={"include": "plan", "verbose": "true"}).json()
        assert verbose["traits"]["plan"]["value"] == "pro"


def test_segment_profile_api_events_external_ids_metadata_links(read_pipeline):
    with segment_client(read_pipeline) as client:
        events = client.get("/user_id:ada/events", params={"limit": 3}).json()
        assert [e["message_id"] for e in events["data"]] == ["s-1", "o-2", "o-1"]
        assert events["cursor"]["has_more"] and events["data"][0]["type"] == "track"
        ids = client.get("/user_id:ada/external_ids").json()["data"]
        assert {(i["type"], i["id"]) for i in ids} == {("email", "ada@example.com"), ("user_id", "ada")}
        assert all(i["collection"] == "users" for i in ids)
        meta = client.get("/user_id:ada/metadata").json()
        assert (meta["first_message_id"], meta["last_message_id"]) == ("id-1", "s-1")
        assert client.get("/user_id:ada/links").json()["data"] == []
        missing = client.get("/user_id:nobody/traits")
        assert missing.status_code == 404 and set(missing.json()["error"]) >= {"code", "message"}
        assert client.get("/user_id:ada/traits", headers={"Authorization": "Basic eDo="}).status_code == 401


def test_a_computed_trait_declared_over_the_api_is_backfilled(pipeline):
    definition = {"name": "big_orders", "function": "count", "event": "Order Completed",
                  "where": {"revenue": 100}}
    created = pipeline.api.post("/v1/computed-traits", json=definition)
    assert created.status_code == 201, created.text
    wait_until(lambda: pipeline.api.get(f"/v1/profiles/{ADA}").json()["computed_traits"].get("big_orders") == 1,
               what="the new computed trait on an existing profile")
    invalid = pipeline.api.post("/v1/computed-traits", json={"name": "x", "function": "sum"})
    assert invalid.status_code == 422 and "property" in invalid.json()["error"]["message"]
    assert pipeline.api.post("/v1/computed-traits", json=definition).status_code == 409
