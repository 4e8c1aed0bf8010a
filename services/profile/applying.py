"""Applies a run of resolved events to profiles with a few set-based statements.

One statement inserts the run's timeline rows and answers which were new (a
redelivered event is not new, so nothing is counted twice); counts and traits are
then updated for the new ones only, with traits merged in memory by last write wins.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from services.profile.domain.timeline import TimelineEvent
from services.profile.domain.traits import TraitValue, consent_of, traits_of, winners
from services.profile.tables import (Profile, ProfileAlias, ProfileConsent, ProfileEvent, ProfileIdentity,
                                     ProfileTrait)
from services.runtime.clock import parse_time
from services.runtime.db import core_rows, each_in, insert_new_rows, upsert
from services.runtime.envelope import as_object

TRAIT_COLUMNS = ("value", "at", "message_id", "source")


@dataclass(slots=True)
class ProfileState:
    """A profile's row as a batch changes it: read in one statement and written back in one
    (the ORM's unit of work wrote a batch's profiles one UPDATE each, twice: a quarter of
    the projector's time on PostgreSQL)."""

    profile_id: str
    first_seen: datetime
    last_seen: datetime
    event_count: int
    version: int
    computed: dict[str, Any]
    due_at: datetime | None
    summary: dict[str, Any] | None  # running aggregates (domain/summary.py); None: fold the timeline


PROFILE_COLUMNS = tuple(f.name for f in fields(ProfileState))


def read_profiles(session: Session, profile_ids: Iterable[str]) -> dict[str, ProfileState]:
    columns = [getattr(Profile, name) for name in PROFILE_COLUMNS]
    return {row[0]: ProfileState(*row) for condition in each_in(session, Profile.profile_id, profile_ids)
            for row in core_rows(session, select(*columns).where(condition))}


def write_profiles(session: Session, profiles: Iterable[ProfileState]) -> None:
    profiles = list(profiles)
    upsert(session, Profile, [{name: getattr(p, name) for name in PROFILE_COLUMNS} for p in profiles],
           keys=["profile_id"], update=PROFILE_COLUMNS[1:])
    for profile in profiles:  # a copy the ORM loaded earlier in the batch (a merge's) reads it again
        loaded = session.identity_map.get(session.identity_key(Profile, profile.profile_id))
        if loaded is not None:
            session.expire(loaded)


def survivors_of(session: Session, profile_ids: set[str]) -> dict[str, str]:
    aliases = {absorbed: survivor for condition in each_in(session, ProfileAlias.absorbed, profile_ids)
               for absorbed, survivor in core_rows(session, select(ProfileAlias.absorbed, ProfileAlias.survivor)
                                                   .where(condition))}
    return {p: aliases.get(p, p) for p in profile_ids}


def traits_by_profile(session: Session, profile_ids, model=ProfileTrait) -> dict[str, dict[str, TraitValue]]:
    """Last-write-wins values (traits, or consent with model=ProfileConsent) per profile."""
    found: dict[str, dict[str, TraitValue]] = defaultdict(dict)
    columns = (model.profile_id, model.name, model.value, model.at, model.message_id, model.source)
    for condition in each_in(session, model.profile_id, profile_ids):  # rows, not ORM objects: thousands
        for profile_id, name, *value in core_rows(session, select(*columns).where(condition)):
            found[profile_id][name] = TraitValue(*value)
    return found


def write_traits(session: Session, writes: dict[tuple[str, str], TraitValue], model=ProfileTrait) -> None:
    upsert(session, model, [{"profile_id": p, "name": n, "value": t.value, "at": t.at,
                             "message_id": t.message_id, "source": t.source} for (p, n), t in writes.items()],
           keys=["profile_id", "name"], update=TRAIT_COLUMNS)


def channel_of(event: dict) -> str | None:
    channel = as_object(event.get("context")).get("channel")
    return channel[:32] if isinstance(channel, str) and channel else None


def timeline_row(profile_id: str, event: dict, version: int) -> dict:
    return {"profile_id": profile_id, "message_id": event["messageId"], "type": event["type"],
            "name": event.get("event"), "timestamp": parse_time(event["timestamp"]),
            "properties": as_object(event.get("properties")), "source": event.get("sourceId"),
            "channel": channel_of(event), "traits": traits_of(event), "consent": consent_of(event),
            "version": version}


@dataclass
class Applied:
    changed: dict[str, set[str]] = field(default_factory=dict)  # profile -> names of changed traits
    moved_from: set[str] = field(default_factory=set)  # profiles that lost events (to rebuild)
    # each changed profile's traits and consent as now written, so recompute needn't read them
    traits: dict[str, dict[str, TraitValue]] = field(default_factory=dict)
    consent: dict[str, dict[str, TraitValue]] = field(default_factory=dict)
    profiles: dict[str, ProfileState] = field(default_factory=dict)  # and their rows as written
    added: dict[str, list[TimelineEvent]] = field(default_factory=dict)  # each one's new events
    written: bool = False  # whether `profiles` are written yet


def apply_events(session: Session, messages: list[dict], last: bool = False) -> Applied:
    """Apply resolved events; answers the profiles they changed (each with its changed trait
    names), and the profiles that lost events moved elsewhere (to rebuild from the rest).
    `last`: nothing else in the batch touches these profiles, so when no event moved their
    rows are left for the caller to write once recomputed (`Applied.written` False).

    Each message is held by one profile at a given version: a redelivered or older copy
    changes nothing; a newer one held by another profile moves there (docs/identity.md)."""
    owner = survivors_of(session, {m["profile_id"] for m in messages})
    latest: dict[str, tuple[dict, dict]] = {}
    for m in messages:  # per message, the highest version in the run; the first copy on ties
        row = timeline_row(owner[m["profile_id"]], m["event"], m.get("version", 0))
        if row["message_id"] not in latest or row["version"] > latest[row["message_id"]][0]["version"]:
            latest[row["message_id"]] = (row, m)
    fresh, moved_from = _sort_out(session, latest)
    insert_new_rows(session, ProfileEvent, [row for row, _ in fresh], ["profile_id", "message_id"])
    upsert(session, ProfileIdentity, list({(i["type"], i["value"], owner[m["profile_id"]]): {
        "type": i["type"], "value": i["value"], "profile_id": owner[m["profile_id"]]}
        for m in messages for i in m.get("identifiers", [])}.values()), keys=["type", "value", "profile_id"])
    if not fresh:
        return Applied(moved_from=moved_from)
    applied = Applied({row["profile_id"]: set() for row, _ in fresh}, moved_from)
    applied.profiles = _count(session, [row for row, _ in fresh])
    if not (last and not moved_from):
        write_profiles(session, applied.profiles.values())
        applied.written = True
    for row, _ in fresh:
        applied.added.setdefault(row["profile_id"], []).append(TimelineEvent(
            row["message_id"], row["type"], row["name"], row["timestamp"], row["properties"], row["source"],
            row["channel"]))
    applied.traits, changed_traits = _merge_traits(session, fresh, traits_of, ProfileTrait)
    applied.consent, changed_consent = _merge_traits(session, fresh, consent_of, ProfileConsent)
    for profile_id, name in changed_traits:
        applied.changed[profile_id].add(name)
    for profile_id, purpose in changed_consent:
        applied.changed[profile_id].add(f"consent.{purpose}")
    return applied


def _sort_out(session: Session, latest: dict[str, tuple[dict, dict]]) -> tuple[list, set[str]]:
    """Which messages are new to their profile; a move takes the event from its old holder."""
    holders = select(ProfileEvent.message_id, ProfileEvent.profile_id, ProfileEvent.version)
    held = {mid: (pid, version) for condition in each_in(session, ProfileEvent.message_id, latest)
            for mid, pid, version in core_rows(session, holders.where(condition))}
    fresh, moved_from = [], set()
    for mid, (row, message) in latest.items():
        holder, version = held.get(mid, (None, None))
        if holder is not None and row["version"] <= version:
            continue  # redelivered, or an older copy arriving late
        if holder == row["profile_id"]:  # re-published to the profile that has it
            session.execute(update(ProfileEvent).where(ProfileEvent.profile_id == holder,
                                                       ProfileEvent.message_id == mid).values(version=row["version"]))
            continue
        if holder is not None:
            session.execute(delete(ProfileEvent).where(ProfileEvent.profile_id == holder,
                                                       ProfileEvent.message_id == mid))
            moved_from.add(holder)
        fresh.append((row, message))
    return fresh, moved_from


def _count(session: Session, rows: list[dict]) -> dict[str, ProfileState]:
    profiles = read_profiles(session, {r["profile_id"] for r in rows})
    for row in rows:
        at: datetime = row["timestamp"]
        profile = profiles.get(row["profile_id"])
        if profile is None:
            profile = profiles[row["profile_id"]] = ProfileState(row["profile_id"], at, at, 0, 0, {}, None, None)
        profile.event_count += 1
        profile.first_seen, profile.last_seen = min(profile.first_seen, at), max(profile.last_seen, at)
        profile.version += 1
    return profiles


def _merge_traits(session: Session, fresh: list[tuple[dict, dict]], stated,
                  model) -> tuple[dict[str, dict[str, TraitValue]], set[tuple[str, str]]]:
    """Last write wins per name (of `stated(event)`); answers the profiles' values now, and
    the (profile, name) pairs whose value changed."""
    current = traits_by_profile(session, {row["profile_id"] for row, _ in fresh}, model)
    before = {pid: {n: t.value for n, t in traits.items()} for pid, traits in current.items()}
    writes: dict[tuple[str, str], TraitValue] = {}
    for row, message in fresh:
        event, pid = message["event"], row["profile_id"]
        incoming = {name: TraitValue(value, row["timestamp"], event["messageId"], event.get("sourceId"))
                    for name, value in stated(event).items()}
        for name, value in winners(current[pid], incoming).items():
            current[pid][name] = writes[(pid, name)] = value
    write_traits(session, writes, model)
    return dict(current), {(pid, name) for pid, name in writes
                           if before.get(pid, {}).get(name) != writes[(pid, name)].value}
