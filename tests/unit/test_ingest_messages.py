"""Ingest: Segment-format messages become the canonical event on events.raw, or a Rejection naming the field."""
from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydantic import ValidationError

from services.ingest.domain.messages import (KINDS, MAX_ID_LENGTH, Rejection, _fields, _serialised, canonical,
                                               partition_key)

FAST = settings(max_examples=200, deadline=None, database=None)
RECEIVED = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
RECEIVED_TEXT = "2024-05-06T07:08:09.123456Z"


def track(**body):
    return canonical("track", body, "src-web", RECEIVED)


def identify(**body):
    return canonical("identify", body, "src-web", RECEIVED)


def rejection(kind: str, body) -> Rejection:
    with pytest.raises(Rejection) as raised:
        canonical(kind, body, "src-web", RECEIVED)
    return raised.value


# --- accepted messages ----------------------------------------------------------------------

def test_a_track_becomes_the_canonical_event():
    event = track(userId="u1", event="Order Completed", properties={"total": 42.5},
                  messageId="m-1", timestamp="2024-05-06T07:00:00Z")
    assert event == {"type": "track", "userId": "u1", "event": "Order Completed",
                     "properties": {"total": 42.5}, "messageId": "m-1",
                     "timestamp": "2024-05-06T07:00:00.000000Z", "receivedAt": RECEIVED_TEXT,
                     "sourceId": "src-web", "context": {}, "integrations": {}}


def test_an_identify_keeps_its_traits():
    event = identify(anonymousId="a1", traits={"email": "ada@example.com", "plan": None})
    assert event["type"] == "identify"
    assert event["traits"] == {"email": "ada@example.com", "plan": None}
    assert "userId" not in event


def test_the_kind_comes_from_the_endpoint_not_the_body():
    assert canonical("track", {"userId": "u1", "event": "x", "type": "identify"}, "s", RECEIVED)["type"] == "track"


def test_fields_rapport_does_not_know_are_kept():
    event = track(userId="u1", event="x", channel="server", version=2, context={"ip": "1.2.3.4"})
    assert (event["channel"], event["version"], event["context"]) == ("server", 2, {"ip": "1.2.3.4"})


@pytest.mark.parametrize("user_id, expected", [(42, "42"), (0, "0"), (-7, "-7"), (12.5, "12.5"),
                                               (10**20, "100000000000000000000")])
def test_a_numeric_user_id_becomes_a_string(user_id, expected):
    assert track(userId=user_id, event="x")["userId"] == expected


def test_a_numeric_anonymous_id_becomes_a_string():
    assert track(anonymousId=7, event="x")["anonymousId"] == "7"


@FAST
@given(st.integers())
def test_any_integer_user_id_becomes_its_decimal_text(n):
    assert identify(userId=n)["userId"] == str(n)


def test_ids_lose_surrounding_whitespace():
    event = track(userId="  u1 ", anonymousId="\ta1\n", event="x")
    assert (event["userId"], event["anonymousId"]) == ("u1", "a1")


def test_a_blank_user_id_counts_as_absent_when_there_is_an_anonymous_id():
    event = track(userId="   ", anonymousId="a1", event="x")
    assert "userId" not in event and event["anonymousId"] == "a1"


def test_a_user_id_of_the_maximum_length_is_accepted():
    assert track(userId="u" * MAX_ID_LENGTH, event="x")["userId"] == "u" * MAX_ID_LENGTH


def test_a_message_id_sent_by_the_sdk_is_kept_so_retries_are_deduplicated():
    assert track(userId="u1", event="x", messageId="ajs-abc")["messageId"] == "ajs-abc"


@pytest.mark.parametrize("body", [{}, {"messageId": None}, {"messageId": ""}])
def test_a_message_id_is_generated_when_missing(body):
    first = track(userId="u1", event="x", **body)["messageId"]
    second = track(userId="u1", event="x", **body)["messageId"]
    assert uuid.UUID(first).version == 4
    assert first != second


def test_the_timestamp_defaults_to_when_the_message_was_received():
    event = track(userId="u1", event="x")
    assert event["timestamp"] == event["receivedAt"] == RECEIVED_TEXT


@pytest.mark.parametrize("sent, stored", [
    ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05.000000Z"),
    ("2024-01-02T03:04:05.5+02:00", "2024-01-02T01:04:05.500000Z"),
    ("2024-01-02T03:04:05.123-05:30", "2024-01-02T08:34:05.123000Z"),
    (0, "1970-01-01T00:00:00.000000Z"),
])
def test_a_sent_timestamp_is_kept_in_utc_with_microseconds(sent, stored):
    event = track(userId="u1", event="x", timestamp=sent)
    assert event["timestamp"] == stored
    assert event["receivedAt"] == RECEIVED_TEXT


