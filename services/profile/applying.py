"""Applies a run of resolved events to profiles with a few set-based statements.

One statement inserts the run's timeline rows and answers which were new (a
redelivered event is not new, so nothing is counted twice); counts and traits are
then updated for the new ones only, with traits merged in memory by last write wins.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.profile.domain.traits import TraitValue, traits_of, winners
from services.profile.tables import Profile, ProfileAlias, ProfileEvent, ProfileIdentity, ProfileTrait
from services.runtime.clock import parse_time
from services.runtime.db import insert_new_rows, upsert
from services.runtime.envelope import as_object

TRAIT_COLUMNS = ("value", "at", "message_id", "source")


def survivors_of(session: Session, profile_ids: set[str]) -> dict[str, str]:
    aliases = dict(session.execute(select(ProfileAlias.absorbed, ProfileAlias.survivor)
                                   .where(ProfileAlias.absorbed.in_(profile_ids))).all())
    return {p: aliases.get(p, p) for p in profile_ids}


def traits_by_profile(session: Session, profile_ids) -> dict[str, dict[str, TraitValue]]:
    found: dict[str, dict[str, TraitValue]] = defaultdict(dict)
    for r in session.scalars(select(ProfileTrait).where(ProfileTrait.profile_id.in_(list(profile_ids)))):
        found[r.profile_id][r.name] = TraitValue(r.value, r.at, r.message_id, r.source)
    return found


def write_traits(session: Session, writes: dict[tuple[str, str], TraitValue]) -> None:
    upsert(session, ProfileTrait, [{"profile_id": p, "name": n, "value": t.value, "at": t.at,
                                    "message_id": t.message_id, "source": t.source}
                                   for (p, n), t in writes.items()],
           keys=["profile_id", "name"], update=TRAIT_COLUMNS)


def channel_of(event: dict) -> str | None:
    channel = as_object(event.get("context")).get("channel")
    return channel[:32] if isinstance(channel, str) and channel else None


def timeline_row(profile_id: str, event: dict) -> dict:
    return {"profile_id": profile_id, "message_id": event["messageId"], "type": event["type"],
            "name": event.get("event"), "timestamp": parse_time(event["timestamp"]),
            "properties": as_object(event.get("properties")), "source": event.get("sourceId"),
            "channel": channel_of(event)}


def apply_events(session: Session, messages: list[dict]) -> dict[str, set[str]]:
    """Apply resolved events; answers the profiles they changed, each with its changed trait names."""
    owner = survivors_of(session, {m["profile_id"] for m in messages})
    rows = {}
    for m in messages:  # first copy wins within the run
        rows.setdefault((owner[m["profile_id"]], m["event"]["messageId"]), (timeline_row(owner[m["profile_id"]], m["event"]), m))
    new = insert_new_rows(session, ProfileEvent, [row for row, _ in rows.values()], ["profile_id", "message_id"])
    upsert(session, ProfileIdentity, list({(i["type"], i["value"], owner[m["profile_id"]]): {
        "type": i["type"], "value": i["value"], "profile_id": owner[m["profile_id"]]}
        for m in messages for i in m.get("identifiers", [])}.values()), keys=["type", "value", "profile_id"])
    fresh = [(row, m) for key, (row, m) in rows.items() if key in new]
    if not fresh:
        return {}
    _count(session, [row for row, _ in fresh])
    changed = {row["profile_id"]: set() for row, _ in fresh}
    for profile_id, name in _merge_traits(session, fresh):
        changed[profile_id].add(name)
    return changed


def _count(session: Session, rows: list[dict]) -> None:
    ids = {r["profile_id"] for r in rows}
    profiles = {p.profile_id: p for p in session.scalars(select(Profile).where(Profile.profile_id.in_(ids)))}
    for row in rows:
        at: datetime = row["timestamp"]
        profile = profiles.get(row["profile_id"])
        if profile is None:
            profile = profiles[row["profile_id"]] = Profile(
                profile_id=row["profile_id"], first_seen=at, last_seen=at, event_count=0, version=0, computed={})
            session.add(profile)
        profile.event_count += 1
        profile.first_seen, profile.last_seen = min(profile.first_seen, at), max(profile.last_seen, at)
        profile.version += 1


def _merge_traits(session: Session, fresh: list[tuple[dict, dict]]) -> set[tuple[str, str]]:
    """Last write wins per trait; answers (profile, trait) pairs whose value changed."""
    current = traits_by_profile(session, {row["profile_id"] for row, _ in fresh})
    before = {pid: {n: t.value for n, t in traits.items()} for pid, traits in current.items()}
    writes: dict[tuple[str, str], TraitValue] = {}
    for row, message in fresh:
        event, pid = message["event"], row["profile_id"]
        incoming = {name: TraitValue(value, row["timestamp"], event["messageId"], event.get("sourceId"))
                    for name, value in traits_of(event).items()}
        for name, value in winners(current[pid], incoming).items():
            current[pid][name] = writes[(pid, name)] = value
    write_traits(session, writes)
    return {(pid, name) for pid, name in writes if before.get(pid, {}).get(name) != writes[(pid, name)].value}
