"""An adversarial population (tests/identity/population.py) through the identity worker:
no over-merge, no missed deterministic link.

Definitions, on the identifiers the rules read from each event (normalised, blocked
values such as null, "undefined" or test@test.com dropped: `identifiers_of`):
- an identifier is **exclusive** when the events of exactly one real person carry it
  (a family tablet, an office's info@ address, an SDK's constant anonymous id are not);
- an event is **attributable** when it carries an exclusive identifier; an event with only
  shared identifiers (anonymous browsing on the family tablet) could be anyone's and is
  not counted;
- two events are **deterministically linked** when they carry the same exclusive
  identifier; linked is transitive (login joins browsing via the anonymous id, and the
  email tool's events via the email stated with the user id). Every person stays within
  the per-profile limits, so no limit may break such a link.
- an **over-merge** is a profile holding attributable events of two people (counted once
  per extra person); a **missed link** is a set of deterministically linked events spread
  over several profiles (counted once per extra profile).
"""
from __future__ import annotations

from collections import defaultdict

import pytest

from services.identity.domain.identifiers import identifiers_of
from services.identity.domain.resolution import Graph, partition
from services.identity.domain.rules import DEFAULT_RULES
from services.identity.handler import evidence_of
from tests.identity.population import Population, population
from tests.identity.support import IdentityWorld


def over_merges_and_missed_links(people: Population, event_profiles: dict[str, str]) -> tuple[int, int]:
    ids = {e["messageId"]: set(identifiers_of(e, DEFAULT_RULES)) for e in people.events}
    carriers = defaultdict(set)
    for message_id, found in ids.items():
        for identifier in found:
            carriers[identifier].add(people.person[message_id])
    exclusive = {m: {i for i in found if len(carriers[i]) == 1} for m, found in ids.items()}
    attributable = [m for m in ids if exclusive[m]]

    persons_in = defaultdict(set)
    for m in attributable:
        persons_in[event_profiles[m]].add(people.person[m])
    over = sum(len(p) - 1 for p in persons_in.values())

    parent = {m: m for m in attributable}  # union-find of events over exclusive identifiers

    def root(m):
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m
    first_with = {}
    for m in attributable:
        for identifier in exclusive[m]:
            parent[root(m)] = root(first_with.setdefault(identifier, m))
    profiles_of = defaultdict(set)
    for m in attributable:
        profiles_of[root(m)].add(event_profiles[m])
    missed = sum(len(p) - 1 for p in profiles_of.values())
    return over, missed


def resolved_by_the_rule(people: Population) -> dict[str, str]:
    return partition([evidence_of(e, DEFAULT_RULES) for e in people.events], DEFAULT_RULES).event_profiles


def test_the_population_holds_every_trap():
    people = population(0)
    values = {str(v) for e in people.events for v in (e.get("userId"), e.get("anonymousId"),
                                                       e.get("traits", {}).get("email"))}
    assert {"00000000-sdk-default", "family0-tablet-anon", "info@office0.example", "test@test.com"} <= values
    assert "None" in values or "null" in values
    assert len(set(people.person.values())) > 15


@pytest.mark.parametrize("seed", range(40))
def test_the_rule_makes_no_over_merge_and_misses_no_deterministic_link(seed):
    people = population(seed)
    assert over_merges_and_missed_links(people, resolved_by_the_rule(people)) == (0, 0)


@pytest.mark.parametrize("seed", range(20))
def test_a_guest_identifying_by_email_on_the_family_tablet_is_not_merged_into_the_family(seed):
    # the tablet is shared (merge protection dropped it between two members), so it links nothing
    # beyond the profile it joined first: the guest's email joins the guest's own browser only
    people = population(seed, guests=True)
    assert over_merges_and_missed_links(people, resolved_by_the_rule(people)) == (0, 0)


def test_without_the_shared_rule_the_guest_would_be_merged_into_the_family():
    """The trap is real: linking the same evidence without marking the tablet shared over-merges."""
    people = population(3, guests=True)
    graph, anchors = Graph(DEFAULT_RULES), {}
    for item in sorted((evidence_of(e, DEFAULT_RULES) for e in people.events), key=lambda e: e.key):
        anchors[item.message_id], _ = graph.link(item)
    owners = graph.owners()
    over, _ = over_merges_and_missed_links(people, {m: owners[a] for m, a in anchors.items()})
    assert over > 0


def test_the_counts_see_an_over_merge_and_a_missed_link():
    people = population(1)
    profiles = resolved_by_the_rule(people)
    alice, bob = (next(m for m, p in people.person.items() if p == who) for who in ("solo0", "solo1"))
    assert over_merges_and_missed_links(people, {**profiles, bob: profiles[alice]}) == (1, 1)


@pytest.mark.parametrize("seed, guests", [(7, False), (8, False), (3, True)])
def test_the_identity_worker_resolves_the_population_as_the_rule_does(settings, seed, guests):
    people = population(seed, guests=guests)
    world = IdentityWorld(settings)
    try:
        world.send(people.events)
        world.resolve()
        resolved = world.event_profiles()
    finally:
        world.close()
    assert len(resolved) == len(people.events)
    assert over_merges_and_missed_links(people, resolved) == (0, 0)
    assert resolved == resolved_by_the_rule(people)
