"""After catch-up: what the pipeline holds, compared with the generator's ground truth.

- the log: every acknowledged messageId is on events.raw (read from the start);
- profiles: per profile, the timeline holds exactly its acknowledged events, and the event
  count, orders and revenue equal the generator's (nothing lost, nothing counted twice);
- segments: the memberships equal a full recomputation of every segment over every
  profile as the profile service holds it now, in dependency order, and the segments
  projector's snapshot of each profile is the latest version.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

from kafka import TopicPartition
from sqlalchemy import select

from services.identity.domain.identifiers import Identifier
from services.identity.domain.resolution import new_profile_id
from services.profile.domain.traits import visible
from services.profile.handler import stored_traits
from services.profile.tables import Profile, ProfileConsent, ProfileEvent
from services.runtime import topics
from services.runtime.db import make_engine, reading
from services.runtime.log.kafka import kafka_consumer
from services.runtime.sealing import KeyStore, kids_of, unseal
from services.runtime.settings import Settings
from services.profile.applying import traits_by_profile
from services.segments.domain.conditions import ProfileFacts, evaluate
from services.segments.membership import load_index
from services.segments.tables import LifecycleStage, SegmentMember, SegmentProfile
from tests.faults.generator import Truth
from tests.support import caught_up, wait_until

CHAIN = (("identity", topics.EVENTS_RAW), ("profile", topics.EVENTS_RESOLVED),
         ("segments", topics.PROFILES_CHANGED))


def read_topic(settings: Settings, topic: str, timeout_s: float = 120) -> list:
    """Every record of a topic, from the start to each partition's high watermark."""
    name = settings.topic_prefix + topic
    consumer = kafka_consumer(settings.kafka_bootstrap_servers, group_id=None,
                              enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        partitions = wait_until(lambda: consumer.partitions_for_topic(name), 30, f"partitions of {name}")
        owned = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(owned)
        consumer.seek_to_beginning(*owned)
        records: list = []

        def at_end() -> bool:
            for batch in consumer.poll(timeout_ms=200, max_records=10_000).values():
                records.extend(batch)
            return all(consumer.highwater(tp) is not None and consumer.position(tp) >= consumer.highwater(tp)
                       for tp in owned)
        wait_until(at_end, timeout_s, f"the end of {name}")
        return records
    finally:
        consumer.close()


def wait_caught_up(settings: Settings, timeout_s: float) -> None:
    """Each projector in turn has applied every record of its input (read once its
    producer has caught up, so nothing more arrives)."""
    engine = make_engine(settings.database_url)
    try:
        for consumer, topic in CHAIN:
            total = len(read_topic(settings, topic))
            wait_until(lambda: caught_up(SimpleNamespace(engine=engine), consumer, total), timeout_s,
                       f"{consumer} to apply all {total} records of {topic}")
    finally:
        engine.dispose()


@dataclass
class Verdict:
    acknowledged: int = 0
    missing_from_log: int = 0
    lost: int = 0  # acknowledged events not on their profile's timeline
    double_counted: int = 0  # counted events or orders beyond the truth
    revenue_wrong: list = field(default_factory=list)  # profiles whose revenue differs
    membership_wrong: list = field(default_factory=list)  # (segment, profile, held, recomputed)
    membership_detail: list = field(default_factory=list)  # both sides' view of each of those
    stale_snapshots: int = 0
    members: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing_from_log or self.lost or self.double_counted or self.revenue_wrong
                    or self.membership_wrong or self.stale_snapshots)


def profile_of(user: str) -> str:
    return new_profile_id(Identifier("user_id", user))


def check(settings: Settings, truth: Truth) -> Verdict:
    verdict = Verdict(acknowledged=len(truth.acknowledged))
    on_log = message_ids(settings, [r.value for r in read_topic(settings, topics.EVENTS_RAW)])
    verdict.missing_from_log = len(truth.acknowledged.keys() - on_log)
    engine = make_engine(settings.database_url)
    try:
        with reading(engine) as session:
            check_profiles(session, truth, verdict)
            check_memberships(session, verdict)
    finally:
        engine.dispose()
    return verdict


def message_ids(settings: Settings, values: list[bytes]) -> set[str]:
    """The messageIds of events.raw values (ingest seals them: opened with the stored keys)."""
    keystore = KeyStore.for_settings(settings)
    try:
        keys = keystore.opening_keys({kid for value in values for kid in kids_of(value)})
        opened = [unseal(value, keys) for value in values]
    finally:
        keystore.engine.dispose()
    return {json.loads(value).get("messageId") for value in opened if value is not None}