def test_received_at_is_stored_in_utc_whatever_the_zone_it_was_taken_in():
    tokyo = RECEIVED.astimezone(timezone(timedelta(hours=9)))
    assert canonical("track", {"userId": "u1", "event": "x"}, "s", tokyo)["receivedAt"] == RECEIVED_TEXT


def test_the_source_is_recorded():
    assert canonical("identify", {"userId": "u1"}, "src-ios", RECEIVED)["sourceId"] == "src-ios"


def test_the_body_given_is_not_modified():
    body = {"userId": " u1 ", "event": "x"}
    canonical("track", body, "s", RECEIVED)
    assert body == {"userId": " u1 ", "event": "x"}


# --- rejected messages ----------------------------------------------------------------------

@pytest.mark.parametrize("body, rule", [
    ({"userId": "u1"}, "missing"),
    ({"userId": "u1", "event": ""}, "string_too_short"),
    ({"userId": "u1", "event": None}, "string_type"),
    ({"userId": "u1", "event": 12}, "string_type"),
    ({"userId": "u1", "event": "e" * 201}, "string_too_long"),
])
def test_a_track_without_an_event_name_is_rejected_naming_event(body, rule):
    error = rejection("track", body)
    assert (error.field, error.rule) == ("event", rule)
    assert error.as_error() == {"code": rule, "message": error.message, "field": "event"}


def test_an_identify_does_not_need_an_event_name():
    assert "event" not in identify(userId="u1")


@pytest.mark.parametrize("kind", ["track", "identify"])
@pytest.mark.parametrize("ids", [{}, {"userId": None}, {"userId": "  ", "anonymousId": ""},
                                 {"userId": None, "anonymousId": None}])
def test_a_message_about_nobody_is_rejected(kind, ids):
    error = rejection(kind, {"event": "x", **ids})
    assert error.field == "userId"
    assert error.rule == "value_error"
    assert "userId or anonymousId is required" in error.message


@pytest.mark.parametrize("field, value, rule", [
    ("userId", True, "string_type"),
    ("userId", {"id": 1}, "string_type"),
    ("userId", "u" * (MAX_ID_LENGTH + 1), "string_too_long"),
    ("anonymousId", ["a"], "string_type"),
    ("anonymousId", "a" * (MAX_ID_LENGTH + 1), "string_too_long"),
    ("messageId", "m" * 201, "string_too_long"),
    ("timestamp", "yesterday", "datetime"),
    ("context", "web", "dict_type"),
    ("integrations", [], "dict_type"),
    ("properties", "big", "dict_type"),
])
def test_a_bad_field_is_rejected_naming_the_field_and_the_rule(field, value, rule):
    body = {"userId": "u1", "anonymousId": "a1", "event": "x", field: value}
    error = rejection("track", body)
    assert error.field == field
    assert error.rule.startswith(rule)  # pydantic's error type, e.g. datetime_from_date_parsing
    assert field in error.message


def test_identify_traits_must_be_an_object():
    error = rejection("identify", {"userId": "u1", "traits": ["vip"]})
    assert (error.field, error.rule) == ("traits", "dict_type")


@pytest.mark.parametrize("body", [None, [], [{"userId": "u1", "event": "x"}], "track", 42, True])
def test_a_body_that_is_not_an_object_is_rejected_naming_body(body):
    error = rejection("track", body)
    assert (error.field, error.rule) == ("body", "type")
    assert error.as_error() == {"code": "type", "message": "body: must be a JSON object", "field": "body"}


def test_a_rejection_is_a_value_error_whose_text_starts_with_the_field():
    error = rejection("track", {"userId": "u1"})
    assert isinstance(error, ValueError)
    assert str(error).startswith("event: ")


# --- partition key --------------------------------------------------------------------------

def test_the_partition_key_is_the_user_id_when_there_is_one():
    assert partition_key(track(userId="u1", anonymousId="a1", event="x")) == "u1"


def test_the_partition_key_is_the_anonymous_id_of_an_anonymous_visitor():
    assert partition_key(track(anonymousId="a1", event="x")) == "a1"
    assert partition_key(track(userId=" ", anonymousId="a1", event="x")) == "a1"


ids = st.one_of(st.none(), st.text(max_size=8), st.integers(-5, 5))


@FAST
@given(user_id=ids, anonymous_id=ids)
def test_every_accepted_message_has_a_partition_key_preferring_the_user_id(user_id, anonymous_id):
    try:
        event = canonical("identify", {"userId": user_id, "anonymousId": anonymous_id}, "s", RECEIVED)
    except Rejection as error:
        assert error.field == "userId"
        assert not str(user_id if user_id is not None else "").strip()
        assert not str(anonymous_id if anonymous_id is not None else "").strip()
        return
    key = partition_key(event)
    assert isinstance(key, str) and key == key.strip() and key
    assert key == (event.get("userId") or event["anonymousId"])
    if user_id is not None and str(user_id).strip():
        assert key == str(user_id).strip()


