"""The SQL rendering of compiled conditions selects exactly the profiles `evaluate` accepts,
on SQLite and on PostgreSQL, for random condition trees over random JSON profiles."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, note, settings, strategies as st
from sqlalchemy import delete, insert, select

from services.runtime.db import make_engine
from services.segments.domain.conditions import ProfileFacts, evaluate, event_trait, normalise
from services.segments.domain.predicate import compile_condition
from services.segments.predicate_sql import to_sql
from services.segments.tables import SegmentMember, SegmentProfile
from tests.backends import fresh_database, unavailable

NAMES = ["plan", "n", "tags", "x y", "a.b"]
EVENTS = [{"event": "Order Completed", "at_least": 2}, {"event": "Login", "at_least": 1, "within": "7d"}]
COUNTS = [event_trait(e)["name"] for e in EVENTS]
STAGES = ["lead", "customer"]
PURPOSES = ["email", "ads"]
SEGMENTS = ["s1", "s2"]

texts = st.sampled_from(["", "pro", "Pro", "p", "10", "é", "ab"]) | st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=4)
numbers = st.integers(-(2 ** 53), 2 ** 53) | st.sampled_from([0, 1, 2, 10, 1.0, 1.5, -0.5]) | st.floats(
    -1e12, 1e12, allow_nan=False)
scalars = st.none() | st.booleans() | numbers | texts
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=2),
                           max_leaves=5)


@st.composite
def comparisons(draw) -> dict:
    kind = draw(st.sampled_from(["trait", "computed"]))
    op = draw(st.sampled_from(["=", "!=", ">", ">=", "<", "<=", "contains", "exists"]))
    leaf = {kind: draw(st.sampled_from(NAMES + (COUNTS if kind == "computed" else []))), "op": op}
    if op in (">", ">=", "<", "<="):
        leaf["value"] = draw(numbers | texts)
    elif op != "exists":
        leaf["value"] = draw(scalars)
    return leaf


leaves = (comparisons() | st.sampled_from(EVENTS) | st.builds(lambda s: {"stage": s}, st.sampled_from(STAGES))
          | st.builds(lambda p: {"consent": p}, st.sampled_from(PURPOSES))
          | st.builds(lambda s: {"in_segment": s}, st.sampled_from(SEGMENTS)))
conditions = st.recursive(leaves, lambda inner: st.builds(lambda parts: {"and": parts}, st.lists(inner, min_size=1, max_size=3))
                          | st.builds(lambda parts: {"or": parts}, st.lists(inner, min_size=1, max_size=3))
                          | st.builds(lambda part: {"not": part}, inner), max_leaves=6)

profiles = st.lists(st.fixed_dictionaries({
    "traits": st.dictionaries(st.sampled_from(NAMES), json_values, max_size=4),
    "computed": st.dictionaries(st.sampled_from(NAMES + COUNTS), json_values | st.integers(0, 3), max_size=4),
    "stage": st.none() | st.sampled_from(STAGES),
    "consent": st.dictionaries(st.sampled_from(PURPOSES), st.booleans() | scalars, max_size=2),
    "segments": st.frozensets(st.sampled_from(SEGMENTS)),
}), min_size=1, max_size=6)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request, tmp_path_factory):
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('predicate')}/db.sqlite")
        yield from _with_tables(engine)
        return
    server = request.getfixturevalue("postgres_server_url")
    if isinstance(server, Exception):
        unavailable(server)
    with fresh_database(server) as url:
        yield from _with_tables(make_engine(url))


def _with_tables(engine):
    tables = [SegmentProfile.__table__, SegmentMember.__table__]
    SegmentProfile.metadata.create_all(engine, tables=tables)
    yield engine
    engine.dispose()


def selected(engine, condition: dict, people: list[dict]) -> set[str]:
    """Profile ids the rendered predicate selects, with `people` stored (then rolled back)."""
    predicate = compile_condition(condition)
    assert predicate is not None  # every generated name compiles
    with engine.connect() as conn, conn.begin() as transaction:
        conn.execute(delete(SegmentMember))
        conn.execute(delete(SegmentProfile))
        conn.execute(insert(SegmentProfile), [
            {"profile_id": f"p{i}", "version": 1, "traits": p["traits"], "computed": p["computed"],
             "stage": p["stage"], "consent": p["consent"]} for i, p in enumerate(people)])
        members = [{"segment_key": s, "profile_id": f"p{i}", "entered_at": datetime.now(timezone.utc)}
                   for i, p in enumerate(people) for s in p["segments"]]
        if members:
            conn.execute(insert(SegmentMember), members)
        found = set(conn.scalars(select(SegmentProfile.profile_id).where(to_sql(predicate, engine.dialect.name))))
        transaction.rollback()
    return found


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conditions, profiles)
def test_sql_selects_what_python_accepts(engine, condition, people):
    condition = normalise(condition)
    note(f"condition {condition!r}, profiles {people!r}")
    expected = {f"p{i}" for i, p in enumerate(people)
                if evaluate(condition, ProfileFacts(p["traits"], p["computed"], p["stage"], p["consent"],
                                                   p["segments"]))}
    assert selected(engine, condition, people) == expected


STRING_LOOKALIKES = ["pro", "", "10", "1.5", "true", "false", "null", "[1]", '{"a": 1}', '"pro"', " 10", "NaN"]


@pytest.mark.parametrize("wanted", STRING_LOOKALIKES)
def test_string_equality_matches_strings_only(engine, wanted):
    """On PostgreSQL `= "s"` reads the text (->>) unless some other JSON value's text could
    be s (10, true, [1], ...): a string equal to the JSON text of a number, a boolean, an array
    or an object must not select it."""
    values = [*STRING_LOOKALIKES, 10, 1.5, True, False, None, [1], {"a": 1}, ["pro"], {"plan": "pro"}]
    people = [{"traits": {"plan": v}, "computed": {}, "stage": None, "consent": {}, "segments": frozenset()}
              for v in values]
    wanted_tree = normalise({"trait": "plan", "op": "=", "value": wanted})
    expected = {f"p{i}" for i, v in enumerate(values) if isinstance(v, str) and v == wanted}
    assert selected(engine, wanted_tree, people) == expected
