"""The backfill, set-based or in Python, leaves the membership, history and messages that
evaluating every profile in Python gives; on SQLite and on PostgreSQL."""
from __future__ import annotations

import random
import threading
from datetime import datetime, timezone

import orjson
import pytest
from sqlalchemy import func, insert, select, text

from services import migrations
from services.runtime import topics
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.db import writing
from services.runtime.log import Record, publish_all
from services.runtime.settings import Settings
from services.segments.backfill import OFFSET_BITS, SegmentBackfill, _advance
from services.segments.definitions import SegmentIn, save
from services.segments.domain.conditions import ProfileFacts, evaluate
from services.segments.handler import SegmentsHandler
from services.segments.membership import load_index
from services.segments.membership_sql import _messages
from services.segments.tables import MembershipChange, Segment, SegmentMember, SegmentProfile
from tests.backends import unavailable
from tests.support import wait_until

DEFINITIONS = {  # "fancy" reads "de" (dependency order); "odd" has a name SQLite paths can't spell
    "de": 'traits.country = "DE" and not traits.plan = "free"',
    "fancy": 'in_segment("de") or (orders >= 2 and stage = "customer") or consent.email',
}
ODD = {"trait": "plän", "op": "=", "value": "pro"}


@pytest.fixture(params=["sqlite", "postgresql"])
def runtime(request, tmp_path):
    url = ""
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server_url")
        if isinstance(server, Exception):
            unavailable(server)
        url = request.getfixturevalue("postgres_url")
    runtime = bootstrap_runtime(Settings(data_dir=tmp_path / "data", database_url=url))
    migrations.upgrade(runtime.engine)
    yield runtime
    runtime.close()


def seed(runtime, count: int) -> None:
    pick = random.Random(7).choice
    rows = [{"profile_id": f"p{i:04}", "version": 1, "stage": pick([None, "lead", "customer"]),
             "traits": {"country": pick(["DE", "FR", 1]), "plan": pick(["pro", "free", None]), "plän": pick(["pro", "x"])},
             "computed": {"orders": pick([0, 2, 3, "2"])}, "consent": {"email": pick([True, False, "yes"])}}
            for i in range(count)]
    with writing(runtime.engine) as session:
        session.execute(insert(SegmentProfile), rows)


def define(runtime, key: str, **form) -> None:
    with writing(runtime.engine) as session:
        save(session, SegmentIn(key=key, name=key, **form), existing=session.get(Segment, key))


def backfill(runtime, **chunks) -> int:
    worker, steps = SegmentBackfill(runtime, **chunks), 0
    while worker.step():
        steps += 1
    return steps


def expected_members(runtime) -> dict[str, set[str]]:
    with writing(runtime.engine) as session:
        index, _ = load_index(session)
        profiles = list(session.scalars(select(SegmentProfile)))
    found: dict[str, set[str]] = {key: set() for key in index.ordered}
    for profile in profiles:
        mine: set[str] = set()
        for key in index.ordered:
            if evaluate(index.conditions[key], ProfileFacts(profile.traits, profile.computed, profile.stage,
                                                            profile.consent, frozenset(mine))):
                mine.add(key)
                found[key].add(profile.profile_id)
    return found


def stored(runtime) -> tuple[dict[str, set[str]], list[tuple]]:
    with writing(runtime.engine) as session:
        members: dict[str, set[str]] = {}
        for key, profile in session.execute(select(SegmentMember.segment_key, SegmentMember.profile_id)):
            members.setdefault(key, set()).add(profile)
        history = session.execute(select(MembershipChange.seq, MembershipChange.segment_key,
                                         MembershipChange.profile_id, MembershipChange.change)
                                  .order_by(MembershipChange.seq)).all()
    return members, [tuple(h) for h in history]


def published(runtime) -> list[tuple]:
    consumer = runtime.log.consumer("test-reader", [topics.SEGMENTS_MEMBERSHIP], lambda _tps: {})
    records = []
    while batch := consumer.poll(10_000, 0.05):
        records += batch
    return sorted((r.json()["seq"], r.json()["segment"], r.json()["profile_id"], r.json()["event"]) for r in records)


def replayed(history: list[tuple]) -> dict[str, set[str]]:
    """Membership by applying the history in seq order; each change must flip membership."""
    members: dict[str, set[str]] = {}
    for _seq, key, profile, change in history:
        current = members.setdefault(key, set())
        assert (profile in current) == (change == "exited")
        current ^= {profile}
    return {k: v for k, v in members.items() if v}


