"""Identity resolution: which identifiers form one profile, whatever order evidence arrives in."""
from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from services.identity.domain.corrections import Merge, Split, corrections
from services.identity.domain.identifiers import Identifier, identifiers_of
from services.identity.domain.resolution import Evidence, Graph, new_profile_id, partition
from services.identity.domain.rules import DEFAULT_RULES, build_rules

FAST = settings(max_examples=200, deadline=None, database=None)

USER = Identifier("user_id", "u1")
EMAIL = Identifier("email", "ada@example.com")
ANON = Identifier("anonymous_id", "anon-1")


def evidence(n: int, *identifiers: Identifier) -> Evidence:
    return Evidence(f"m{n:03}", f"2026-01-01T00:00:{n:02}.000000Z", identifiers)


def event_evidence(n: int, event: dict) -> Evidence:
    return evidence(n, *identifiers_of(event))


# --- profile ids ----------------------------------------------------------------------------

def test_a_new_profile_id_is_deterministic_so_replay_recreates_it():
    assert new_profile_id(USER) == new_profile_id(Identifier("user_id", "u1"))
    assert uuid.UUID(new_profile_id(USER)).version == 5


def test_new_profile_ids_differ_by_identifier_type_and_value():
    ids = {new_profile_id(Identifier(t, v)) for t in ("user_id", "email", "anonymous_id") for v in ("x", "y")}
    assert len(ids) == 6


def test_a_profile_is_named_after_its_strongest_identifier():
    outcome = partition([evidence(1, ANON), evidence(2, ANON, EMAIL), evidence(3, EMAIL, USER)], DEFAULT_RULES)
    assert set(outcome.owners.values()) == {new_profile_id(USER)}
    assert set(outcome.event_profiles.values()) == {new_profile_id(USER)}


def test_an_anonymous_visitor_gets_a_profile_named_after_the_anonymous_id():
    assert partition([evidence(1, ANON)], DEFAULT_RULES).owners == {ANON: new_profile_id(ANON)}


# --- merge protection -------------------------------------------------------------------------

def test_a_shared_device_does_not_merge_two_different_user_ids():
    outcome = partition([evidence(1, Identifier("user_id", "alice"), Identifier("anonymous_id", "tablet")),
                         evidence(2, Identifier("user_id", "bob"), Identifier("anonymous_id", "tablet"))],
                        DEFAULT_RULES)
    assert outcome.owners[Identifier("user_id", "alice")] != outcome.owners[Identifier("user_id", "bob")]
    # the tablet stays with the first user (by event time); bob's event is bob's
    assert outcome.owners[Identifier("anonymous_id", "tablet")] == new_profile_id(Identifier("user_id", "alice"))
    assert outcome.event_profiles["m002"] == new_profile_id(Identifier("user_id", "bob"))
    (refusal,) = outcome.refusals
    assert (refusal.message_id, refusal.dropped, refusal.conflict_type) == (
        "m002", Identifier("anonymous_id", "tablet"), "user_id")
    assert "2 user_id identifiers (alice, bob); the limit is 1" in refusal.reason


def test_the_weakest_identifiers_are_dropped_one_by_one_until_the_link_is_allowed():
    rules = build_rules({"types": {"email": {"limit": 1}}})
    old_email, new_email, phone = (Identifier("email", "old@x.io"), Identifier("email", "new@x.io"),
                                   Identifier("phone", "+4915112345678"))
    outcome = partition([evidence(1, USER, old_email), evidence(2, USER, new_email, phone, ANON)], rules)
    # anon goes first, then phone, then the email that breaks the limit: only user_id is left
    assert [r.dropped for r in outcome.refusals] == [ANON, phone, new_email]
    assert outcome.owners[new_email] != outcome.owners[USER]


def test_an_event_may_bring_several_emails_up_to_the_limit():
    emails = [Identifier("email", f"e{i}@x.io") for i in range(6)]
    outcome = partition([evidence(1, USER, *emails)], DEFAULT_RULES)  # limit 5
    assert len({outcome.owners[e] for e in emails[:5]} | {outcome.owners[USER]}) == 1
    assert outcome.owners[emails[5]] == new_profile_id(emails[5])


def test_an_isolated_identifier_links_to_nothing_but_keeps_its_own_events():
    rules = DEFAULT_RULES.with_operator_overrides([], [("anonymous_id", "anon-1")])
    outcome = partition([evidence(1, USER, ANON), evidence(2, ANON)], rules)
    assert outcome.owners == {USER: new_profile_id(USER), ANON: new_profile_id(ANON)}
    assert outcome.event_profiles == {"m001": new_profile_id(USER), "m002": new_profile_id(ANON)}


