"""Two identity workers racing to merge the same people (on PostgreSQL + Kafka they own
different partitions) build the graph the rule gives for the set of events: no lost merge,
no deadlock left unretried."""
from __future__ import annotations

import random

from services.identity.domain.resolution import partition
from services.identity.domain.rules import DEFAULT_RULES
from services.identity.handler import evidence_of
from tests.identity.support import IdentityWorld, raw


def crowd(people: int = 40, seed: int = 7) -> list[dict]:
    """Each person's identifiers are spread over events keyed differently (user id, anonymous
    ids), so their links arrive on different partitions; every third person shares a tablet."""
    rnd, events = random.Random(seed), []
    for n in range(people):
        anon = [f"anon-{n}-{k}" for k in range(3)] + (["shared-tablet"] if n % 3 == 0 else [])
        for k, a in enumerate(anon):
            second = rnd.randint(0, 59)
            events.append(raw(f"2026-01-01T10:{second:02}:00Z", f"m{n}-{k}a", anonymousId=a))
            events.append(raw(f"2026-01-01T11:{second:02}:00Z", f"m{n}-{k}b", anonymousId=a,
                              userId=f"user-{n}", context={"traits": {"email": f"p{n}@x.io"}}))
    rnd.shuffle(events)
    return events


def test_two_workers_build_the_same_graph_as_the_rule(settings):
    events = crowd()
    world = IdentityWorld(settings.model_copy(update={"batch_size": 20}))
    try:
        world.send(events, key=None)
        world.resolve(workers=2)
        expected = partition([evidence_of(e, DEFAULT_RULES) for e in events], DEFAULT_RULES)
        assert world.owners() == expected.owners
        assert world.event_profiles() == expected.event_profiles
        assert world.refusals() == {(r.message_id, r.dropped.type, r.dropped.value)
                                    for r in expected.refusals}
        assert len(set(expected.owners.values())) == 40  # one profile per person: nothing over-merged
    finally:
        world.close()
