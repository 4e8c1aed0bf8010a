"""The profile handler's arithmetic on each database: merges, duplicates, what changed."""
import json
import uuid

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from sqlalchemy import select

from services import migrations
from services.profile.applying import read_profiles, survivors_of, traits_by_profile
from services.profile.computation import Computation, timelines_of
from services.profile.domain.summary import summarise
from services.profile.domain.traits import visible
from services.profile.domain.computed import ComputedTrait
from services.profile.handler import ProfileHandler
from services.profile.tables import Profile
from services.runtime.db import make_engine, reading, writing
from services.runtime.log import Record

ORDERS = ComputedTrait(name="order_revenue", function="sum", event="Order Completed", property="revenue")


def resolved(profile_id: str, message_id: str, day: int, revenue=None, traits=None) -> dict:
    at = f"2026-02-{day:02d}T10:00:00Z"
    event = {"type": "track", "event": "Order Completed", "messageId": message_id, "timestamp": at,
             "receivedAt": at, "userId": profile_id, "properties": {"revenue": revenue, "currency": "USD"},
             "context": {"traits": traits or {}}}
    return {"kind": "event", "profile_id": profile_id, "identifiers": [{"type": "user_id", "value": profile_id}],
            "event": event}


def merge(survivor: str, absorbed: str, seq: int | None = None) -> dict:
    return {"kind": "merge", "survivor": survivor, "absorbed": absorbed} | ({"seq": seq} if seq else {})


@pytest.fixture
def apply(settings):
    engine = make_engine(settings.database_url)
    migrations.upgrade(engine)
    handler = ProfileHandler(Computation(Computation.from_settings(settings).crm, [ORDERS]))
    offset = iter(range(10_000))

    def apply_batch(*messages) -> list[dict]:
        with writing(engine) as session:
            outputs = handler.apply(session, [Record("events.resolved", 0, next(offset), None,
                                                     json.dumps(m).encode(), 0) for m in messages])
        return [json.loads(message.value) for _, message in outputs]
    apply_batch.engine = engine
    yield apply_batch
    engine.dispose()


def profile(engine, profile_id):
    with reading(engine) as session:
        return session.scalars(select(Profile).where(Profile.profile_id == profile_id)).one_or_none()


def test_a_merge_adds_sums_takes_the_earliest_first_and_counts_a_shared_event_once(apply):
    apply(resolved("a", "m1", 1, 10), resolved("a", "shared", 3, 5))
    apply(resolved("b", "m2", 2, 20), resolved("b", "shared", 3, 5))  # one event seen under both ids
    out = apply(merge("b", "a"))
    survivor = profile(apply.engine, "b")
    assert profile(apply.engine, "a") is None
    assert (survivor.event_count, survivor.computed["order_revenue"], survivor.computed["orders"]) == (3, 35.0, 3)
    assert survivor.first_seen.day == 1  # the earliest of both
    assert {"profile_id": "a", "merged_into": "b"} in out
    again = apply(merge("b", "a"), resolved("a", "m1", 1, 10))  # redelivered: nothing moves twice
    assert profile(apply.engine, "b").computed["order_revenue"] == 35.0 and not [o for o in again if o.get("merged_into")]


def test_a_change_names_what_changed_so_readers_reevaluate_only_that(apply):
    first = apply(resolved("c", "m1", 1, 10, {"plan": "pro", "city": "Oslo"}))
    assert {"plan", "city", "order_revenue", "orders"} <= set(first[0]["changed"])
    same_plan = apply(resolved("c", "m2", 2, None, {"plan": "pro"}))
    assert "plan" not in same_plan[0]["changed"]  # a newer write of the same value changes nothing
    assert "orders" in same_plan[0]["changed"]
    late = apply(resolved("c", "m0", 1, None, {"city": "Bergen"}))  # older than m1: loses
    assert "city" not in late[0]["changed"]


def test_a_redelivered_event_changes_nothing(apply):
    apply(resolved("d", "m1", 1, 10))
    assert apply(resolved("d", "m1", 1, 10)) == []
    assert profile(apply.engine, "d").event_count == 1


def split(profile_id: str, source: str, parts: dict, aliases: dict, message_ids: list, seq=None) -> dict:
    return {"kind": "split", "profile_id": profile_id, "from": source, "parts": parts, "removed": [],
            "aliases": aliases, "message_ids": message_ids, "cause": "operator"} | ({"seq": seq} if seq else {})


def republished(message: dict, profile_id: str, version: int = 1) -> dict:
    return message | {"profile_id": profile_id, "reresolved": True, "version": version}