# --- order independence -------------------------------------------------------------------------

def test_a_persons_profile_id_does_not_depend_on_delivery_order():
    anonymous_visit = {"messageId": "m1", "anonymousId": "a1", "event": "Viewed"}
    login = {"messageId": "m2", "anonymousId": "a1", "userId": "u1"}
    in_order = partition([event_evidence(1, anonymous_visit), event_evidence(2, login)], DEFAULT_RULES)
    out_of_order = partition([event_evidence(2, login), event_evidence(1, anonymous_visit)], DEFAULT_RULES)
    assert in_order == out_of_order
    assert set(in_order.owners.values()) == {new_profile_id(Identifier("user_id", "u1"))}


def test_linking_evidence_in_key_order_one_at_a_time_is_the_partition():
    items = [evidence(1, ANON), evidence(2, ANON, USER), evidence(3, Identifier("user_id", "u2"), ANON)]
    graph = Graph(DEFAULT_RULES)
    for item in items:
        graph.link(item)
    assert graph.owners() == partition(items, DEFAULT_RULES).owners


USERS = [Identifier("user_id", u) for u in ("u1", "u2", "u3")]
OTHERS = ([Identifier("email", e) for e in ("x@y.io", "z@y.io")] +
          [Identifier("anonymous_id", a) for a in ("a1", "a2", "a3")] + [Identifier("device_id", "d1")])
evidence_sets = st.lists(st.tuples(st.integers(0, 9), st.lists(st.sampled_from(USERS + OTHERS),
                                                               min_size=1, max_size=4, unique=True)),
                         min_size=1, max_size=12).map(
    # timestamps collide on purpose: the messageId breaks the tie
    lambda items: [Evidence(f"m{i:03}", f"2026-01-01T00:00:{t:02}.000000Z", tuple(ids))
                   for i, (t, ids) in enumerate(items)])


@FAST
@given(items=evidence_sets, rnd=st.randoms(use_true_random=False))
def test_any_delivery_order_with_duplicates_gives_the_same_outcome(items, rnd):
    delivered = items + rnd.sample(items, k=min(3, len(items)))
    rnd.shuffle(delivered)
    assert partition(delivered, DEFAULT_RULES) == partition(items, DEFAULT_RULES)


@FAST
@given(items=evidence_sets)
def test_no_profile_ever_holds_two_user_ids_and_every_profile_is_named_after_its_own(items):
    outcome = partition(items, DEFAULT_RULES)
    groups: dict[str, set] = {}
    for identifier, profile_id in outcome.owners.items():
        groups.setdefault(profile_id, set()).add(identifier)
    for profile_id, group in groups.items():
        assert sum(i.type == "user_id" for i in group) <= 1
        assert profile_id == new_profile_id(min(group, key=DEFAULT_RULES.rank))


@FAST
@given(items=evidence_sets)
def test_without_limits_the_profiles_are_the_connected_components(items):
    rules = build_rules({"types": {t: {"limit": None} for t in ("user_id", "email", "device_id",
                                                                "anonymous_id")}})
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for item in items:
        for a, b in zip(item.identifiers, item.identifiers[1:]):
            parent[find(a)] = find(b)
        for i in item.identifiers:
            find(i)
    outcome = partition(items, rules)
    assert not outcome.refusals
    for a in outcome.owners:
        for b in outcome.owners:
            assert (outcome.owners[a] == outcome.owners[b]) == (find(a) == find(b))


# --- corrections --------------------------------------------------------------------------------

def test_a_profile_wholly_taken_by_another_is_a_merge_and_a_rename_is_one_too():
    old = {ANON: "p-anon", USER: "p-user"}
    assert corrections(old, {ANON: "p-user", USER: "p-user"}) == ([Merge("p-user", "p-anon")], [])
    assert corrections({ANON: "p-anon"}, {ANON: "p-user", USER: "p-user"}) == ([Merge("p-user", "p-anon")], [])


def test_a_profile_whose_identifiers_went_different_ways_is_a_split():
    old = {ANON: "p1", USER: "p1", EMAIL: "p1"}
    merges, splits = corrections(old, {ANON: "p2", USER: "p1"})
    assert merges == []
    assert splits == [Split("p1", {"p1": (USER,), "p2": (ANON,)}, (EMAIL,))]


def test_nothing_changed_means_no_correction():
    assert corrections({ANON: "p1"}, {ANON: "p1", USER: "p1"}) == ([], [])
