"""Running aggregates (services/profile/domain/summary.py): a summary folded batch by batch,
in any order, is stored exactly as one folded from the whole timeline, and answers the same
values; windowed traits still come from the events in their window."""
import json
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from services.profile.domain.computed import ComputedTrait
from services.profile.domain.crm import SESSION_GAP, CrmSettings, add_view
from services.profile.domain.folds import micros
from services.profile.domain.summary import fingerprint, fold, start, summarise, values_of
from services.profile.domain.timeline import TimelineEvent

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


@st.composite
def timelines(draw):
    events = []
    for n in range(draw(st.integers(0, 30))):
        type_, name = draw(kinds)
        properties = {"revenue": draw(values), "total": draw(values), "plan": draw(values),
                      "currency": draw(st.sampled_from(["USD", "EUR", "JPY", None])),
                      "ticket_id": draw(st.sampled_from(["t1", "t2", 1, None])), "nps": draw(values),
                      "csat": draw(values)}
        at = T0 + timedelta(minutes=draw(st.integers(0, 60 * 24 * 20)))  # ties in time happen
        events.append(TimelineEvent(f"m{n}", type_, name, at, properties, None,
                                    draw(st.sampled_from([None, "web", "shop"]))))
    return events


def stored(summary) -> str:
    return json.dumps(summary)  # as written: SQLite keeps the text, so key order counts


@settings(max_examples=300, deadline=None, database=None)
@given(timelines(), st.randoms(), st.lists(st.integers(0, 30), max_size=4))
def test_folding_batch_by_batch_in_any_order_stores_and_answers_what_folding_it_whole_does(events, random, cuts):
    shuffled = list(events)
    random.shuffle(shuffled)
    bounds = [0, *sorted(cuts), len(shuffled)]
    summary = json.loads(stored(start(DEFINITIONS, CRM)))  # stored and read back between batches
    for a, b in zip(bounds, bounds[1:]):
        summary = json.loads(stored(fold(summary, shuffled[a:b], DEFINITIONS, CRM)))
    whole = summarise(events, DEFINITIONS, CRM)
    assert stored(summary) == stored(whole)
    now = T0 + timedelta(days=21)
    assert values_of(summary, events, DEFINITIONS, CRM, now) == values_of(whole, shuffled, DEFINITIONS, CRM, now)


@settings(max_examples=200, deadline=None, database=None)
@given(timelines())
def test_an_unwindowed_trait_folded_ahead_equals_the_trait_computed_from_the_timeline(events):
    now = T0 + timedelta(days=30)  # after every event: unwindowed traits then cover all of them
    computed, _ = values_of(summarise(events, DEFINITIONS, CRM), events, DEFINITIONS, CRM, now)
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
    windowed_only_changed = DEFINITIONS + [ComputedTrait(name="w", function="count", window="30d")]
    assert fingerprint(windowed_only_changed, CRM) == stamp  # windowed traits aren't folded ahead
