"""The pure ingest rules: normal forms, the batch envelope, clock skew, the rate, mappings."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.domain.mapping import messages_from
from services.ingest.domain.normalise import _email, _phone, normal_email, normal_phone, normalised_identifiers
from services.ingest.domain.ratelimit import TokenBucket
from services.ingest.domain.wire import batch_items, call_of, corrected_timestamp, write_key_in

AT = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, normal", [
    ("  Ada@Example.COM ", "ada@example.com"), ("ada@example.com", "ada@example.com"),
    ("not an email", None), ("ada@", None), ("", None), (None, None), (42, None)])
def test_an_email_is_trimmed_lower_cased_and_valid(text, normal):
    assert normal_email(text) == normal


@pytest.mark.parametrize("text, region, normal", [
    ("+44 7911 123456", None, "+447911123456"), ("07911 123456", "GB", "+447911123456"),
    ("(415) 555-2671", "us", "+14155552671"), ("07911 123456", None, None), ("12", "GB", None),
    (14155552671, "US", "+14155552671"), ("call me", "GB", None)])
def test_a_phone_is_e164_or_nothing(text, region, normal):
    assert normal_phone(text, region) == normal


def test_only_short_texts_are_kept_by_the_normalisers_caches():
    """A client sending ever new 30 KB "emails" must not grow the process: what is too long
    to be an address or a number is normalised without being cached."""
    long_email, long_phone = "a" * 400 + "@example.com", "1" * 400
    before = (_email.cache_info().currsize, _phone.cache_info().currsize)
    assert normal_email(long_email) is None and normal_phone(long_phone, "GB") is None
    assert (_email.cache_info().currsize, _phone.cache_info().currsize) == before
    assert normal_email(" Cached@Example.com") == "cached@example.com"
    assert _email.cache_info().currsize == before[0] + 1 or _email.cache_info().hits > 0


def test_a_local_phone_is_read_in_the_country_of_the_address_or_the_locale():
    by_locale = {"traits": {"phone": "07911 123456"}, "context": {"locale": "en-GB"}}
    by_address = {"traits": {"phone": "(415) 555-2671", "address": {"country": "US"}},
                  "context": {"locale": "en-GB"}}
    assert normalised_identifiers(by_locale) == {"phone": "+447911123456"}
    assert normalised_identifiers(by_address) == {"phone": "+14155552671"}


def test_identify_traits_win_over_context_traits():
    event = {"traits": {"email": "A@B.co"}, "context": {"traits": {"email": "c@d.co"}}}
    assert normalised_identifiers(event) == {"email": "a@b.co"}


def test_a_batch_item_keeps_its_own_context_values_over_the_envelope_ones():
    items = batch_items({"batch": [{"context": {"ip": "1"}, "type": "track"}, {"type": "identify"}, "junk"],
                         "context": {"ip": "0", "locale": "fr"}, "integrations": {"All": True},
                         "sentAt": "2025-01-01T00:00:00Z"})
    assert items[0]["context"] == {"ip": "1", "locale": "fr"}
    assert items[1] == {"type": "identify", "context": {"ip": "0", "locale": "fr"},
                        "integrations": {"All": True}, "sentAt": "2025-01-01T00:00:00Z"}
    assert items[2] == "junk" and call_of(items[2]) is None and call_of({"type": "launch"}) is None


def test_the_write_key_in_the_body_is_only_a_non_empty_string():
    assert write_key_in({"writeKey": "wk"}) == "wk"
    assert write_key_in({"writeKey": ""}) is None and write_key_in({"writeKey": 3}) is None
    assert write_key_in([]) is None


@settings(max_examples=100, deadline=None, database=None)
@given(skew=st.integers(-10**6, 10**6), delay=st.integers(0, 10**5))
def test_clock_skew_is_removed_whatever_it_is(skew, delay):
    """A client clock `skew` s off sends an event `delay` s after it happened."""
    happened = AT - timedelta(seconds=delay)
    client = timedelta(seconds=skew)
    assert corrected_timestamp(happened + client, AT + client, AT) == happened


def test_without_sent_at_the_timestamp_is_taken_as_sent_and_without_one_it_is_received_at():
    assert corrected_timestamp(AT - timedelta(days=1), None, AT) == AT - timedelta(days=1)
    assert corrected_timestamp(None, AT, AT + timedelta(seconds=5)) == AT + timedelta(seconds=5)


def test_a_bucket_lets_its_burst_through_then_the_rate():
    bucket = TokenBucket.full(rate=10, burst=20, now=0.0)
    assert bucket.take(20, 0.0) == 0
    assert bucket.take(1, 0.0) == pytest.approx(0.1)
    assert bucket.take(5, 0.5) == 0
    assert bucket.take(100, 0.5) == pytest.approx(2.0)  # never more than the burst to wait for


def test_a_mapping_fills_literals_paths_lists_cases_and_conversions():
    mapping = {"each": "$items", "message": {
        "type": "track", "event": {"cases": [{"if": {"$kind": ["a", "b"]}, "then": "AB"}, {"then": "Other"}]},
        "userId": {"path": "$who.id", "prefix": "x:", "as": "string"},
        "timestamp": {"path": "$ms", "as": "epoch_ms"},
        "properties": {"n": {"path": "$n", "as": "number"}, "missing": "$nope", "bad": {"path": "$n2", "as": "number"},
                       "parts": {"each": "$parts", "fields": {"name": "$0"}}}}}
    [first, second] = messages_from(mapping, {"items": [
        {"kind": "a", "who": {"id": 7}, "ms": "0", "n": "1.5", "n2": "x", "parts": [["p"]]},
        {"kind": "c", "who": {}}]})
    assert first == {"type": "track", "event": "AB", "userId": "x:7", "timestamp": "1970-01-01T00:00:00.000000Z",
                     "properties": {"n": 1.5, "parts": [{"name": "p"}]}}
    assert second == {"type": "track", "event": "Other", "properties": {}}
    assert messages_from(mapping, {"items": "not a list"}) == []
