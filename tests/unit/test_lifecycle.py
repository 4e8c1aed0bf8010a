"""Lifecycle stages on scripted journeys, and the funnel arithmetic."""
from datetime import datetime, timezone

import pytest

from services.segments.domain.lifecycle import LifecycleRules, funnel, median, stage_of, transition_time

RULES = LifecycleRules()


@pytest.mark.parametrize("traits, computed, stage", [
    ({}, {}, "visitor"),
    ({"email": "a@x.io"}, {"orders": 0}, "lead"),
    ({}, {"orders": 1, "days_since_last_order": 3}, "customer"),
    ({}, {"orders": 2, "days_since_last_order": 3}, "repeat"),
    ({}, {"orders": 2, "days_since_last_order": 3, "nps_category": "promoter"}, "loyal"),
    ({}, {"orders": 2, "days_since_last_order": 3, "social_engagement": 3}, "loyal"),
    ({}, {"orders": 5, "days_since_last_order": 3}, "loyal"),
    ({}, {"orders": 5, "days_since_last_order": 90}, "at_risk"),
    ({}, {"orders": 1, "days_since_last_order": 180}, "churned"),
    ({"email": "a@x.io"}, {"orders": 0, "days_since_last_order": None}, "lead"),
])
def test_a_journey_step_lands_in_its_stage(traits, computed, stage):
    assert stage_of(traits, computed, RULES).name == stage


def test_thresholds_are_configurable():
    strict = LifecycleRules(loyal_orders=3, at_risk_days=30, churned_days=60)
    assert stage_of({}, {"orders": 3, "days_since_last_order": 1}, strict).name == "loyal"
    assert stage_of({}, {"orders": 3, "days_since_last_order": 30}, strict).name == "at_risk"
    assert stage_of({}, {"orders": 3, "days_since_last_order": 60}, strict).name == "churned"


def test_a_lapse_happens_the_day_it_crosses_its_threshold():
    stage = stage_of({}, {"orders": 1, "days_since_last_order": 95}, RULES)
    at = transition_time(stage, {"last_order_at": "2026-01-01T00:00:00Z"}, datetime(2026, 4, 6, tzinfo=timezone.utc),
                         RULES)
    assert at == datetime(2026, 4, 1, tzinfo=timezone.utc)  # 90 days after the last order


def test_funnel_conversion_and_median():
    rows = funnel({"visitor": 10, "lead": 5, "customer": 2, "repeat": 1, "loyal": 0})
    assert [(r["from"], r["to"], r["rate"]) for r in rows] == [
        ("visitor", "lead", 0.5), ("lead", "customer", 0.4), ("customer", "repeat", 0.5), ("repeat", "loyal", 0.0)]
    assert funnel({})[0]["rate"] is None
    assert median([3, 1, 2]) == 2 and median([1, 2, 3, 4]) == 2.5 and median([]) is None
