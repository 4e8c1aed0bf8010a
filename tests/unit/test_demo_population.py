"""The demo population: the same for a seed, valid Segment messages, each path in its stage."""
from collections import Counter
from datetime import datetime, timezone

from services.demo.population import PERSONAS, in_time_order, population
from services.ingest.catalogue import tracking_plan
from services.ingest.domain.messages import Rejection, canonical
from services.profile.domain.crm import CrmSettings, crm_metrics
from services.profile.domain.timeline import TimelineEvent
from services.segments.domain.lifecycle import LifecycleRules, stage_of

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
PEOPLE = population(300, 7, NOW)


def accepted(message) -> dict | None:
    try:
        return canonical(message.body["type"], message.body, "src", NOW)
    except Rejection:
        return None


def test_the_same_seed_gives_the_same_people_and_another_seed_others():
    again = population(300, 7, NOW)
    assert [m.body for m in in_time_order(again)] == [m.body for m in in_time_order(PEOPLE)]
    assert [p.name for p in population(300, 8, NOW)] != [p.name for p in PEOPLE]


def test_every_lifecycle_path_and_source_is_there_over_a_year():
    assert set(Counter(p.persona for p in PEOPLE)) == set(PERSONAS)
    messages = in_time_order(PEOPLE)
    assert {m.source for m in messages} == {"website", "mobile", "shop", "helpdesk", "social"}
    days = (NOW - datetime.fromisoformat(messages[0].at.replace("Z", "+00:00"))).days
    assert 300 <= days <= 366 and all(m.at < "2026-03-01" for m in messages)
    assert len({m.body["messageId"] for m in messages}) == len(messages)
    assert any(len(p.emails) == 2 for p in PEOPLE) and any(p.handle for p in PEOPLE)


def test_messages_pass_ingest_and_the_tracking_plan_but_a_few_broken_ones():
    plan = tracking_plan()
    messages = in_time_order(PEOPLE)
    refused = [m for m in messages if accepted(m) is None]
    assert 0 < len(refused) < 0.03 * len(messages)  # a buggy snippet: shown as rejected in the console
    assert {m.source for m in refused} <= {"website", "mobile"}
    violations = [(m.body.get("event"), v) for m in messages if (event := accepted(m))
                  for v in plan.violations(event)]
    assert violations == []


def test_each_path_ends_in_its_lifecycle_stage():
    """What identity stitches into one profile per person lands in the persona's stage."""
    for person in PEOPLE:
        events = [e for m in person.messages if (e := accepted(m))]
        timeline = sorted((TimelineEvent(e["messageId"], e["type"], e.get("event"),
                                         datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")),
                                         e.get("properties", {})) for e in events), key=lambda t: t.at)
        traits = {k: v for e in events for k, v in e.get("traits", {}).items()}
        computed = crm_metrics(timeline, NOW, CrmSettings())
        assert stage_of(traits, computed, LifecycleRules()).name == person.persona, person