@pytest.mark.parametrize("chunk_sql", [7, 1000])
def test_backfills_give_python_evaluations_membership_history_and_messages(runtime, chunk_sql):
    seed(runtime, 60)
    define(runtime, "de", text=DEFINITIONS["de"])
    define(runtime, "odd", condition=ODD)  # doesn't compile: evaluated in Python
    backfill(runtime, chunk=5, chunk_sql=chunk_sql)
    define(runtime, "fancy", text=DEFINITIONS["fancy"])
    define(runtime, "de", text='traits.country = "DE" and traits.plan = "pro"')  # an edit: exits, "fancy" after it
    steps = backfill(runtime, chunk=5, chunk_sql=chunk_sql)

    members, history = stored(runtime)
    assert members == {k: v for k, v in expected_members(runtime).items() if v}
    assert replayed(history) == members and [h[0] for h in history] == list(range(1, len(history) + 1))
    assert any(h[3] == "exited" for h in history)
    assert published(runtime) == [(seq, key, profile, f"Audience {change.title()}")
                                  for seq, key, profile, change in history]
    assert steps >= 60 // chunk_sql + 1


def test_a_set_based_chunk_waits_for_a_live_evaluation_under_way(runtime):
    """A live batch that takes a profile out of a new segment's condition, still uncommitted
    when the backfill starts: the backfill must not enter it from the older snapshot."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises every writer: nothing runs concurrently to order")
    seed(runtime, 20)
    define(runtime, "pro", text='traits.plan = "pro"')
    victim = next(r for r in _profiles(runtime) if r.traits.get("plan") == "pro").profile_id
    change = {"profile_id": victim, "version": 2, "traits": {"plan": "free"}, "computed": {}, "consent": {},
              "changed": ["plan"], "last_seen": "2026-01-01T00:00:00Z"}
    with writing(runtime.engine) as live:
        SegmentsHandler().apply(live, [Record(topics.PROFILES_CHANGED, 0, 0, victim, orjson.dumps(change), 0)])
        worker = threading.Thread(target=backfill, args=(runtime,))
        worker.start()
        wait_until(lambda: _waiting_on_a_lock(runtime), what="the backfill waiting for the live batch")
    worker.join(timeout=60)
    members, history = stored(runtime)
    assert victim not in members["pro"] and members == {k: v for k, v in expected_members(runtime).items() if v}
    assert replayed(history) == members


def _profiles(runtime) -> list[SegmentProfile]:
    with writing(runtime.engine) as session:
        return list(session.scalars(select(SegmentProfile).order_by(SegmentProfile.profile_id)))


def _waiting_on_a_lock(runtime) -> bool:
    with runtime.engine.connect() as conn:
        return bool(conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                     "AND datname = current_database()")))


def _postgres_only(runtime) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's backfill goes in profile id order: rows never move")


def _autocommit(runtime, statement: str, **params):
    with runtime.engine.connect() as conn:
        result = conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(statement), params)
        return result.all() if result.returns_rows else []


def _cursor_block(runtime, key: str) -> int:
    with writing(runtime.engine) as session:
        return session.get(Segment, key).backfill_tid >> OFFSET_BITS


def _converged(runtime) -> None:
    """Members as evaluating every profile in Python gives; each change flips membership (so
    nobody entered twice); one message per history row."""
    members, history = stored(runtime)
    assert members == {k: v for k, v in expected_members(runtime).items() if v}
    assert replayed(history) == members
    assert published(runtime) == [(seq, key, profile, f"Audience {change.title()}")
                                  for seq, key, profile, change in history]


def test_a_row_moved_behind_the_pass_is_still_evaluated(runtime):
    """PostgreSQL reads profiles in heap order. A change that touches nothing a segment reads
    isn't evaluated live for it, yet moves the row, maybe into blocks the pass has read: the
    last chunk evaluates every row written since the save."""
    _postgres_only(runtime)
    seed(runtime, 3000)
    define(runtime, "pro", text='traits.plan = "pro"')
    worker = SegmentBackfill(runtime, chunk_sql=1000)
    worker.step()
    passed = _cursor_block(runtime, "pro")
    _autocommit(runtime, "DELETE FROM segment_profiles WHERE ctid < '(1,0)' "
                         "AND traits->>'plan' IS DISTINCT FROM 'pro'")
    _autocommit(runtime, "VACUUM segment_profiles")  # room in block 0, behind the pass, for the rows below
    ahead = [p for (p,) in _autocommit(runtime, "SELECT profile_id FROM segment_profiles WHERE ctid >= CAST(:t AS tid) "
                                                "AND traits->>'plan' = 'pro' ORDER BY ctid DESC",
                                       t=f"({passed + 1},0)")]
    moved = []
    for profile in ahead[:20]:  # a trait "pro" doesn't read, as the live projector would write it
        (tid,), = _autocommit(runtime, "UPDATE segment_profiles SET version = version + 1, traits = traits || "
                                       "'{\"seen\": 1}' WHERE profile_id = :p RETURNING ctid::text", p=profile)
        if int(tid.strip("()").split(",")[0]) < passed:
            moved.append(profile)
    assert moved, "no row moved behind the pass: the test doesn't test anything"
    while worker.step():
        pass
    _converged(runtime)
    assert set(moved) <= stored(runtime)[0]["pro"]


def test_a_profile_entered_live_during_the_pass_is_entered_once(runtime):
    """A profile the pass hasn't reached enters live; the pass must not enter it again."""
    seed(runtime, 300)
    define(runtime, "pro", text='traits.plan = "pro"')
    worker = SegmentBackfill(runtime, chunk_sql=50)
    worker.step()
    order = "ctid" if runtime.engine.dialect.name == "postgresql" else "profile_id"
    with writing(runtime.engine) as session:  # the last profile the pass reaches
        victim = session.execute(text(f"SELECT profile_id, version FROM segment_profiles WHERE traits->>'plan' "
                                      f"IS DISTINCT FROM 'pro' ORDER BY {order} DESC LIMIT 1")).one()
    change = {"profile_id": victim[0], "version": victim[1] + 1, "traits": {"plan": "pro"}, "computed": {},
              "consent": {}, "changed": ["plan"], "last_seen": "2026-01-01T00:00:00Z"}
    with writing(runtime.engine) as live:
        publish_all(runtime.log, SegmentsHandler().apply(
            live, [Record(topics.PROFILES_CHANGED, 0, 0, victim[0], orjson.dumps(change), 0)]))
    assert victim[0] in stored(runtime)[0]["pro"]
    while worker.step():
        pass
    _converged(runtime)


