"""The identity worker on each backend: merges as events, merge protection, late evidence."""
from __future__ import annotations

import pytest

from services.identity.domain.identifiers import Identifier
from services.identity.domain.resolution import new_profile_id
from services.identity.domain.rules import build_rules
from tests.identity.support import IdentityWorld, raw

ALICE, BOB = new_profile_id(Identifier("user_id", "alice")), new_profile_id(Identifier("user_id", "bob"))
TABLET = new_profile_id(Identifier("anonymous_id", "tablet"))


@pytest.fixture
def world(settings):
    world = IdentityWorld(settings)
    yield world
    world.close()


def test_a_login_merges_the_visitor_into_the_user_with_a_merge_record(world):
    world.send([raw("2026-01-01T10:00:00Z", "m1", anonymousId="tablet"),
                raw("2026-01-01T11:00:00Z", "m2", anonymousId="tablet", userId="alice")])
    world.resolve()
    assert world.owners() == {Identifier("anonymous_id", "tablet"): ALICE, Identifier("user_id", "alice"): ALICE}
    assert world.event_profiles() == {"m1": ALICE, "m2": ALICE}
    records = world.resolved(3)
    merge = next(r for r in records if r["kind"] == "merge")
    assert (merge["survivor"], merge["absorbed"], merge["message_id"]) == (ALICE, TABLET, "m2")
    assert {"type": "anonymous_id", "value": "tablet"} in merge["identifiers"]


def test_a_shared_tablet_never_merges_two_users_and_the_refusal_is_recorded(world):
    world.send([raw("2026-01-01T10:00:00Z", "m1", anonymousId="tablet", userId="alice"),
                raw("2026-01-01T11:00:00Z", "m2", anonymousId="tablet", userId="bob")])
    world.resolve()
    assert world.event_profiles() == {"m1": ALICE, "m2": BOB}
    assert world.refusals() == {("m2", "anonymous_id", "tablet")}
    refusal = next(r for r in world.resolved(3) if r["kind"] == "refusal")
    assert refusal["profile_id"] == BOB and refusal["conflict_type"] == "user_id"
    assert "alice, bob" in refusal["reason"]


def test_late_evidence_moves_the_tablet_and_splits_alices_profile(world):
    # in arrival order the tablet goes to alice; an older event (sent late) shows it was bob's first
    world.send([raw("2026-01-01T10:00:00Z", "m1", anonymousId="tablet", userId="alice"),
                raw("2026-01-01T10:30:00Z", "m2", anonymousId="tablet"),
                raw("2026-01-01T09:00:00Z", "m0", anonymousId="tablet", userId="bob")])
    world.resolve()
    assert world.owners()[Identifier("anonymous_id", "tablet")] == BOB
    assert world.event_profiles() == {"m0": BOB, "m1": ALICE, "m2": BOB}
    assert world.refusals() == {("m1", "anonymous_id", "tablet")}
    records = world.resolved(8)
    splits = [r for r in records if r["kind"] == "split"]
    assert {s["profile_id"] for s in splits} == {ALICE, BOB}  # one per profile involved
    assert all(s["from"] == ALICE and s["message_ids"] == ["m1", "m2"] for s in splits)
    assert splits[0]["parts"] == {ALICE: [{"type": "user_id", "value": "alice"}],
                                  BOB: [{"type": "anonymous_id", "value": "tablet"}]}
    again = {(r["event"]["messageId"], r["profile_id"]) for r in records if r.get("reresolved")}
    assert again == {("m1", ALICE), ("m2", BOB)}


def test_a_redelivered_event_changes_nothing_and_is_not_published_twice(world):
    event = raw("2026-01-01T10:00:00Z", "m1", anonymousId="a1", userId="u1")
    world.send([event, event])
    world.resolve()
    records = world.resolved(1)
    assert [r["kind"] for r in records] == ["event"]


GUEST = new_profile_id(Identifier("email", "guest@x.io"))


def test_a_tablet_found_shared_later_takes_back_the_guest_it_linked(world):
    # in order: alice logs in on the tablet, a guest gives an email on it, then bob logs in
    # on it: the tablet is shared, so the guest's email leaves alice's profile again
    world.send([raw("2026-01-01T10:00:00Z", "m1", anonymousId="tablet", userId="alice"),
                raw("2026-01-01T10:30:00Z", "m2", anonymousId="tablet", traits={"email": "guest@x.io"}),
                raw("2026-01-01T11:00:00Z", "m3", anonymousId="tablet", userId="bob")])
    world.resolve()
    assert world.owners() == {Identifier("anonymous_id", "tablet"): ALICE, Identifier("user_id", "alice"): ALICE,
                              Identifier("user_id", "bob"): BOB, Identifier("email", "guest@x.io"): GUEST}
    assert world.event_profiles() == {"m1": ALICE, "m2": GUEST, "m3": BOB}
    assert world.refusals() == {("m2", "anonymous_id", "tablet"), ("m3", "anonymous_id", "tablet")}
    records = world.resolved(9)  # 3 events, a split for 2 profiles, 2 re-published, 2 refusals
    (split,) = {r["from"]: r for r in records if r["kind"] == "split"}.values()
    assert split["parts"][GUEST] == [{"type": "email", "value": "guest@x.io"}]
    again = {(r["event"]["messageId"], r["profile_id"]) for r in records if r.get("reresolved")}
    assert again == {("m1", ALICE), ("m2", GUEST)}
    shared = next(r for r in records if r["kind"] == "refusal" and r["message_id"] == "m2")
    assert shared["conflict_type"] == "shared" and "user_id alice" in shared["reason"]


def test_too_many_new_anonymous_ids_in_a_day_are_refused_with_the_reason(settings):
    rules = build_rules({"types": {"anonymous_id": {"window_limit": 2, "window_hours": 24}}})
    world = IdentityWorld(settings, rules)
    try:
        # a3 sorts last by event time, though it arrives first
        world.send([raw("2026-01-01T12:00:00Z", "m3", anonymousId="a3", userId="alice"),
                    raw("2026-01-01T10:00:00Z", "m1", anonymousId="a1", userId="alice"),
                    raw("2026-01-01T11:00:00Z", "m2", anonymousId="a2", userId="alice"),
                    raw("2026-01-03T10:00:00Z", "m4", anonymousId="a4", userId="alice")])
        world.resolve()
        owners = world.owners()
        assert world.refusals() == {("m3", "anonymous_id", "a3")}
        assert {i.value for i, p in owners.items() if p == ALICE} == {"alice", "a1", "a2", "a4"}
        refusal = next(r for r in world.resolved(6) if r["kind"] == "refusal")
        assert (refusal["limit"], refusal["window_hours"]) == (2, 24)
        assert "3 anonymous_id identifiers first seen within 24 h (a1, a2, a3)" in refusal["reason"]
    finally:
        world.close()