def test_after_an_unmerge_values_equal_those_of_never_having_merged(apply, settings):
    a_events = [resolved("a", "m1", 1, 10, {"plan": "pro"}), resolved("a", "m2", 3, 5)]
    b_events = [resolved("b", "m3", 2, 20, {"plan": "free", "city": "Oslo"})]
    apply(*a_events)
    apply(*b_events)
    apply(merge("a", "b"))  # the wrong link
    assert profile(apply.engine, "a").computed["order_revenue"] == 35.0
    # identity takes it back: a split copy per profile involved, then b's event again, version 1
    parts = {"a": [{"type": "user_id", "value": "a"}], "b": [{"type": "user_id", "value": "b"}]}
    out = apply(split("a", "a", parts, {"b": None}, ["m3"]), split("b", "a", parts, {"b": None}, ["m3"]),
                *[republished(e, "b") for e in b_events])
    a, b = profile(apply.engine, "a"), profile(apply.engine, "b")
    assert (a.event_count, a.computed["order_revenue"], b.event_count, b.computed["order_revenue"]) == (2, 15.0, 1, 20.0)
    snapshots = {o["profile_id"]: o for o in out if "traits" in o}
    assert snapshots["a"]["traits"] == {"plan": "pro"} and snapshots["b"]["traits"] == {"plan": "free", "city": "Oslo"}
    assert snapshots["a"]["changed"] is None  # re-evaluate everything that reads a
    # the old copy of m3 (version 0, keyed by a) arriving late changes nothing
    assert apply(b_events[0] | {"profile_id": "a"}) == []
    assert profile(apply.engine, "b").event_count == 1


def reads_as(engine, profile_id: str) -> str:
    with reading(engine) as session:
        return survivors_of(session, {profile_id})[profile_id]


def test_a_correction_older_than_one_applied_is_not_applied(apply):
    """Identity numbers its merges and splits (`seq`); their copies go to several partitions,
    so a split (2) may be consumed after the merge (3) that undid it: b must read as a."""
    apply(resolved("a", "m1", 1, 10), resolved("b", "m2", 2, 20))
    apply(merge("a", "b", seq=1))
    apply(merge("a", "b", seq=3))  # b reads as a already: nothing moves, but 3 is noted
    parts = {"a": [{"type": "user_id", "value": "a"}], "b": [{"type": "user_id", "value": "b"}]}
    apply(split("b", "a", parts, {"b": None}, [], seq=2))
    assert reads_as(apply.engine, "b") == "a"
    apply(split("b", "a", parts, {"b": None}, [], seq=4))  # a newer one applies
    assert reads_as(apply.engine, "b") == "b"


def test_a_merge_of_an_id_that_reads_as_another_profile_points_it_at_the_survivor(apply):
    apply(resolved("a", "m1", 1, 10), resolved("b", "m2", 2, 20), resolved("c", "m3", 3, 30))
    apply(merge("a", "b", seq=1))
    out = apply(merge("c", "b", seq=2))  # identity took b back and gave it to c: the split comes later
    assert reads_as(apply.engine, "b") == "c" and {"profile_id": "b", "merged_into": "c"} in out
    assert profile(apply.engine, "a").event_count == 2  # what b brought to a stays until moved


def test_a_profile_whose_every_event_moved_away_is_removed(apply):
    apply(resolved("c", "m1", 1, 10))
    out = apply(republished(resolved("c", "m1", 1, 10), "d"))
    assert {"profile_id": "c", "removed": True} in out and profile(apply.engine, "c") is None
    assert profile(apply.engine, "d").event_count == 1


@examples(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(st.sampled_from("pq"), st.integers(1, 9), st.sampled_from(["plan", "city"]),
                                   st.sampled_from(["pro", "free", None])), min_size=1, max_size=6), max_size=4))
def test_each_announced_snapshot_holds_the_traits_as_stored(apply, batches):
    """The snapshot reuses the traits the batch has just merged instead of reading them again:
    they must be the stored ones, late and redelivered events included."""
    run = uuid.uuid4().hex[:8]
    for batch in batches:
        outputs = apply(*(resolved(f"{run}-{who}", f"{run}-{who}-{day}-{name}", day, None, {name: value})
                          for who, day, name, value in batch))
        with reading(apply.engine) as session:
            for snapshot in (o for o in outputs if "traits" in o):
                stored = traits_by_profile(session, [snapshot["profile_id"]])[snapshot["profile_id"]]
                assert snapshot["traits"] == visible(stored)


def _stored(engine, run: str) -> dict:
    """Each profile of a run as stored, without the run's prefix and the version."""
    with reading(engine) as session:
        rows = session.scalars(select(Profile).where(Profile.profile_id.startswith(run))).all()
        traits = traits_by_profile(session, [p.profile_id for p in rows])
        return {p.profile_id[len(run):]: (p.event_count, p.first_seen, p.last_seen, p.computed,
                                          visible(traits[p.profile_id])) for p in rows}