def check_profiles(session, truth: Truth, verdict: Verdict) -> None:
    timeline: dict[str, set[str]] = {}
    for pid, mid in session.execute(select(ProfileEvent.profile_id, ProfileEvent.message_id)):
        timeline.setdefault(pid, set()).add(mid)
    profiles = {p.profile_id: p for p in session.scalars(select(Profile))}
    for mid, (user, _) in truth.acknowledged.items():
        verdict.lost += mid not in timeline.get(profile_of(user), set())
    for user, expected in truth.events.items():
        profile = profiles.get(profile_of(user))
        counted = profile.event_count if profile else 0
        orders = (profile.computed or {}).get("orders", 0) if profile else 0
        verdict.double_counted += max(0, counted - expected) + max(0, orders - truth.orders[user])
        revenue = round(((profile.computed or {}).get("revenue") or 0) * 100) if profile else 0
        if revenue != truth.revenue[user]:
            verdict.revenue_wrong.append((user, revenue, truth.revenue[user]))
    verdict.double_counted += sum(len(ids) for pid, ids in timeline.items()
                                  if pid not in {profile_of(u) for u in truth.events})


def check_memberships(session, verdict: Verdict) -> None:
    index, _ = load_index(session)
    held: set[tuple[str, str]] = set(session.execute(select(SegmentMember.segment_key, SegmentMember.profile_id)))
    verdict.members = len(held)
    stages = dict(session.execute(select(LifecycleStage.profile_id, LifecycleStage.stage)).all())
    seen = dict(session.execute(select(SegmentProfile.profile_id, SegmentProfile.version)).all())
    profiles = list(session.scalars(select(Profile)))
    consents = traits_by_profile(session, [p.profile_id for p in profiles], ProfileConsent)
    recomputed: set[tuple[str, str]] = set()
    for profile in profiles:
        pid = profile.profile_id
        verdict.stale_snapshots += seen.get(pid) != profile.version
        members: set[str] = set()
        for key in index.ordered:  # dependency order: in_segment reads what came before
            facts = ProfileFacts(visible(stored_traits(session, pid)), profile.computed or {}, stages.get(pid),
                                 {p: c.value for p, c in consents[pid].items()}, frozenset(members))
            if evaluate(index.conditions[key], facts):
                members.add(key)
                recomputed.add((key, pid))
    verdict.membership_wrong = sorted((k, p, (k, p) in held, (k, p) in recomputed)
                                      for k, p in held ^ recomputed)
    for key, pid, *_ in verdict.membership_wrong:  # what each side saw, to tell why
        snapshot = session.get(SegmentProfile, pid)
        profile = session.get(Profile, pid)
        verdict.membership_detail.append({
            "segment": key, "condition": index.conditions[key],
            "profile": {"version": profile and profile.version, "computed": profile and profile.computed,
                        "traits": visible(stored_traits(session, pid))},
            "segments_snapshot": snapshot and {"version": snapshot.version, "computed": snapshot.computed,
                                               "traits": snapshot.traits, "stage": snapshot.stage}})


def oracle_sees_faults(settings: Settings, truth: Truth) -> bool:
    """The check itself can fail: told of one phantom acknowledged order, it reports it lost
    (and missing from the log, and the revenue wrong); told of one event fewer than the
    generator acknowledged, it reports one double count."""
    (mid, (user, cents)), phantom = next(iter(truth.acknowledged.items())), "phantom-order"
    more = replace(truth, events=truth.events + Counter({user: 1}), orders=truth.orders + Counter({user: 1}),
                   revenue=truth.revenue + Counter({user: 1234}),
                   acknowledged={**truth.acknowledged, phantom: (user, 1234)})
    fewer = replace(truth, events=truth.events - Counter({user: 1}),
                    orders=truth.orders - Counter({user: 1 if cents is not None else 0}),
                    revenue=truth.revenue - Counter({user: cents or 0}),
                    acknowledged={m: v for m, v in truth.acknowledged.items() if m != mid})
    seen_more, seen_fewer = check(settings, more), check(settings, fewer)
    return (seen_more.lost == seen_more.missing_from_log == 1 and len(seen_more.revenue_wrong) == 1
            and seen_fewer.double_counted >= 1)
