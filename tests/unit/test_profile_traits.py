"""Traits: per trait, the write with the latest event timestamp wins (ties broken by messageId)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.profile.domain.traits import TraitValue, traits_of, visible, winners

FAST = settings(max_examples=200, deadline=None, database=None)
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --- beats ----------------------------------------------------------------------------------

def test_any_write_beats_an_unset_trait():
    assert TraitValue("pro", T0, "m1").beats(None)
    assert TraitValue(None, T0, "m1").beats(None)


def test_a_later_event_beats_an_earlier_one_whatever_the_message_ids():
    assert TraitValue("pro", at(1), "a").beats(TraitValue("free", at(0), "z"))
    assert not TraitValue("free", at(0), "z").beats(TraitValue("pro", at(1), "a"))


def test_on_the_same_timestamp_the_larger_message_id_wins():
    assert TraitValue("pro", T0, "m2").beats(TraitValue("free", T0, "m1"))
    assert not TraitValue("free", T0, "m1").beats(TraitValue("pro", T0, "m2"))


def test_the_same_write_redelivered_does_not_beat_itself():
    write = TraitValue("pro", T0, "m1", "web")
    assert not write.beats(write)
    assert not TraitValue("pro", T0, "m1", "ios").beats(write)


def test_the_same_instant_in_another_time_zone_is_a_tie_broken_by_message_id():
    paris = T0.astimezone(timezone(timedelta(hours=1)))
    assert TraitValue("a", paris, "m2").beats(TraitValue("b", T0, "m1"))
    assert not TraitValue("a", paris, "m1").beats(TraitValue("b", T0, "m2"))


def test_the_value_and_source_play_no_part_in_who_wins():
    assert TraitValue(None, at(1), "m").beats(TraitValue("pro", at(0), "m", "crm"))
    assert not TraitValue("zzz", at(0), "m", "zzz").beats(TraitValue("aaa", at(1), "m", "aaa"))


# --- winners --------------------------------------------------------------------------------

def test_winners_are_the_incoming_values_that_beat_the_current_ones():
    current = {"plan": TraitValue("free", at(5), "m5"), "city": TraitValue("Oslo", at(5), "m5")}
    incoming = {"plan": TraitValue("pro", at(6), "m6"), "city": TraitValue("Rome", at(4), "m4"),
                "age": TraitValue(36, at(1), "m1")}
    assert winners(current, incoming) == {"plan": incoming["plan"], "age": incoming["age"]}


def test_a_late_older_event_writes_nothing():
    current = {"plan": TraitValue("pro", at(10), "m10")}
    assert winners(current, {"plan": TraitValue("free", at(1), "m1")}) == {}


def test_winners_keep_the_source_of_the_winning_write():
    won = winners({}, {"plan": TraitValue("pro", T0, "m1", "stripe")})
    assert won["plan"].source == "stripe"


def test_a_null_unsets_a_trait_and_an_older_value_does_not_come_back():
    state = {"plan": TraitValue("pro", at(0), "m0")}
    state |= winners(state, {"plan": TraitValue(None, at(1), "m1")})
    assert visible(state) == {}
    state |= winners(state, {"plan": TraitValue("free", at(0), "m0b")})
    assert visible(state) == {}
    state |= winners(state, {"plan": TraitValue("enterprise", at(2), "m2")})
    assert visible(state) == {"plan": "enterprise"}


# --- visible --------------------------------------------------------------------------------

def test_readers_see_values_by_trait_name_without_unset_traits():
    traits = {"plan": TraitValue("pro", T0, "m"), "city": TraitValue(None, T0, "m"),
              "age": TraitValue(0, T0, "m"), "vip": TraitValue(False, T0, "m"), "tags": TraitValue([], T0, "m")}
    shown = visible(traits)
    assert shown == {"age": 0, "plan": "pro", "tags": [], "vip": False}
    assert list(shown) == ["age", "plan", "tags", "vip"]


# --- traits_of ------------------------------------------------------------------------------

def test_an_identify_states_its_traits():
    assert traits_of({"type": "identify", "traits": {"plan": "pro"}}) == {"plan": "pro"}


def test_any_event_states_its_context_traits():
    assert traits_of({"type": "track", "context": {"traits": {"plan": "pro"}}}) == {"plan": "pro"}


def test_traits_win_over_context_traits_and_both_are_kept():
    event = {"traits": {"plan": "pro", "city": None}, "context": {"traits": {"plan": "free", "age": 3}}}
    assert traits_of(event) == {"plan": "pro", "city": None, "age": 3}


@pytest.mark.parametrize("event", [{}, {"traits": None}, {"context": None}, {"context": {"traits": None}},
                                   {"context": {}}, {"traits": {}, "context": {"traits": {}}}])
def test_an_event_without_traits_states_none(event):
    assert traits_of(event) == {}


@pytest.mark.parametrize("event", [{"type": "track", "traits": "vip"},
                                   {"type": "track", "context": {"traits": ["vip"]}}])
def test_traits_that_are_not_an_object_state_nothing(event):
    assert traits_of(event) == {}


# --- order does not matter ------------------------------------------------------------------

NAMES = ["plan", "city", "age"]
values = st.one_of(st.none(), st.sampled_from(["pro", "free", "Oslo", 7, 0, False]))
writes_strategy = st.lists(
    st.tuples(st.sampled_from(NAMES), st.integers(0, 4), st.sampled_from(["m1", "m2", "m3", "m4"]), values,
              st.sampled_from([None, "web", "crm"])),
    min_size=1, max_size=25,
    # one write per (trait, event): the same message can't say two things about one trait
    unique_by=lambda w: (w[0], w[1], w[2]))


def fold(writes) -> dict[str, TraitValue]:
    state: dict[str, TraitValue] = {}
    for name, minute, message_id, value, source in writes:
        state |= winners(state, {name: TraitValue(value, at(minute), message_id, source)})
    return state


def expected(writes) -> dict[str, TraitValue]:
    best: dict[str, tuple] = {}
    for w in writes:
        if w[0] not in best or (w[1], w[2]) > (best[w[0]][1], best[w[0]][2]):
            best[w[0]] = w
    return {name: TraitValue(w[3], at(w[1]), w[2], w[4]) for name, w in best.items()}


@FAST
@given(writes=writes_strategy, data=st.data())
def test_any_delivery_order_with_duplicates_gives_the_latest_write_per_trait(writes, data):
    delivered = data.draw(st.permutations(writes + data.draw(st.lists(st.sampled_from(writes), max_size=5))))
    assert fold(delivered) == expected(writes)
    assert visible(fold(delivered)) == {n: t.value for n, t in sorted(expected(writes).items())
                                        if t.value is not None}


@FAST
@given(writes=writes_strategy, data=st.data())
def test_events_carrying_several_traits_fold_to_the_same_state_in_any_order(writes, data):
    events: dict[tuple, dict[str, TraitValue]] = {}
    for name, minute, message_id, value, source in writes:
        events.setdefault((minute, message_id), {})[name] = TraitValue(value, at(minute), message_id, source)
    delivered = data.draw(st.permutations(list(events.values())))
    state: dict[str, TraitValue] = {}
    for incoming in delivered:
        state |= winners(state, incoming)
    assert state == expected(writes)


@FAST
@given(writes=writes_strategy, data=st.data())
def test_merging_two_profiles_keeps_the_latest_write_per_trait(writes, data):
    to_survivor = data.draw(st.lists(st.booleans(), min_size=len(writes), max_size=len(writes)))
    survivor = fold([w for w, s in zip(writes, to_survivor) if s])
    absorbed = fold([w for w, s in zip(writes, to_survivor) if not s])
    merged = survivor | winners(survivor, absorbed)
    assert merged == expected(writes)
