"""Webhooks of tools without an SDK, mapped to canonical events by declarative mappings."""
from __future__ import annotations

import json

import httpx
import pytest

from services.ingest.catalogue import webhook_mappings
from services.ingest.domain.mapping import messages_from
from services.runtime import topics
from services.runtime.settings import Settings
from tests.ingest.conftest import message_ids, read_topic
from tests.ingest.test_plan import PLAN
from tests.support import RunningPipeline

SHOPIFY_ORDER = {  # Shopify orders/create, trimmed
    "id": 820982911946154508, "email": "Jon@Example.com", "phone": "+1 415 555 2671",
    "created_at": "2024-03-14T09:26:53-05:00", "currency": "USD", "total_price": "598.94",
    "total_tax": "11.94", "total_discounts": "0.00",
    "customer": {"id": 115310627314723954, "first_name": "Jon", "last_name": "Snow"},
    "line_items": [{"id": 866550311766439020, "product_id": 632910392, "sku": "IPOD2008PINK",
                    "title": "IPod Nano - 8GB", "price": "199.00", "quantity": 3}]}
ZENDESK_SOLVED = {  # Zendesk event-subscription webhook
    "account_id": 22129848, "id": "cbe4028c-7239-495d-b020-f22348516046",
    "subject": "zen:ticket:35", "time": "2024-03-14T09:30:00.000Z",
    "type": "zen:event-type:ticket.status_changed", "zendesk_event_version": "2022-11-06",
    "detail": {"id": "35", "requester_id": "366", "status": "SOLVED", "priority": "HIGH",
               "subject": "Parcel never arrived", "via": {"channel": "email"}},
    "event": {"current": "SOLVED", "previous": "OPEN"}}
X_MENTIONS = {  # X Account Activity API
    "for_user_id": "2244994945",
    "tweet_create_events": [{"id_str": "1050118621198921728", "timestamp_ms": "1539202764000",
                             "text": "@rapport my order is late", "user": {"id_str": "6253282",
                                                                          "screen_name": "ada", "name": "Ada"}}]}
CASES = [("shopify-order-created", SHOPIFY_ORDER, "Order Completed"),
         ("zendesk-ticket-event", ZENDESK_SOLVED, "Ticket Resolved"),
         ("x-mention", X_MENTIONS, "Mention Posted")]


@pytest.mark.parametrize("name, payload, event", CASES, ids=[c[0] for c in CASES])
def test_each_built_in_mapping_makes_a_planned_event_without_violations(name, payload, event):
    [message] = messages_from(webhook_mappings()[name], payload)
    assert message["event"] == event
    assert PLAN.violations(message) == []


def test_the_shop_order_keeps_revenue_line_items_and_the_customer():
    [order] = messages_from(webhook_mappings()["shopify-order-created"], SHOPIFY_ORDER)
    assert order["userId"] == "115310627314723954"
    assert order["properties"]["revenue"] == 598.94
    assert order["properties"]["products"] == [{"product_id": "632910392", "sku": "IPOD2008PINK",
                                                "name": "IPod Nano - 8GB", "price": 199.0, "quantity": 3}]
    assert order["context"]["traits"]["email"] == "Jon@Example.com"


def test_a_ticket_created_is_opened_and_other_changes_are_updates():
    mapping = webhook_mappings()["zendesk-ticket-event"]
    opened = {**ZENDESK_SOLVED, "type": "zen:event-type:ticket.created", "detail": {**ZENDESK_SOLVED["detail"], "status": "NEW"}}
    updated = {**ZENDESK_SOLVED, "detail": {**ZENDESK_SOLVED["detail"], "status": "PENDING"}}
    assert messages_from(mapping, opened)[0]["event"] == "Ticket Opened"
    assert messages_from(mapping, updated)[0]["event"] == "Ticket Updated"


@pytest.mark.parametrize("name, payload, event", CASES, ids=[c[0] for c in CASES])
def test_a_webhook_posted_to_ingest_is_on_the_log_as_the_canonical_event(pipeline, name, payload, event):
    url = pipeline.ingest.base_url.join(f"/v1/webhooks/{name}")
    response = httpx.post(url, params={"writeKey": pipeline.write_key}, json=payload)
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text
    [expected] = messages_from(webhook_mappings()[name], payload)
    logged = read_topic(pipeline.runtime, topics.EVENTS_RAW, lambda ms: expected["messageId"] in message_ids(ms))
    assert next(e for e in logged if e["messageId"] == expected["messageId"])["event"] == event
    # the tool retries a webhook: its id makes the messageId, so it is not appended twice
    assert httpx.post(url, params={"writeKey": pipeline.write_key}, json=payload).json()["duplicates"] == 1


def test_an_unknown_mapping_is_a_404(pipeline):
    response = pipeline.ingest.post("/v1/webhooks/nope", json={})
    assert response.status_code == 404


def test_an_operator_adds_a_mapping_without_code(tmp_path):
    folder = tmp_path / "mappings"
    folder.mkdir()
    (folder / "typeform.json").write_text(json.dumps({
        "name": "typeform-response", "message": {
            "type": "track", "event": "Form Submitted", "messageId": "$event_id",
            "userId": "$form_response.hidden.user_id",
            "properties": {"form_id": "$form_response.form_id"}}}))
    settings = Settings(data_dir=tmp_path / "data", ingest_webhook_mappings_dir=folder)
    with RunningPipeline(settings) as running:
        response = running.ingest.post("/v1/webhooks/typeform-response", json={
            "event_id": "01HX", "form_response": {"form_id": "lT4Z3j", "hidden": {"user_id": "u-9"}}})
        assert response.status_code == 200 and response.json()["accepted"] == 1
