"""Applies resolved events and merges to profiles; publishes profiles.changed."""
from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from services.profile.domain.traits import TraitValue, traits_of, visible, winners
from services.profile.tables import Profile, ProfileAlias, ProfileEvent, ProfileTrait
from services.runtime import topics
from services.runtime.clock import format_time, parse_time
from services.runtime.db import insert_new, upsert
from services.runtime.log import Message, Record
from services.runtime.projector import Output

TRAIT_COLUMNS = ("value", "at", "message_id", "source")


class ProfileHandler:
    name = "profile"
    topics = (topics.EVENTS_RESOLVED,)

    def apply(self, session: Session, batch: list[Record]) -> list[Output]:
        changed: dict[str, None] = {}  # an ordered set of profile ids
        absorbed: dict[str, str] = {}
        for record in batch:
            message = record.json()
            if message["kind"] == "merge":
                self._merge(session, message["survivor"], message["absorbed"], changed, absorbed)
            else:
                self._event(session, message, changed)
        return ([(topics.PROFILES_CHANGED, Message.of(a, {"profile_id": a, "merged_into": s}))
                 for a, s in absorbed.items()] +
                [(topics.PROFILES_CHANGED, Message.of(p, snapshot(session, p)))
                 for p in changed if p not in absorbed])

    def _event(self, session: Session, message: dict, changed: dict) -> bool:
        event = message["event"]
        profile_id = survivor_of(session, message["profile_id"])
        at = parse_time(event["timestamp"])
        is_new = insert_new(session, ProfileEvent, {
            "profile_id": profile_id, "message_id": event["messageId"], "type": event["type"],
            "name": event.get("event"), "timestamp": at,
            "properties": event.get("properties") or {}}, ["profile_id", "message_id"])
        if not is_new:
            return False  # redelivered: already counted
        profile = session.get(Profile, profile_id) or _new_profile(session, profile_id, at)
        profile.event_count += 1
        profile.first_seen, profile.last_seen = min(profile.first_seen, at), max(profile.last_seen, at)
        profile.version += 1
        incoming = {name: TraitValue(value, at, event["messageId"], event.get("sourceId"))
                    for name, value in traits_of(event).items()}
        _write_traits(session, profile_id, winners(_traits(session, profile_id), incoming))
        changed[profile_id] = None
        return True

    def _merge(self, session: Session, survivor: str, absorbed: str, changed: dict,
               absorbed_now: dict) -> None:
        survivor, current = survivor_of(session, survivor), survivor_of(session, absorbed)
        if current == survivor:
            return  # redelivered merge
        _move_timeline(session, absorbed, survivor)
        _write_traits(session, survivor, winners(_traits(session, survivor), _traits(session, absorbed)))
        session.execute(delete(ProfileTrait).where(ProfileTrait.profile_id == absorbed))
        _recount(session, survivor, session.get(Profile, absorbed))
        session.execute(update(ProfileAlias).where(ProfileAlias.survivor == absorbed)
                        .values(survivor=survivor))
        session.add(ProfileAlias(absorbed=absorbed, survivor=survivor))
        session.flush()
        changed[survivor] = None
        absorbed_now[absorbed] = survivor


def survivor_of(session: Session, profile_id: str) -> str:
    alias = session.get(ProfileAlias, profile_id)
    return alias.survivor if alias else profile_id


def snapshot(session: Session, profile_id: str) -> dict:
    """What readers and the segments projector see of a profile."""
    profile = session.get(Profile, profile_id)
    return {"profile_id": profile_id, "version": profile.version,
            "event_count": profile.event_count,
            "first_seen": format_time(profile.first_seen), "last_seen": format_time(profile.last_seen),
            "traits": visible(_traits(session, profile_id))}


def _new_profile(session: Session, profile_id: str, at) -> Profile:
    profile = Profile(profile_id=profile_id, first_seen=at, last_seen=at, event_count=0, version=0)
    session.add(profile)
    return profile


def _traits(session: Session, profile_id: str) -> dict[str, TraitValue]:
    rows = session.scalars(select(ProfileTrait).where(ProfileTrait.profile_id == profile_id))
    return {r.name: TraitValue(r.value, r.at, r.message_id, r.source) for r in rows}


def _write_traits(session: Session, profile_id: str, traits: dict[str, TraitValue]) -> None:
    upsert(session, ProfileTrait, [
        {"profile_id": profile_id, "name": name, "value": t.value, "at": t.at,
         "message_id": t.message_id, "source": t.source} for name, t in traits.items()],
        keys=["profile_id", "name"], update=TRAIT_COLUMNS)


def _move_timeline(session: Session, absorbed: str, survivor: str) -> None:
    rows = session.scalars(select(ProfileEvent).where(ProfileEvent.profile_id == absorbed)).all()
    upsert(session, ProfileEvent, [
        {"profile_id": survivor, "message_id": r.message_id, "type": r.type, "name": r.name,
         "timestamp": r.timestamp, "properties": r.properties} for r in rows],
        keys=["profile_id", "message_id"])
    session.execute(delete(ProfileEvent).where(ProfileEvent.profile_id == absorbed))


def _recount(session: Session, survivor: str, absorbed: Profile | None) -> None:
    """The survivor's counts from its (now merged, de-duplicated) timeline."""
    count, first, last = session.execute(
        select(func.count(), func.min(ProfileEvent.timestamp), func.max(ProfileEvent.timestamp))
        .where(ProfileEvent.profile_id == survivor)).one()
    profile = session.get(Profile, survivor)
    if profile is None and count:
        profile = _new_profile(session, survivor, first)
    if profile is not None:
        profile.event_count, profile.first_seen, profile.last_seen = count, first, last
        profile.version = max(profile.version, absorbed.version if absorbed else 0) + 1
    if absorbed is not None:
        session.delete(absorbed)
