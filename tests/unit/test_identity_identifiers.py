"""Identifiers: what an event carries, normalised so that equal people match."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.identity.domain.identifiers import (SEALING_TYPES, Identifier, identifiers_of, normalise,
                                                  sealing_identifiers)
from services.identity.domain import identifiers
from services.identity.domain.identifiers import _normal_form
from services.identity.domain.rules import DEFAULT_BLOCKED_VALUES, DEFAULT_RULES, DEFAULT_TYPES, build_rules

BLOCKED_VALUES = frozenset(DEFAULT_BLOCKED_VALUES)

FAST = settings(max_examples=200, deadline=None, database=None)
KINDS = ["user_id", "email", "anonymous_id", "device_id"]
BLOCKED = sorted(BLOCKED_VALUES - {"test@test.com"})


# --- normalise ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("raw", [None, {}, {"id": "u1"}, [], ["u1"], True, False])
def test_values_that_are_not_scalars_never_link_anything(kind, raw):
    assert normalise(kind, raw) is None


@pytest.mark.parametrize("kind", ["user_id", "anonymous_id", "device_id"])
@pytest.mark.parametrize("blocked", BLOCKED)
def test_blocked_placeholder_values_never_link_in_any_case_or_padding(kind, blocked):
    for variant in (blocked, blocked.upper(), blocked.title(), f"  {blocked}\t", f"\n{blocked.upper()} "):
        assert normalise(kind, variant) is None, variant


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("raw", [0, -1, float("nan"), "", "   "])
def test_blocked_numbers_and_empty_values_never_link(kind, raw):
    assert normalise(kind, raw) is None


@pytest.mark.parametrize("email", ["test@test.com", "TEST@test.COM", "  Test@Test.Com  "])
def test_the_test_email_is_blocked_whatever_its_case(email):
    assert normalise("email", email) is None


def test_email_is_trimmed_and_lower_cased():
    assert normalise("email", "  Ada.Lovelace@Example.COM\n") == "ada.lovelace@example.com"


@pytest.mark.parametrize("raw", ["ada", "ada.example.com", "  ", 42])
def test_an_email_without_an_at_sign_never_links(raw):
    assert normalise("email", raw) is None


def test_user_ids_keep_their_case_but_lose_padding():
    assert normalise("user_id", "  User-ABC ") == "User-ABC"
    assert normalise("user_id", "User-ABC") != normalise("user_id", "user-abc")


def test_numeric_ids_match_their_text_form():
    assert normalise("user_id", 42) == "42" == normalise("user_id", "42")
    assert normalise("anonymous_id", 7) == "7"


def test_a_value_blocked_only_as_email_domain_is_not_blocked_elsewhere():
    # "test@test.com" is a blocked value for every kind, while a value merely containing it is not
    assert normalise("email", "nottest@test.com") == "nottest@test.com"
    assert normalise("user_id", "null-user") == "null-user"


@FAST
@given(kind=st.sampled_from(KINDS), raw=st.text(max_size=30) | st.integers())
def test_normalising_twice_changes_nothing(kind, raw):
    once = normalise(kind, raw)
    if once is not None:
        assert normalise(kind, once) == once


@FAST
@given(local=st.from_regex(r"[a-z0-9]([a-z0-9_]{0,10}[a-z0-9])?", fullmatch=True),
       domain=st.from_regex(r"[a-z0-9]{1,10}\.[a-z]{2,4}", fullmatch=True),
       upper=st.lists(st.booleans(), min_size=40, max_size=40),
       pad=st.sampled_from(["", " ", "\t", "  \n"]))
def test_any_case_and_padding_of_an_email_matches_the_same_person(local, domain, upper, pad):
    email = f"{local}@{domain}"
    noisy = "".join(c.upper() if u else c for c, u in zip(email, upper + [False] * len(email)))
    expected = None if email in BLOCKED_VALUES else email
    assert normalise("email", pad + noisy + pad) == expected


@FAST
@given(kind=st.sampled_from(KINDS), raw=st.text(max_size=30))
def test_a_normalised_value_is_never_blocked_nor_padded(kind, raw):
    value = normalise(kind, raw)
    if value is not None:
        assert value == value.strip()
        assert value.lower() not in BLOCKED_VALUES


# --- priority -------------------------------------------------------------------------------

def priority(identifier: Identifier) -> int:
    return DEFAULT_RULES.rank(identifier)[0]


def test_user_id_outranks_email_which_outranks_anonymous_id():
    assert (priority(Identifier("user_id", "u")) < priority(Identifier("email", "e@x.io"))
            < priority(Identifier("anonymous_id", "a")))


def test_unknown_identifier_types_rank_below_every_known_one():
    unknown = priority(Identifier("zendesk_ticket_id", "r1"))
    assert all(unknown > t["priority"] for t in DEFAULT_TYPES.values())


def test_identifiers_are_equal_by_type_and_value():
    assert Identifier("email", "a@b.io") == Identifier("email", "a@b.io")
    assert Identifier("email", "x") != Identifier("user_id", "x")
    assert len({Identifier("email", "a@b.io"), Identifier("email", "a@b.io")}) == 1


# --- identifiers_of -------------------------------------------------------------------------

def test_an_identify_with_every_identifier_yields_them_highest_priority_first():
    event = {"userId": "u1", "anonymousId": "anon-1", "traits": {"email": " Ada@Example.com"}}
    assert identifiers_of(event) == [Identifier("user_id", "u1"), Identifier("email", "ada@example.com"),
                                     Identifier("anonymous_id", "anon-1")]


def test_an_email_in_context_traits_identifies_a_track_event():
    event = {"anonymousId": "anon-1", "event": "Viewed", "context": {"traits": {"email": "a@b.io"}}}
    assert identifiers_of(event) == [Identifier("email", "a@b.io"), Identifier("anonymous_id", "anon-1")]


def test_an_email_in_traits_wins_over_one_in_context_traits():
    event = {"userId": "u1", "traits": {"email": "new@b.io"}, "context": {"traits": {"email": "old@b.io"}}}
    assert Identifier("email", "new@b.io") in identifiers_of(event)
    assert Identifier("email", "old@b.io") not in identifiers_of(event)


def test_blocked_identifiers_are_left_out_and_the_rest_kept():
    event = {"userId": "undefined", "anonymousId": "anon-1", "traits": {"email": "test@test.com"}}
    assert identifiers_of(event) == [Identifier("anonymous_id", "anon-1")]


def test_an_event_with_only_blocked_identifiers_has_none():
    assert identifiers_of({"userId": "null", "anonymousId": "0", "traits": {"email": "nobody"}}) == []
    assert identifiers_of({}) == []


def test_a_null_context_or_traits_object_is_treated_as_empty():
    assert identifiers_of({"userId": "u1", "context": None, "traits": None}) == [Identifier("user_id", "u1")]


def test_numeric_user_id_is_the_same_identifier_as_its_text():
    assert identifiers_of({"userId": 42}) == identifiers_of({"userId": "42"}) == [Identifier("user_id", "42")]


def test_user_id_and_anonymous_id_with_the_same_value_are_different_identifiers():
    ids = identifiers_of({"userId": "abc", "anonymousId": "abc"})
    assert ids == [Identifier("user_id", "abc"), Identifier("anonymous_id", "abc")]


scalar = st.one_of(st.none(), st.sampled_from(["u1", "U1 ", "null", "0", "a@b.io", "A@B.io ",
                                               "test@test.com", "x"]), st.integers(-2, 3))


@FAST
@given(user=scalar, anon=scalar, email=scalar, ctx_email=scalar)
def test_identifiers_are_unique_normalised_and_in_priority_order(user, anon, email, ctx_email):
    event = {"userId": user, "anonymousId": anon, "traits": {"email": email},
             "context": {"traits": {"email": ctx_email}}}
    ids = identifiers_of(event)
    assert len(ids) == len(set(ids)) <= 3
    assert ids == sorted(ids, key=DEFAULT_RULES.rank)
    for i in ids:
        assert normalise(i.type, i.value) == i.value
    expected = {("user_id", normalise("user_id", user)), ("anonymous_id", normalise("anonymous_id", anon)),
                ("email", normalise("email", email if email is not None else ctx_email))}
    assert {(i.type, i.value) for i in ids} == {e for e in expected if e[1] is not None}


# --- once bugs: kept so they stay fixed -----------------------------------------------------

def test_a_null_context_traits_is_treated_as_no_traits():
    # ingest accepts this (context is any object), so the identity projector replays it forever
    assert identifiers_of({"userId": "u1", "context": {"traits": None}}) == [Identifier("user_id", "u1")]


@pytest.mark.parametrize("event", [
    {"userId": "u1", "event": "Signed Up", "traits": "vip"},
    {"userId": "u1", "event": "Signed Up", "context": {"traits": ["vip"]}},
])
def test_traits_that_are_not_an_object_carry_no_email(event):
    assert identifiers_of(event) == [Identifier("user_id", "u1")]


VALUES = st.one_of(st.none(), st.text(max_size=12), st.integers(-2, 5), st.just("anonymous"),
                   st.sampled_from(["Ada@Example.com ", "+49 30 1234567", "test@test.com", "u-1"]))
TRAITS = st.dictionaries(st.sampled_from(["email", "phone", "name"]), VALUES, max_size=3)


@given(st.fixed_dictionaries({}, optional={"userId": VALUES, "anonymousId": VALUES, "traits": TRAITS,
                                           "context": st.fixed_dictionaries({}, optional={"traits": TRAITS})}))
def test_what_ingest_seals_under_is_what_identity_matches_by(event):
    """Ingest's cheap sealing identifiers are identity's identifiers of those types, exactly:
    erasing a person destroys the keys of identity's identifiers, so they must be the same."""
    expected = [i for i in identifiers_of(event) if i.type in SEALING_TYPES]
    assert sorted(sealing_identifiers(event)) == sorted(expected)