@FAST
@given(body=st.dictionaries(st.sampled_from(["userId", "anonymousId", "event", "messageId", "timestamp",
                                             "properties", "context", "extra"]),
                            st.one_of(st.none(), st.text(max_size=5), st.integers(), st.booleans(),
                                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))),
       kind=st.sampled_from(["track", "identify"]))
def test_any_body_is_either_accepted_whole_or_rejected_naming_a_field_it_has_or_needs(body, kind):
    try:
        event = canonical(kind, body, "s", RECEIVED)
    except Rejection as error:
        assert error.field in set(body) | {"userId", "event"}
        assert error.rule and error.message
        return
    assert event["type"] == kind and event["sourceId"] == "s" and event["messageId"]
    assert event.get("userId") or event.get("anonymousId")
    assert event["receivedAt"] == RECEIVED_TEXT
    assert event["timestamp"].endswith("Z")


# --- once bugs: kept so they stay fixed -----------------------------------------------------

@pytest.fixture
def server_in_new_york(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_timestamp_without_an_offset_means_utc_whatever_the_server_zone(server_in_new_york):
    assert os.environ["TZ"] == "America/New_York"
    event = track(userId="u1", event="x", timestamp="2024-01-02T03:04:05")
    assert event["timestamp"] == "2024-01-02T03:04:05.000000Z"


# --- the fast copy of plain JSON bodies -----------------------------------------------------

json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False,
                        allow_infinity=False), st.text(max_size=6))
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
times = st.sampled_from(["2024-05-06T07:00:00Z", "2024-05-06T09:00:00.5+02:00", "2024-05-06T07:00:00",
                         "2024-05-06", 1714979000])


@FAST
@given(body=st.fixed_dictionaries({}, optional={
    "userId": st.one_of(st.text(max_size=4), st.integers(0, 99)), "anonymousId": st.text(max_size=4),
    "messageId": st.one_of(st.none(), st.text(max_size=4)), "timestamp": times, "sentAt": times,
    "event": st.text(min_size=1, max_size=4), "groupId": st.text(max_size=3), "previousId": st.text(max_size=3),
    "name": st.one_of(st.none(), st.text(max_size=3)),
    "properties": st.dictionaries(st.text(max_size=3), json_values, max_size=3),
    "traits": st.dictionaries(st.text(max_size=3), json_values, max_size=3),
    "context": st.dictionaries(st.text(max_size=3), json_values, max_size=3),
    "integrations": st.dictionaries(st.text(max_size=3), json_values, max_size=2),
    "channel": json_values, "version": json_values}),
    kind=st.sampled_from(sorted(KINDS)))
def test_a_plain_json_body_is_copied_as_pydantic_would_serialise_it(body, kind):
    try:
        message = KINDS[kind].model_validate({**body, "type": kind})
    except ValidationError:
        return
    fast, slow = _fields(message), _serialised(message)
    assert fast.pop("timestamp", None) is not None or "timestamp" not in slow  # replaced by canonical
    slow.pop("timestamp", None)
    assert fast == slow


def test_a_body_holding_values_json_has_no_spelling_for_goes_through_pydantic():
    event = track(userId="u1", event="x", properties={"at": datetime(2024, 5, 6, tzinfo=timezone.utc)})
    assert event["properties"] == {"at": "2024-05-06T00:00:00Z"}


def test_sent_at_alone_is_kept_as_sent():
    event = track(userId="u1", event="x", sentAt="2024-05-06T09:00:00+02:00")
    assert event["sentAt"] == "2024-05-06T09:00:00+02:00"
    assert event["timestamp"] == RECEIVED_TEXT


def nested(depth: int):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [252, 253, 254, 260])
def test_nesting_past_250_levels_is_rejected_naming_body_or_kept_whole(depth):
    try:
        event = track(userId="u1", event="x", properties={"p": nested(depth)})
    except Rejection as error:
        assert depth > 250 and (error.field, error.rule) == ("body", "too_deep")
        return
    assert event["properties"]["p"] == nested(depth)
    assert depth < 255  # pydantic's own limit


def test_an_event_over_32_kb_is_rejected_naming_body_even_when_it_is_not_an_object():
    for body in ({"userId": "u1", "event": "x", "properties": {"blob": "x" * 33_000}}, ["x" * 33_000]):
        error = rejection("track", body)
        assert (error.field, error.rule) == ("body", "too_large")
