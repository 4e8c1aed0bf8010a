"""The tracking plan per source: allow, warn (violations recorded) and block (events.rejected)."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from services.ingest.catalogue import EVENT_SCHEMAS, tracking_plan
from services.ingest.domain.plan import Violation
from services.runtime import topics
from tests.ingest.conftest import ids, message_ids, read_topic
from tests.support import wait_until

PLAN = tracking_plan()
ORDER = {"order_id": "o-1", "revenue": 42.5, "currency": "EUR",
         "products": [{"product_id": "sku-1", "price": 42.5, "quantity": 1}]}


def source_with(pipeline, mode: str) -> dict:
    return pipeline.api.post("/v1/sources", json={"name": mode, "kind": "server", "plan_mode": mode}).json()


def post(pipeline, source, path, body):
    return httpx.post(pipeline.ingest.base_url.join(path), json=body, auth=(source["write_key"], ""))


# --- the catalogue ----------------------------------------------------------------------

def test_the_catalogue_covers_the_customer_journey():
    assert {"Product Viewed", "Signed Up", "Form Submitted", "Mention Posted", "Account Followed",
            "Comment Posted", "Direct Message Received", "Order Completed", "Order Refunded",
            "Cart Abandoned", "Ticket Opened", "Ticket Updated", "Ticket Resolved", "Survey Responded",
            "Consent Changed"} <= set(PLAN.events())
    assert ("page", None) in PLAN.validators and ("identify", None) in PLAN.validators


@pytest.mark.parametrize("path", sorted(Path(EVENT_SCHEMAS).glob("*.json")), ids=lambda p: p.stem)
def test_every_catalogue_schema_is_a_valid_json_schema(path):
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_a_planned_event_that_holds_its_schema_has_no_violations():
    assert PLAN.violations({"type": "track", "event": "Order Completed", "properties": ORDER}) == []


def test_an_unplanned_event_and_a_broken_field_are_violations_naming_the_field():
    assert PLAN.violations({"type": "track", "event": "Clicked Thing", "properties": {}}) == [
        Violation("unplanned_event", "event", "'Clicked Thing' is not in the tracking plan")]
    found = PLAN.violations({"type": "track", "event": "Order Completed",
                             "properties": {**ORDER, "revenue": "lots", "currency": None}})
    assert [(v.type, v.field) for v in found] == [("type", "properties.currency"), ("type", "properties.revenue")]
    missing = PLAN.violations({"type": "track", "event": "Survey Responded", "properties": {"nps": 11}})
    assert {(v.type, v.field) for v in missing} >= {("required", "properties.survey_id"),
                                                    ("maximum", "properties.nps")}


def test_identify_traits_are_checked_too():
    found = PLAN.violations({"type": "identify", "traits": {"email": "not an email", "birthday": "soon"}})
    assert {(v.type, v.field) for v in found} == {("format", "traits.email"), ("format", "traits.birthday")}


# --- per source, over HTTP ---------------------------------------------------------------

def test_allow_takes_unplanned_events_unchecked(pipeline):
    source, body = source_with(pipeline, "allow"), ids(event="Clicked Thing")
    assert post(pipeline, source, "/v1/track", body).status_code == 200
    logged = read_topic(pipeline.runtime, topics.EVENTS_RAW, lambda ms: body["messageId"] in message_ids(ms))
    event = next(e for e in logged if e["messageId"] == body["messageId"])
    assert "violations" not in event["context"]


def test_warn_takes_the_event_with_its_violations_and_records_them(pipeline):
    source, body = source_with(pipeline, "warn"), ids(event="Order Completed", properties={"revenue": -1})
    assert post(pipeline, source, "/v1/track", body).status_code == 200
    logged = read_topic(pipeline.runtime, topics.EVENTS_RAW, lambda ms: body["messageId"] in message_ids(ms))
    event = next(e for e in logged if e["messageId"] == body["messageId"])
    assert {"type": "minimum", "field": "properties.revenue",
            "description": "-1 is less than the minimum of 0"} in event["context"]["violations"]
    recorded = wait_until(lambda: pipeline.api.get(f"/v1/sources/{source['id']}/violations").json()["violations"],
                          what="violations recorded")
    assert {(v["type"], v["field"], v["blocked"]) for v in recorded} >= {("minimum", "properties.revenue", False),
                                                                         ("required", "properties.order_id", False)}


def test_block_rejects_a_violating_event_to_events_rejected_and_keeps_the_good_ones(pipeline):
    source = source_with(pipeline, "block")
    good = ids(type="track", event="Order Completed", properties=ORDER)
    bad = ids(type="track", event="Order Completed", properties={**ORDER, "currency": "euros"})
    response = post(pipeline, source, "/v1/batch", {"batch": [good, bad]})
    assert response.status_code == 200
    [rejected] = response.json()["rejected"]
    assert rejected["index"] == 1 and rejected["error"]["code"] == "plan_violation"
    assert rejected["error"]["field"] == "properties.currency"
    single = post(pipeline, source, "/v1/track", ids(event="Unplanned"))
    assert single.status_code == 400 and single.json()["error"]["field"] == "event"

    kept = read_topic(pipeline.runtime, topics.EVENTS_REJECTED, lambda ms: bad["messageId"] in message_ids(ms))
    blocked = next(m for m in kept if isinstance(m["payload"], dict) and m["payload"].get("messageId") == bad["messageId"])
    assert blocked["payload"] == bad and blocked["reason"]["code"] == "plan_violation"
    assert blocked["violations"][0]["field"] == "properties.currency"
    raw = read_topic(pipeline.runtime, topics.EVENTS_RAW, lambda ms: good["messageId"] in message_ids(ms))
    assert bad["messageId"] not in message_ids(raw)