# --- normal forms kept per rules ------------------------------------------------------------

@settings(max_examples=300, deadline=None, database=None)
@given(kind=st.sampled_from(["user_id", "email", "phone", "anonymous_id", "social:twitter", "custom"]),
       raws=st.lists(st.one_of(st.text(max_size=12), st.sampled_from(["Ada@Example.com ", "+44 7700 900123",
                                                                    "null", " u-1 ", "@Ada"])), max_size=6))
def test_a_value_normalised_again_answers_what_it_answered_the_first_time(kind, raws):
    rules = build_rules()  # its own cache
    first = [normalise(kind, raw, rules) for raw in raws]
    assert [normalise(kind, raw, rules) for raw in raws] == first
    assert first == [_normal_form(kind, raw, rules) for raw in raws]


def test_a_value_an_operator_blocks_stops_linking_though_it_was_normalised_before():
    rules = build_rules()
    assert normalise("user_id", "u-1", rules) == "u-1"
    blocked = rules.with_operator_overrides([("user_id", "u-1")], [])
    assert normalise("user_id", "u-1", blocked) is None
    assert normalise("user_id", "u-1", rules) == "u-1"


def test_the_kept_normal_forms_are_bounded(monkeypatch):
    monkeypatch.setattr(identifiers, "NORMAL_FORMS_KEPT", 10)
    rules = build_rules()
    for i in range(25):
        assert normalise("user_id", f"u-{i}", rules) == f"u-{i}"
    assert 0 < len(rules.normal_forms) <= 10


