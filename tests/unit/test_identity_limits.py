"""Merge protection beyond counts: shared identifiers, and new anonymous ids per time window.
Both are functions of the set of evidence, so delivery order never matters."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.identity.domain.identifiers import Identifier
from services.identity.domain.resolution import SHARED, Evidence, Graph, crowded_window, new_profile_id, partition
from services.identity.domain.rules import DEFAULT_RULES, build_rules

FAST = settings(max_examples=300, deadline=None, database=None)
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
ALICE, BOB, GUEST = Identifier("user_id", "alice"), Identifier("user_id", "bob"), Identifier("email", "g@x.io")
TABLET = Identifier("anonymous_id", "tablet")
U1 = Identifier("user_id", "u1")


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def item(n: int, minutes: float, *identifiers: Identifier) -> Evidence:
    return Evidence(f"m{n:03}", at(minutes), identifiers)


def anon(n: int) -> Identifier:
    return Identifier("anonymous_id", f"a{n}")


# --- shared identifiers ----------------------------------------------------------------------

def test_a_guest_on_the_family_tablet_keeps_their_own_profile_whenever_the_family_shows_up():
    guest_first = [item(1, 0, GUEST, TABLET), item(2, 10, ALICE, TABLET), item(3, 20, BOB, TABLET)]
    alice_first = [item(1, 10, GUEST, TABLET), item(2, 0, ALICE, TABLET), item(3, 20, BOB, TABLET)]
    for items in (guest_first, alice_first):
        outcome = partition(items, DEFAULT_RULES)
        profiles = {outcome.event_profiles[m] for m in ("m001", "m002", "m003")}
        assert len(profiles) == 3  # guest, alice and bob apart
        assert outcome.shared == {TABLET}


def test_a_shared_identifier_stays_with_the_profile_it_joined_first_and_links_nothing_more():
    outcome = partition([item(1, 0, ALICE, TABLET), item(2, 10, GUEST, TABLET), item(3, 20, BOB, TABLET),
                         item(4, 30, TABLET)], DEFAULT_RULES)
    assert outcome.owners[TABLET] == outcome.owners[ALICE] == new_profile_id(ALICE)
    assert outcome.owners[GUEST] == new_profile_id(GUEST)
    assert outcome.event_profiles["m004"] == new_profile_id(ALICE)  # tablet browsing: its first profile
    by_message = {r.message_id: r for r in outcome.refusals}
    assert by_message["m002"].conflict_type == SHARED
    assert "shared" in by_message["m002"].reason and "user_id alice" in by_message["m002"].reason
    assert by_message["m003"].conflict_type == "user_id"  # linking it would give alice's profile bob


def test_an_identifier_dropped_only_as_the_events_weakest_is_not_shared():
    email, other = Identifier("email", "e@x.io"), Identifier("user_id", "u2")
    outcome = partition([item(1, 0, U1, email), item(2, 10, other, email, anon(1)), item(3, 20, other, anon(1))],
                        DEFAULT_RULES)
    # anon a1 went first (weakest) though it broke nothing; the email was the conflict
    assert outcome.shared == {email}
    assert outcome.owners[anon(1)] == outcome.owners[other]


def test_without_shared_identifiers_a_pass_is_enough_and_nothing_is_marked():
    outcome = partition([item(1, 0, U1, anon(1)), item(2, 5, anon(1), GUEST)], DEFAULT_RULES)
    assert outcome.shared == frozenset() and outcome.refusals == []


# --- new anonymous ids per time window --------------------------------------------------------

WINDOW = build_rules({"types": {"anonymous_id": {"window_limit": 2, "window_hours": 24}}})


def test_the_default_allows_ten_new_anonymous_ids_per_profile_a_day():
    rule = DEFAULT_RULES.rule("anonymous_id")
    assert (rule.limit, rule.window_limit, rule.window_hours) == (200, 10, 24)
    day = partition([item(n, n, U1, anon(n)) for n in range(11)], DEFAULT_RULES)
    assert [r.dropped for r in day.refusals] == [anon(10)]
    spread = partition([item(n, n * 60 * 3, U1, anon(n)) for n in range(20)], DEFAULT_RULES)  # one per 3 h
    assert spread.refusals == []


def test_the_excess_is_the_latest_sighting_not_the_events_weakest_identifier():
    old = item(1, -3 * 24 * 60, anon(9))  # a9 was first seen days ago; a3 is new today
    outcome = partition([old, item(2, 0, U1, anon(1)), item(3, 60, U1, anon(2)),
                         item(4, 120, U1, anon(9), anon(3))], WINDOW)
    assert [r.dropped for r in outcome.refusals] == [anon(3)]
    assert outcome.owners[anon(9)] == new_profile_id(U1)


def test_the_excess_anonymous_id_is_dropped_with_its_reason_and_keeps_its_own_events():
    outcome = partition([item(1, 0, U1, anon(1)), item(2, 60, U1, anon(2)), item(3, 120, U1, anon(3)),
                         item(4, 150, anon(3))], WINDOW)
    (refusal,) = outcome.refusals
    assert (refusal.message_id, refusal.dropped, refusal.conflict_type, refusal.limit) == (
        "m003", anon(3), "anonymous_id", 2)
    assert refusal.reason == ("linking anonymous_id 'a3' would give one profile 3 anonymous_id identifiers "
                              "first seen within 24 h (a1, a2, a3); the limit is 2")
    assert not refusal.shares  # a third browser is not a shared one
    assert outcome.event_profiles["m003"] == new_profile_id(U1)
    assert outcome.event_profiles["m004"] == outcome.owners[anon(3)] == new_profile_id(anon(3))


def test_the_window_slides_and_counts_an_id_when_it_was_first_seen():
    outcome = partition([item(1, 0, U1, anon(1)), item(2, 60, U1, anon(2)),
                         item(3, 25 * 60, U1, anon(3)),  # 25 h later: a1 is out of its window
                         item(4, -5 * 24 * 60, anon(4)), item(5, 26 * 60, U1, anon(4))],  # a4 is old
                        WINDOW)
    assert outcome.refusals == []
    assert len(set(outcome.owners.values())) == 1


def test_a_window_is_counted_by_timestamp_then_value():
    sightings = [(at(0), "b"), (at(0), "a"), (at(10), "c")]
    assert crowded_window(sightings, 2, 24) == ("a", "b", "c")
    assert crowded_window(sightings, 3, 24) == ()
    assert crowded_window([*sightings, (at(30 * 60), "d")], 1, 24) == ("a", "b", "c")
    assert crowded_window([*sightings, (at(30 * 60), "d"), (at(31 * 60), "e")], 1, 24) == ("d", "e")
    assert crowded_window([(at(0), "a"), (at(24 * 60), "b")], 1, 24) == ()  # the window is half-open


@pytest.mark.parametrize("document, wrong", [
    ({"types": {"anonymous_id": {"window_limit": 0}}}, "window_limit"),
    ({"types": {"anonymous_id": {"window_hours": None}}}, "window_hours"),
    ({"types": {"anonymous_id": {"window_hours": "24"}}}, "window_hours")])
def test_invalid_window_settings_are_refused(document, wrong):
    with pytest.raises(ValueError, match=wrong):
        build_rules(document)


def test_window_settings_survive_the_rules_document():
    assert build_rules(WINDOW.as_json()) == WINDOW
    assert WINDOW.as_json()["types"]["anonymous_id"]["window_limit"] == 2


# --- properties ----------------------------------------------------------------------------------

USERS = [Identifier("user_id", u) for u in ("u1", "u2")]
ANONS = [anon(n) for n in range(6)]
OTHERS = [Identifier("email", "x@y.io"), Identifier("device_id", "d1")]
evidence_sets = st.lists(
    st.tuples(st.integers(0, 60), st.lists(st.sampled_from(USERS + ANONS + OTHERS), min_size=1, max_size=3,
                                          unique=True)),
    min_size=1, max_size=14).map(
    # hours apart, colliding on purpose: windows are crowded, and the messageId breaks ties
    lambda items: [Evidence(f"m{i:03}", at(h * 60), tuple(ids)) for i, (h, ids) in enumerate(items)])
TIGHT = build_rules({"types": {"anonymous_id": {"window_limit": 2, "window_hours": 6}, "email": {"limit": 1}}})


@FAST
@given(items=evidence_sets, rnd=st.randoms(use_true_random=False))
def test_any_delivery_order_gives_the_same_outcome_under_the_window_and_shared_rules(items, rnd):
    delivered = items + rnd.sample(items, k=min(3, len(items)))
    rnd.shuffle(delivered)
    assert partition(delivered, TIGHT) == partition(items, TIGHT)


@FAST
@given(items=evidence_sets)
def test_no_profile_gains_more_new_anonymous_ids_in_a_window_than_the_limit(items):
    outcome = partition(items, TIGHT)
    first = {}
    for e in items:  # first sighting, worked out here independently of the rule
        for i in e.identifiers:
            first[i] = min(first.get(i, e.at), e.at)
    groups: dict[str, list[datetime]] = {}
    for identifier, profile_id in outcome.owners.items():
        if identifier.type == "anonymous_id":
            groups.setdefault(profile_id, []).append(datetime.fromisoformat(first[identifier]))
    for times in groups.values():
        for start in times:
            assert sum(start <= t < start + timedelta(hours=6) for t in times) <= 2
    for refusal in outcome.refusals:
        if refusal.window_hours:  # the window named is crowded
            assert refusal.conflict_type == "anonymous_id" and len(refusal.conflicting) > 2


@FAST
@given(items=evidence_sets)
def test_a_shared_identifier_belongs_to_one_profile_and_no_event_links_through_it_to_another(items):
    outcome = partition(items, TIGHT)
    for shared in outcome.shared:
        holder = outcome.owners[shared]
        for e in items:
            if shared in e.identifiers and outcome.event_profiles[e.message_id] != holder:
                assert any(r.message_id == e.message_id and r.dropped == shared for r in outcome.refusals)


# --- identifiers already together ------------------------------------------------------------

def test_identifiers_already_in_one_profile_are_never_refused_even_under_a_lowered_limit():
    """Linking them merges nothing. A profile holding three emails, then a limit of two set by
    an operator: the next event naming two of them goes to the profile with no refusal (the
    limit holds back new links, and the old ones stay until an operator unmerges them)."""
    emails = [Identifier("email", f"e{n}@x.io") for n in range(3)]
    graph = Graph(build_rules({"types": {"email": {"limit": 2}}}), [[U1, *emails]])
    anchor, refusals = graph.link(item(1, 0, U1, emails[0], emails[2]))
    assert (anchor, refusals) == (U1, [])
    anchor, refusals = graph.link(item(2, 0, emails[1], Identifier("email", "new@x.io")))
    assert anchor == emails[1] and [r.dropped for r in refusals] == [Identifier("email", "new@x.io")]
