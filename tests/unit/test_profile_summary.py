"""Running aggregates (services/profile/domain/summary.py): a summary folded batch by batch,
in any order, is stored exactly as one folded from the whole timeline, and answers the same
values; windowed traits answer from their kept entries what their windows' events give."""
import json
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from services.profile.domain.computed import ComputedTrait
from services.profile.domain.crm import SESSION_GAP, CrmSettings, add_view
from services.profile.domain.folds import MICROSECOND, micros
from services.profile.domain.summary import fingerprint, fold, needs_window_read, start, summarise, values_of
from services.profile.domain.timeline import TimelineEvent
from services.profile.tables import Profile
from services.runtime.db import bind_processor

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
CRM = CrmSettings("USD", {"USD": 1.0, "EUR": 1.1})
DEFINITIONS = [ComputedTrait(name=f"{f}_{w or 'all'}", function=f, event=e, property=p, window=w)
               for f, e, p in (("count", None, None), ("sum", "Order Completed", "revenue"),
                               ("avg", "Order Completed", "revenue"), ("min", None, "revenue"),
                               ("max", None, "revenue"), ("first", None, None), ("last", None, "plan"),
                               ("unique", None, "plan"), ("most_frequent", None, "plan"))
               for w in (None, "7d")] + [ComputedTrait(name="eur_orders", function="count", where={"currency": "EUR"})]

values = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-1e6, 1e6, allow_nan=False),
                   st.sampled_from(["free", "pro", "1"]))
kinds = st.sampled_from([("page", None), ("screen", None), ("track", "Order Completed"), ("track", "Order Refunded"),
                         ("track", "Ticket Opened"), ("track", "Ticket Resolved"), ("track", "Survey Responded"),
                         ("track", "Mention Posted"), ("track", "Product Viewed"), ("identify", None)])


ANY_MINUTE = st.integers(0, 60 * 24 * 20).map(lambda m: timedelta(minutes=m))  # ties in time happen
# whole days, give or take a minute: events exactly a window apart, or a minute inside or out
NEAR_WHOLE_DAYS = st.tuples(st.integers(0, 20), st.integers(-1, 1)).map(lambda d: timedelta(days=d[0], minutes=d[1]))


@st.composite
def timelines(draw, times=ANY_MINUTE):
    events = []
    for n in range(draw(st.integers(0, 30))):
        type_, name = draw(kinds)
        properties = {"revenue": draw(values), "total": draw(values), "plan": draw(values),
                      "currency": draw(st.sampled_from(["USD", "EUR", "JPY", None])),
                      "ticket_id": draw(st.sampled_from(["t1", "t2", 1, None])), "nps": draw(values),
                      "csat": draw(values)}
        at = T0 + draw(times)
        events.append(TimelineEvent(f"m{n}", type_, name, at, properties, None,
                                    draw(st.sampled_from([None, "web", "shop"]))))
    return events


_WRITE_SUMMARY = bind_processor(Profile.__table__.c.summary.type, sqlite.dialect())


def stored(summary) -> str:
    """The text the summary column writes on SQLite, which keeps it as written (replay then
    compares rows): equal summaries must be equal text, whatever order their keys came in."""
    return _WRITE_SUMMARY(summary)


def folded_in_batches(events, random, cuts):
    shuffled = list(events)
    random.shuffle(shuffled)
    bounds = [0, *sorted(cuts), len(shuffled)]
    summary = json.loads(stored(start(DEFINITIONS, CRM)))  # stored and read back between batches
    for a, b in zip(bounds, bounds[1:]):
        summary = json.loads(stored(fold(summary, shuffled[a:b], DEFINITIONS, CRM)))
    return summary


@settings(max_examples=300, deadline=None, database=None)
@given(timelines(), st.randoms(), st.lists(st.integers(0, 30), max_size=4))
def test_folding_batch_by_batch_in_any_order_stores_and_answers_what_folding_it_whole_does(events, random, cuts):
    summary = folded_in_batches(events, random, cuts)
    whole = summarise(events, DEFINITIONS, CRM)
    assert stored(summary) == stored(whole)
    now = T0 + timedelta(days=21)
    assert values_of(summary, DEFINITIONS, CRM, now) == values_of(whole, DEFINITIONS, CRM, now)


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(timelines(), timelines(NEAR_WHOLE_DAYS)), st.randoms(), st.lists(st.integers(0, 30), max_size=4),
       st.integers(-60 * 24, 60 * 24 * 30), st.one_of(st.just(0), st.integers(0, 40)), st.sampled_from([0, 7]),
       st.integers(-2, 2))