# --- the reading plan without externalIds ---------------------------------------------------

rule_sources = st.lists(st.sampled_from(["userId", "traits.email", "context.traits.email", "context.device.id",
                                         "externalId:shop", "externalId:crm", "traits.crm"]),
                        min_size=1, max_size=3, unique=True)
leaf = st.one_of(st.none(), st.sampled_from(["u1", "a@b.io", "null", " x "]), st.integers(0, 3))


@FAST
@given(types=st.dictionaries(st.sampled_from(["user_id", "email", "crm_id", "device_id"]), rule_sources, min_size=1),
       event=st.fixed_dictionaries({}, optional={
           "userId": leaf, "traits": st.fixed_dictionaries({}, optional={"email": leaf, "crm": leaf}),
           "context": st.fixed_dictionaries({}, optional={
               "traits": st.fixed_dictionaries({}, optional={"email": leaf}),
               "device": st.fixed_dictionaries({}, optional={"id": leaf}),
               "externalIds": st.lists(st.fixed_dictionaries({"type": st.sampled_from(["shop", "crm", "zen"]),
                                                              "id": leaf}), max_size=3)})}))
def test_the_plan_of_paths_finds_what_the_whole_plan_finds(types, event):
    config = {"types": {**{name: None for name in DEFAULT_TYPES},
                        **{name: {"priority": i + 1, "sources": sources} for i, (name, sources) in
                           enumerate(sorted(types.items()))}}}
    fast, whole = build_rules(config), build_rules(config)
    whole.__dict__["path_plan"] = whole.reading_plan  # every source, as before the shortcut
    assert identifiers_of(event, fast) == identifiers_of(event, whole)


@pytest.mark.parametrize("type_", [*DEFAULT_TYPES, "zendesk_ticket_id"])
def test_rank_is_the_rule_priority_then_type_then_value(type_):
    assert DEFAULT_RULES.rank(Identifier(type_, "v")) == (DEFAULT_RULES.rule(type_).priority, type_, "v")