def test_a_table_rewritten_during_the_pass_is_read_again(runtime):
    """VACUUM FULL (or CLUSTER) moves every row: the heap-order pass starts again."""
    _postgres_only(runtime)
    seed(runtime, 3000)
    define(runtime, "pro", text='traits.plan = "pro"')
    worker = SegmentBackfill(runtime, chunk_sql=1000)
    worker.step()
    _autocommit(runtime, "DELETE FROM segment_profiles WHERE ctid < '(2,0)' "  # so the rows do move
                         "AND traits->>'plan' IS DISTINCT FROM 'pro'")
    _autocommit(runtime, "VACUUM FULL segment_profiles")
    while worker.step():
        pass
    _converged(runtime)
    with writing(runtime.engine) as session:
        segment = session.get(Segment, "pro")
        count = session.scalar(select(func.count()).select_from(SegmentProfile))
        assert segment.backfill_done == count  # counted once, from the new start


@pytest.mark.parametrize("per_block", [1, 7.5, 50, 291, 100_000])
def test_heap_chunks_follow_one_another_without_gaps_or_overlaps(per_block):
    position, seen = (0, 0), []
    for rows in [1, 3, 7, 100, 1000, 5]:
        end = _advance(*position, rows, per_block)
        assert end > position and end[1] < 1 << OFFSET_BITS
        seen.append(end)
        position = end
    assert seen == sorted(set(seen))


def test_messages_are_the_bytes_of_the_json_object():
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    for (topic, message), (seq, profile) in zip(_messages("vip", "Audience Entered", [(7, 'p"1é'), (12, "p2")], at),
                                                [(7, 'p"1é'), (12, "p2")]):
        assert topic == topics.SEGMENTS_MEMBERSHIP and message.key == profile
        assert message.value == orjson.dumps({"type": "track", "event": "Audience Entered", "profile_id": profile,
                                              "segment": "vip", "seq": seq, "timestamp": "2026-01-02T03:04:05.678901Z"})