STEPS = st.lists(st.one_of(
    st.tuples(st.just("event"), st.sampled_from("pqr"), st.integers(1, 9), st.sampled_from(["pro", "free"])),
    st.tuples(st.just("merge"), st.sampled_from("pqr"), st.sampled_from("pqr"))), min_size=1, max_size=12)


@examples(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(STEPS, st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_events_and_merges_in_one_batch_end_as_applied_one_at_a_time(apply, steps, cuts):
    """A batch reads and writes its profiles' rows in one statement each, around merges that
    load them through the ORM: the result must be that of one message a batch, and every
    profile's announced versions must keep rising (readers drop an older snapshot)."""
    def messages(run: str) -> list[dict]:
        """Merges as identity publishes them: of two profiles not absorbed yet."""
        absorbed, out = set(), []
        for kind, who, *rest in steps:
            if kind == "event":
                out.append(resolved(f"{run}{who}", f"{run}{who}-{rest[0]}", rest[0], rest[0], {"plan": rest[1]}))
            elif who != rest[0] and not {who, rest[0]} & absorbed:
                absorbed.add(rest[0])
                out.append(merge(f"{run}{who}", f"{run}{rest[0]}"))
        return out
    batched, single = (uuid.uuid4().hex[:8] for _ in range(2))
    announced: dict[str, int] = {}
    remaining = messages(batched)
    for cut in cuts * len(remaining):
        if not remaining:
            break
        for snapshot in (o for o in apply(*remaining[:cut]) if "version" in o):
            assert snapshot["version"] > announced.get(snapshot["profile_id"], -1)
            announced[snapshot["profile_id"]] = snapshot["version"]
        remaining = remaining[cut:]
    for message in messages(single):
        apply(message)
    assert _stored(apply.engine, batched) == _stored(apply.engine, single)


@examples(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(st.sampled_from("pq"), st.integers(1, 9), st.sampled_from([None, 5, 7.25])),
                         min_size=1, max_size=6), min_size=1, max_size=4))
def test_a_summary_kept_batch_by_batch_is_the_one_folded_from_the_stored_timeline(apply, settings, batches):
    """A batch of events only folds its new events into each profile's stored summary (late
    and redelivered events included): it must be what folding the whole timeline gives."""
    run = uuid.uuid4().hex[:8]
    for batch in batches:
        apply(*(resolved(f"{run}-{who}", f"{run}-{who}-{day}", day, revenue) for who, day, revenue in batch))
    crm = Computation.from_settings(settings).crm
    with reading(apply.engine) as session:
        profiles = read_profiles(session, {f"{run}-{who}" for batch in batches for who, *_ in batch})
        kept = {pid: p.summary for pid, p in profiles.items()}
        timelines = timelines_of(session, profiles)
    assert kept == {pid: summarise(timelines[pid], [ORDERS], crm) for pid in profiles}


CHANGES = st.lists(st.one_of(
    st.tuples(st.just("event"), st.sampled_from("pqr"), st.integers(1, 6), st.sampled_from([None, 5, 7.25])),
    st.tuples(st.just("move"), st.sampled_from("pqr"), st.integers(1, 6)),
    st.tuples(st.just("merge"), st.sampled_from("pqr"), st.sampled_from("pqr"))), min_size=1, max_size=14)


@examples(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(CHANGES, st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_summaries_stay_those_of_the_stored_timelines_when_a_batch_mixes_moves_and_merges(apply, settings,
                                                                                          changes, cuts):
    """A batch folds only each profile's new events into its summary, unless its timeline gained
    or lost others' events (a merge, a move): that profile's whole timeline is folded again. A
    profile must never keep a moved event in its summary, nor miss a merged one."""
    run, absorbed, messages = uuid.uuid4().hex[:8], set(), []
    for version, (kind, who, *rest) in enumerate(changes, start=1):
        if kind == "event":
            messages.append(resolved(f"{run}{who}", f"{run}-m{rest[0]}", rest[0], rest[1]))
        elif kind == "move":  # identity re-resolved that event to `who`: a newer version of it
            messages.append(republished(resolved(f"{run}{who}", f"{run}-m{rest[0]}", rest[0], 3), f"{run}{who}",
                                        version))
        elif who != rest[0] and not {who, rest[0]} & absorbed:
            absorbed.add(rest[0])
            messages.append(merge(f"{run}{who}", f"{run}{rest[0]}"))
    for cut in cuts * len(messages):
        if messages:
            apply(*messages[:cut])
            messages = messages[cut:]
    crm = Computation.from_settings(settings).crm
    with reading(apply.engine) as session:
        stored = session.scalars(select(Profile.profile_id).where(Profile.profile_id.startswith(run))).all()
        profiles = read_profiles(session, stored)
        timelines = timelines_of(session, profiles)
    assert {pid: p.summary for pid, p in profiles.items()} == \
        {pid: summarise(timelines.get(pid, []), [ORDERS], crm) for pid in profiles}
