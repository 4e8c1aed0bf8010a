"""Identity rules: types, priorities, limits, normalisation and blocked values, from a file."""
from __future__ import annotations

import json

import pytest

from services.identity.domain.identifiers import Identifier, identifiers_of, normalise
from services.identity.domain.rules import DEFAULT_RULES, build_rules, load_rules
from services.runtime.settings import Settings


def test_phones_are_matched_in_e164_and_national_numbers_need_a_region():
    assert normalise("phone", " +49 151 1234 5678 ") == "+4915112345678"
    assert normalise("phone", "0151 12345678") is None  # no country: never guess
    assert normalise("phone", "0151 12345678", build_rules({"default_phone_region": "DE"})) == "+4915112345678"
    assert normalise("phone", "call me") is None


def test_every_default_type_is_read_from_its_place_in_the_event():
    event = {"userId": "u1", "anonymousId": "a1",
             "traits": {"email": "Ada@X.io", "phone": "+44 20 7946 0958"},
             "context": {"device": {"id": "dev-9"}, "externalIds": [
                 {"id": "@AdaL", "type": "twitter"}, {"id": "555", "type": "shopify_customer_id"},
                 {"id": "z-1", "type": "zendesk_requester_id"}, {"id": "L-7", "type": "Loyalty_Card"}]}}
    assert identifiers_of(event) == [
        Identifier("user_id", "u1"), Identifier("shop_customer_id", "555"),
        Identifier("helpdesk_requester_id", "z-1"), Identifier("email", "ada@x.io"),
        Identifier("phone", "+442079460958"), Identifier("social:twitter", "adal"),
        Identifier("device_id", "dev-9"), Identifier("anonymous_id", "a1"),
        Identifier("loyalty_card", "L-7")]  # a custom type: below every configured one


def test_a_file_overrides_defaults_adds_types_and_blocks_values_and_patterns(tmp_path):
    path = tmp_path / "identity.json"
    path.write_text(json.dumps({
        "types": {"email": {"limit": 1}, "member_no": {"priority": 2, "limit": 1,
                                                        "sources": ["traits.member_no"]},
                  "device_id": None},
        "extra_blocked_values": ["guest"], "blocked_patterns": [r"^test\+.*@example\.com$"]}))
    rules = load_rules(Settings(identity_rules_path=str(path)).identity_rules_path)
    assert rules.rule("email").limit == 1 and rules.rule("user_id").limit == 1
    event = {"userId": "GUEST", "traits": {"member_no": " 77 ", "email": "test+1@example.com"},
             "context": {"device": {"id": "d1"}}}
    assert identifiers_of(event, rules) == [Identifier("member_no", "77")]
    assert rules.as_json()["types"]["member_no"]["priority"] == 2


@pytest.mark.parametrize("config, message", [
    ({"types": {"email": {"limit": 0}}}, "limit"),
    ({"types": {"x": {"limit": 1}}}, "priority"),
    ({"types": {"x": {"priority": 1, "kind": "fax"}}}, "kind"),
    ({"blocked": []}, "unknown"),
])
def test_invalid_rules_are_refused_with_the_reason(config, message):
    with pytest.raises(ValueError, match=message):
        build_rules(config)


def test_without_a_file_the_documented_defaults_apply():
    assert load_rules("") is DEFAULT_RULES
    assert [(t, DEFAULT_RULES.rule(t).limit) for t in ("user_id", "email", "phone")] == [
        ("user_id", 1), ("email", 5), ("phone", 5)]


def test_operator_blocked_values_never_link():
    rules = DEFAULT_RULES.with_operator_overrides([("anonymous_id", "kiosk")], [])
    assert identifiers_of({"userId": "u1", "anonymousId": "kiosk"}, rules) == [Identifier("user_id", "u1")]
