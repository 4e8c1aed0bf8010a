"""The segments handler decides a batch in memory and writes it once (services/segments/
batch.py); every row and message must be those of applying the same records one at a time."""
from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from services import migrations
from services.runtime import topics
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.clock import format_time
from services.runtime.db import reading, writing
from services.runtime.log import Record
from services.runtime.settings import Settings
from services.segments.definitions import SegmentIn, save
from services.segments.handler import SegmentsHandler
from services.segments.tables import (LifecycleStage, LifecycleTransition, MembershipChange, SegmentMember,
                                      SegmentProfile, SegmentSequence)

SEGMENTS = {
    "pro": 'traits.plan = "pro"',
    "big": "orders >= 2",
    "pro_big": 'in_segment("pro") and in_segment("big")',
    "not_pro": 'not in_segment("pro")',
    "lead": 'stage = "lead"',
    "de": 'traits.country = "DE"',
}
# every column but wall-clock times (entered_at, at of membership changes)
COMPARED = {
    SegmentProfile: ["profile_id", "version", "traits", "computed", "stage", "consent"],
    LifecycleStage: ["profile_id", "stage", "since", "why"],
    LifecycleTransition: ["seq", "profile_id", "from_stage", "to_stage", "at", "why"],
    SegmentMember: ["segment_key", "profile_id"],
    MembershipChange: ["seq", "segment_key", "profile_id", "change"],
    SegmentSequence: ["id", "last"],
}
DAY = "2026-01-%02dT00:00:00.000Z"

snapshots = st.fixed_dictionaries({
    "profile_id": st.sampled_from(["p1", "p2", "p3"]),
    "version": st.integers(1, 8),
    "traits": st.fixed_dictionaries({}, optional={"plan": st.sampled_from(["pro", "team"]),
                                                  "country": st.sampled_from(["DE", "FR"]),
                                                  "email": st.just("a@example.com")}),
    "computed": st.fixed_dictionaries({}, optional={"orders": st.integers(0, 3)}),
    "consent": st.fixed_dictionaries({}, optional={"email": st.booleans()}),
    "changed": st.one_of(st.none(), st.lists(st.sampled_from(["plan", "country", "email", "orders"]),
                                             unique=True)),
    "last_seen": st.integers(1, 28).map(lambda d: DAY % d),
    "gone": st.sampled_from([None, None, None, None, "merged_into", "removed"]),
})


def record(offset: int, change: dict) -> Record:
    value = {k: v for k, v in change.items() if k != "gone"}
    if change["gone"] == "merged_into":
        value["merged_into"] = "p9"
    elif change["gone"] == "removed":
        value["removed"] = True
    return Record(topics.PROFILES_CHANGED, 0, offset, change["profile_id"], orjson.dumps(value), 0)


def applied(engine, records: list[Record], cuts: list[int]) -> tuple[dict, list]:
    """Tables and messages (wall-clock times left out) after `records`, cut into batches at `cuts`."""
    with writing(engine) as session:
        for model in COMPARED:
            session.execute(delete(model))
    handler, messages = SegmentsHandler(), []
    bounds = [0, *sorted(set(cuts)), len(records)]
    for start, end in zip(bounds, bounds[1:]):
        if start < end:
            with writing(engine) as session:
                outputs = handler.apply(session, records[start:end])
            messages += [(topic, m.key, {k: v for k, v in orjson.loads(m.value).items() if k != "timestamp"})
                         for topic, m in outputs]
    with reading(engine) as session:
        tables = {model.__tablename__: sorted(tuple(str(getattr(row, c)) for c in columns)
                                              for row in session.scalars(select(model)))
                  for model, columns in COMPARED.items()}
    return tables, messages


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    runtime = bootstrap_runtime(Settings(data_dir=tmp_path / "data", **({"database_url": url} if url else {})))
    migrations.upgrade(runtime.engine)
    with writing(runtime.engine) as session:
        for key, text in SEGMENTS.items():
            save(session, SegmentIn(key=key, name=key, text=text), existing=None)
    yield runtime.engine
    runtime.close()


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(changes=st.lists(snapshots, min_size=1, max_size=25), cuts=st.lists(st.integers(0, 25), max_size=4))
def test_a_batch_writes_what_one_record_at_a_time_writes(engine, changes, cuts):
    records = [record(offset, change) for offset, change in enumerate(changes)]
    one_at_a_time = applied(engine, records, list(range(len(records))))
    assert applied(engine, records, cuts) == one_at_a_time


def test_a_profile_that_exits_and_enters_again_in_one_batch_keeps_its_latest_entry(engine):
    changes = [{"profile_id": "p1", "version": v, "traits": {"plan": plan}, "computed": {}, "consent": {},
                "changed": ["plan"], "last_seen": DAY % 1, "gone": None}
               for v, plan in enumerate(["pro", "team", "pro"], start=1)]
    records, handler, outputs = [record(k, c) for k, c in enumerate(changes)], SegmentsHandler(), []
    for batch in (records[:1], records[1:]):  # a member before the batch, which exits and enters again
        with writing(engine) as session:
            outputs += handler.apply(session, batch)
    pro = [orjson.loads(m.value) for _, m in outputs if orjson.loads(m.value)["segment"] == "pro"]
    assert [m["event"] for m in pro] == ["Audience Entered", "Audience Exited", "Audience Entered"]
    assert pro[0]["seq"] < pro[1]["seq"] < pro[2]["seq"]
    with reading(engine) as session:
        member = session.get(SegmentMember, ("pro", "p1"))
    assert format_time(member.entered_at) == pro[2]["timestamp"]
