"""Computed traits: aggregation, windows that decay on time, merge and unmerge arithmetic."""
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.profile.domain import folds
from services.profile.domain.computed import ComputedTrait, compute_all, parse_window
from services.profile.domain.timeline import TimelineEvent

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def order(i: int, day: float, revenue, **properties) -> TimelineEvent:
    return TimelineEvent(f"m{i}", "track", "Order Completed", T0 + timedelta(days=day),
                         {"revenue": revenue, **properties})


ORDERS = [order(1, 0, 10), order(2, 5, 30, coupon="X"), order(3, 20, 20), order(4, 40, 40)]


@pytest.mark.parametrize("function, prop, expected", [
    ("count", None, 4), ("sum", "revenue", 100.0), ("avg", "revenue", 25.0), ("min", "revenue", 10.0),
    ("max", "revenue", 40.0), ("first", "revenue", 10), ("last", "revenue", 40),
    ("unique", "revenue", [10, 20, 30, 40]), ("most_frequent", "revenue", 10)])
def test_each_function_aggregates_the_matching_events(function, prop, expected):
    trait = ComputedTrait(name="t", function=function, event="Order Completed", property=prop)
    assert trait.compute(ORDERS, T0 + timedelta(days=50)) == expected


def test_property_filters_and_event_names_narrow_the_events():
    events = ORDERS + [TimelineEvent("v", "track", "Product Viewed", T0, {"revenue": 999})]
    with_coupon = ComputedTrait(name="t", function="sum", event="Order Completed", property="revenue",
                                where={"coupon": "X"})
    assert with_coupon.compute(events, T0 + timedelta(days=50)) == 30.0
    any_event = ComputedTrait(name="t", function="count")
    assert any_event.compute(events, T0 + timedelta(days=50)) == 5


def test_a_window_decays_on_time_and_says_when_it_next_changes():
    trait = ComputedTrait(name="orders_30d", function="count", event="Order Completed", window="30d")
    at = T0 + timedelta(days=41)
    assert trait.compute(ORDERS, at) == 2  # days 20 and 40
    change = trait.next_change(ORDERS, at)
    assert change == T0 + timedelta(days=50)  # the day-20 order leaves the window
    assert trait.compute(ORDERS, change - timedelta(seconds=1)) == 2
    assert trait.compute(ORDERS, change) == 1
    assert trait.compute(ORDERS, T0 + timedelta(days=71)) == 0
    assert trait.next_change(ORDERS, T0 + timedelta(days=71)) is None


def test_compute_all_answers_the_earliest_change_of_any_trait():
    traits = [ComputedTrait(name="a", function="count", window="7d"),
              ComputedTrait(name="b", function="count", window="30d"), ComputedTrait(name="c", function="count")]
    values, due = compute_all(traits, ORDERS, T0 + timedelta(days=41))
    assert values == {"a": 1, "b": 2, "c": 4} and due == T0 + timedelta(days=47)


@pytest.mark.parametrize("definition, field", [
    ({"name": "t", "function": "sum"}, "property is required"),
    ({"name": "Bad Name", "function": "count"}, "name"),
    ({"name": "t", "function": "median", "property": "x"}, "function"),
    ({"name": "t", "function": "count", "window": "3 days"}, "window")])
def test_invalid_definitions_are_refused_naming_the_problem(definition, field):
    with pytest.raises(ValidationError, match=field):
        ComputedTrait.model_validate(definition)


def test_windows_parse_units():
    assert parse_window("90d") == timedelta(days=90) and parse_window("12h") == timedelta(hours=12)


# one messageId is one event, seen under one profile id or both
events = st.lists(st.integers(0, 40).map(lambda i: order(i, (i * 7) % 61, (i * 13) % 101)),
                  max_size=25, unique_by=lambda e: e.message_id)
TRAITS = [ComputedTrait(name=f"{f}_{w or 'all'}", function=f, event="Order Completed",
                        property=None if f == "count" else "revenue", window=w)
          for f in ("count", "sum", "max", "unique") for w in (None, "30d")]


@settings(max_examples=200, deadline=None, database=None)
@given(events, events, st.integers(0, 90))
def test_a_merged_profile_computes_as_if_it_had_always_been_one(left, right, day):
    """Merging unites timelines by messageId: an event seen under both ids counts once, and
    splitting them again gives back each side's values (values come from timelines only)."""
    at = T0 + timedelta(days=day)
    united = list({e.message_id: e for e in left + right}.values())  # the merged timeline
    never_apart = sorted({e.message_id: e for e in right + left}.values(), key=lambda e: e.message_id)
    assert compute_all(TRAITS, united, at) == compute_all(TRAITS, never_apart, at)
    count = compute_all(TRAITS, united, at)[0]["count_all"]
    assert count == len({e.message_id for e in left + right})  # shared events counted once


@settings(max_examples=100, deadline=None, database=None)
@given(events, st.randoms())
def test_values_do_not_depend_on_the_order_events_arrived_in(timeline, random):
    shuffled = list(timeline)
    random.shuffle(shuffled)
    at = T0 + timedelta(days=45)
    assert compute_all(TRAITS, timeline, at) == compute_all(TRAITS, shuffled, at)


FUNCTIONS = ["count", "sum", "avg", "min", "max", "first", "last", "unique", "most_frequent"]
stated = (st.integers(-10**30, 10**30) | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
          | st.none() | st.text(max_size=3))
window_entries = st.lists(st.tuples(st.integers(0, 10**12), stated), max_size=30).map(
    lambda pairs: sorted([[at, f"m{i}", value] for i, (at, value) in enumerate(pairs)]))


@settings(max_examples=300)
@given(st.sampled_from(FUNCTIONS), window_entries)
def test_a_window_folded_at_once_is_what_adding_its_entries_one_by_one_makes(function, entries):
    """value_at folds a window's entries at once (a count is their number, a sum one exact
    sum); the fold must equal `add` applied to each in turn, -0.0, huge integers and
    non-numbers included."""
    trait = ComputedTrait(name="t", function=function, event="e", property=None if function == "count" else "p")
    one_by_one = trait.start()
    for entry in entries:
        one_by_one = trait.add(one_by_one, entry)
    folded = trait.folded(entries)
    assert repr(folded) == repr(one_by_one)  # repr: 0.0 and -0.0 differ
    assert repr(trait.value(folded)) == repr(trait.value(one_by_one))


@given(window_entries, st.integers(0, 10**12))
def test_a_window_is_the_slice_of_sorted_entries_inside_it(entries, now_us):
    trait = ComputedTrait(name="t", function="count", event="e", window="1d")
    now = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=now_us)
    inside = [e for e in entries if now_us - 86_400_000_000 < e[0] <= now_us]
    assert trait.value_at(entries, now)[0] == len(inside)


finite = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**30, 10**30)


@given(st.lists(finite, max_size=12), finite, st.integers(1, 10**6))
def test_exact_totals_are_the_fractions_arithmetic(values, value, divide_by):
    """add_exact and exact_value parse their text without Fraction's parser: the same
    totals and the same correctly rounded floats as Fraction's arithmetic."""
    total, reference = "0", Fraction(0)
    for v in values:
        total, reference = folds.add_exact(total, v), reference + Fraction(v)
        assert total == str(reference)
    assert folds.add_exact(total, value) == str(reference + Fraction(value))
    assert repr(folds.exact_value(total, divide_by)) == repr(float(reference / divide_by))
    assert folds.exact_value("1.5") == 1.5  # another form Fraction reads
