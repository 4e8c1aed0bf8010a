"""Shuffled, duplicated, late delivery gives the same profiles as the rule says for the set of
events: identifiers, event profiles and refused merges alike, on a real log and database."""
from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.identity.domain.resolution import partition
from services.identity.domain.rules import DEFAULT_RULES, build_rules
from services.identity.handler import evidence_of
from services.runtime.settings import Settings
from tests.identity.support import IdentityWorld, partition_of, raw

SLOW = settings(max_examples=30, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def population(draw):
    """People with a user id (or not), emails, devices; a family tablet and an office email shared."""
    people = []
    for n in range(draw(st.integers(2, 4))):
        people.append({"userId": draw(st.sampled_from([f"user-{n}", f"user-{n}", None])),
                       "email": draw(st.sampled_from([f"p{n}@home.io", "office@work.io", "null", None])),
                       "anonymousId": draw(st.sampled_from([f"anon-{n}", "family-tablet", "family-tablet"]))})
    events = []
    for i in range(draw(st.integers(3, 14))):
        person = draw(st.sampled_from(people))
        fields = {"anonymousId": person["anonymousId"]}
        if person["userId"] and draw(st.integers(0, 3)):
            fields["userId"] = person["userId"]
        if person["email"] and draw(st.booleans()):
            fields["context"] = {"traits": {"email": person["email"]}}
        events.append(raw(f"2026-01-01T10:00:{draw(st.integers(0, 5)):02}Z", f"m{i:02}", **fields))
    return events


def model_timelines(records: list[dict]) -> dict[str, set[str]]:
    """What the profile projector holds if it follows the contract in docs/identity.md:
    an event record places its message unless a higher version of it was applied; aliases
    follow merges and splits."""
    placed: dict[str, tuple[int, str]] = {}  # message id -> (version, profile id as sent)
    aliases: dict[str, str] = {}
    corrected: dict[str, int] = {}  # id -> the newest correction (seq) applied to what it reads as

    def newer(profile_id: str, seq: int) -> bool:
        if corrected.get(profile_id, -1) > seq:
            return False
        corrected[profile_id] = seq
        return True

    for r in records:
        if r["kind"] == "event":
            message_id = r["event"]["messageId"]
            if r["version"] >= placed.get(message_id, (-1, ""))[0]:
                placed[message_id] = (r["version"], r["profile_id"])
        elif r["kind"] == "merge" and r["absorbed"] != r["survivor"] and newer(r["absorbed"], r["seq"]):
            aliases[r["absorbed"]] = r["survivor"]
        elif r["kind"] == "split":
            for profile_id, target in r["aliases"].items():
                if not newer(profile_id, r["seq"]):
                    continue
                if target in (None, profile_id):
                    aliases.pop(profile_id, None)
                else:
                    aliases[profile_id] = target

    def reading(profile_id: str) -> str:
        seen = set()
        while profile_id in aliases and profile_id not in seen:
            seen.add(profile_id)
            profile_id = aliases[profile_id]
        return profile_id

    timelines: dict[str, set[str]] = {}
    for message_id, (_, profile_id) in placed.items():
        timelines.setdefault(reading(profile_id), set()).add(message_id)
    return timelines


@st.composite
def browsers(draw):
    """People who log in from many browsers within hours (a crowded window of new anonymous
    ids) and a tablet two of them share, over two days."""
    events = []
    for i in range(draw(st.integers(3, 14))):
        person = draw(st.integers(0, 1))
        fields = {"anonymousId": draw(st.sampled_from([f"anon-{person}-{n}" for n in range(5)] + ["tablet"]))}
        if draw(st.integers(0, 3)):
            fields["userId"] = f"user-{person}"
        if not draw(st.integers(0, 3)):
            fields["traits"] = {"email": f"p{person}@home.io"}
        events.append(raw(f"2026-01-0{draw(st.integers(1, 2))}T{draw(st.integers(0, 9)):02}:00:00Z",
                          f"m{i:02}", **fields))
    return events


# Read partition by partition, a merge (keyed by its survivor) came before the older split
# (a copy keyed by the id it takes back) that the merge undoes: the split must not win.
SPLIT_THEN_MERGED_AGAIN = [
    raw("2026-01-02T05:00:00Z", "m00", anonymousId="anon-1-0", userId="user-1"),
    raw("2026-01-02T09:00:00Z", "m01", anonymousId="anon-1-3", userId="user-1"),
    raw("2026-01-01T04:00:00Z", "m02", anonymousId="anon-0-3", traits={"email": "p0@home.io"}),
    raw("2026-01-02T06:00:00Z", "m03", anonymousId="anon-1-3"),
    raw("2026-01-01T06:00:00Z", "m04", anonymousId="tablet", userId="user-1"),
    raw("2026-01-02T01:00:00Z", "m05", anonymousId="anon-0-2", userId="user-0"),
    raw("2026-01-02T06:00:00Z", "m06", anonymousId="tablet", traits={"email": "p1@home.io"}),
    raw("2026-01-02T02:00:00Z", "m07", anonymousId="tablet", userId="user-1"),
    raw("2026-01-02T02:00:00Z", "m08", anonymousId="tablet", userId="user-1"),
    raw("2026-01-01T02:00:00Z", "m09", anonymousId="anon-1-2"),
]

TIGHT = build_rules({"types": {"anonymous_id": {"window_limit": 2, "window_hours": 6}}})


@SLOW
@given(events=population(), seed=st.integers(0, 2**32))
def test_delivery_order_does_not_change_profiles_refusals_or_what_downstream_sees(events, seed):
    delivered_in_any_order_gives_the_rules_outcome(events, seed, DEFAULT_RULES)


@SLOW
@example(events=SPLIT_THEN_MERGED_AGAIN, seed=82064)
@given(events=browsers(), seed=st.integers(0, 2**32))
def test_delivery_order_does_not_change_window_limits_or_shared_identifiers(events, seed):
    delivered_in_any_order_gives_the_rules_outcome(events, seed, TIGHT)


def delivered_in_any_order_gives_the_rules_outcome(events: list[dict], seed: int, rules) -> None:
    rnd = random.Random(seed)
    delivered = events + rnd.sample(events, k=min(3, len(events)))
    rnd.shuffle(delivered)
    expected = partition([evidence_of(e, rules) for e in events], rules)
    with tempfile.TemporaryDirectory() as tmp:
        world = IdentityWorld(Settings(data_dir=Path(tmp), poll_timeout_ms=20), rules)
        try:
            world.send(delivered, key=None)
            world.resolve()
            assert partition_of(world.owners()) == partition_of(expected.owners)
            assert world.owners() == expected.owners  # the same profile ids too
            assert world.event_profiles() == expected.event_profiles
            assert world.link_facts() == (expected.shared, expected.first_seen)  # what later links read
            assert world.refusals() == {(r.message_id, r.dropped.type, r.dropped.value)
                                        for r in expected.refusals}
            records = world.resolved(len(events))
            timelines = model_timelines(records)
            want: dict[str, set[str]] = {}
            for message_id, profile_id in expected.event_profiles.items():
                want.setdefault(profile_id, set()).add(message_id)
            assert timelines == want
        finally:
            world.close()