def test_windowed_traits_from_their_kept_entries_equal_them_computed_from_the_timeline(events, random, cuts, minute,
                                                                                       nth, days, nudge):
    """At any time, and at the edges: an event's time (the latest most often), or a window
    after it, give or take a minute."""
    summary, times = folded_in_batches(events, random, cuts), sorted(e.at for e in events)
    now = (times[-1 - nth % len(times)] + timedelta(days=days, minutes=nudge) if times and minute % 2
           else T0 + timedelta(minutes=minute))
    recent = events if needs_window_read(summary, DEFINITIONS, now) else None
    computed, due = values_of(summary, DEFINITIONS, CRM, now, recent)
    assert (computed, due) == values_of(summary, DEFINITIONS, CRM, now, events)  # the windows' events, read


@settings(max_examples=200, deadline=None, database=None)
@given(st.one_of(timelines(), timelines(NEAR_WHOLE_DAYS)))
def test_a_window_keeps_only_the_entries_within_one_window_of_its_latest_event(events):
    summary = summarise(events, DEFINITIONS, CRM)
    for trait in (t for t in DEFINITIONS if t.window):
        kept, entries = summary["windows"][trait.name], trait.entries_of(events)
        assert kept == [e for e in entries if e[0] > entries[-1][0] - trait.span() // MICROSECOND]


def test_an_entry_just_inside_one_window_of_the_latest_event_is_kept_and_counted():
    latest = T0 + timedelta(days=10)
    orders = [TimelineEvent(f"m{i}", "track", "Order Completed", at, {"revenue": 1})
              for i, at in enumerate([latest - timedelta(days=7), latest - timedelta(days=7, microseconds=-1), latest])]
    summary = summarise(orders, DEFINITIONS, CRM)
    assert [e[1] for e in summary["windows"]["sum_7d"]] == ["m1", "m2"]
    assert not needs_window_read(summary, DEFINITIONS, latest)
    assert values_of(summary, DEFINITIONS, CRM, latest)[0]["sum_7d"] == 2


def test_a_window_is_read_when_its_latest_event_is_dated_after_now():
    orders = [TimelineEvent(f"m{d}", "track", "Order Completed", T0 + timedelta(days=d), {"revenue": 1})
              for d in (0, 5, 10)]
    summary, weekly = summarise(orders, DEFINITIONS, CRM), "sum_7d"
    assert [e[1] for e in summary["windows"][weekly]] == ["m5", "m10"]  # day 0 is out of every window from day 10
    assert not needs_window_read(summary, DEFINITIONS, T0 + timedelta(days=10))
    early = T0 + timedelta(days=6)  # before the latest order: day 0's is in the window, not kept
    assert needs_window_read(summary, DEFINITIONS, early)
    assert values_of(summary, DEFINITIONS, CRM, early, orders)[0][weekly] == 2
    assert values_of(summary, DEFINITIONS, CRM, early)[0][weekly] == 1  # what the kept entries alone say


@settings(max_examples=200, deadline=None, database=None)
@given(timelines())
def test_an_unwindowed_trait_folded_ahead_equals_the_trait_computed_from_the_timeline(events):
    now = T0 + timedelta(days=30)  # after every event: unwindowed traits then cover all of them
    computed, _ = values_of(summarise(events, DEFINITIONS, CRM), DEFINITIONS, CRM, now)
    assert computed == computed | {t.name: t.compute(events, now) for t in DEFINITIONS}


@given(st.lists(st.integers(0, 10_000), max_size=40))
def test_visits_are_runs_of_views_at_most_the_session_gap_apart(minutes):
    views = sorted(T0 + timedelta(minutes=m) for m in minutes)
    expected = sum(1 for i, at in enumerate(views) if i == 0 or at - views[i - 1] > SESSION_GAP)
    visits = []
    for m in minutes:
        visits = add_view(visits, micros(T0 + timedelta(minutes=m)))
    assert len(visits) == expected


def test_sums_are_exact_whatever_the_order():
    revenue = ComputedTrait(name="revenue", function="sum", property="revenue")
    events = [TimelineEvent(f"m{i}", "track", "x", T0, {"revenue": r}) for i, r in enumerate([1e16, 1.0, -1e16])]
    assert revenue.compute(events, T0) == 1.0  # a float sum in this order answers 0.0


def test_a_summary_is_folded_for_its_definitions_and_rates():
    stamp = fingerprint(DEFINITIONS, CRM)
    assert fingerprint(DEFINITIONS[:-1], CRM) != stamp
    assert fingerprint(DEFINITIONS, CrmSettings("USD", {"USD": 1.0, "EUR": 1.2})) != stamp
    assert fingerprint(DEFINITIONS[::-1], CRM) == stamp  # the database lists them in any order
    windowed_added = DEFINITIONS + [ComputedTrait(name="w", function="count", window="30d")]
    assert fingerprint(windowed_added, CRM) != stamp  # windowed traits keep their entries too
