"""Applies resolved events and merges to profiles; publishes profiles.changed.

A batch is cut into runs: consecutive events are applied together (applying.py),
merges one at a time between them, so the order of the log is kept.
"""
from __future__ import annotations

from itertools import groupby

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from services.profile.applying import (Applied, ProfileState, apply_events, read_profiles, survivors_of,
                                       traits_by_profile, write_profiles, write_traits)
from services.profile.computation import Computation
from services.profile.domain.traits import TraitValue, visible, winners
from services.profile.tables import (Profile, ProfileAlias, ProfileAliasCorrection, ProfileConsent, ProfileEvent,
                                     ProfileIdentity, ProfileTrait)
from services.runtime import topics
from services.runtime.clock import format_time
from services.runtime.db import upsert
from services.runtime.log import Message, Record
from services.runtime.projector import Output


KINDS = ("event", "merge", "split")  # others (refusal) are for other readers
EVERYTHING = "*"  # a changed name meaning: re-evaluate whatever reads this profile


class ProfileHandler:
    name = "profile"
    topics = (topics.EVENTS_RESOLVED,)

    def __init__(self, computation: Computation):
        self.computation = computation

    def apply(self, session: Session, batch: list[Record]) -> list[Output]:
        changed: dict[str, set[str]] = {}  # profile id -> names of the traits that changed
        absorbed: dict[str, str] = {}
        emptied: set[str] = set()  # split apart, waiting for their re-published events
        messages = [m for m in (record.json() for record in batch) if m["kind"] in KINDS]
        runs = [(kind, list(run)) for kind, run in groupby(messages, key=lambda m: m["kind"])]
        known = None  # traits as written, when nothing but one run of events wrote any
        added: dict[str, list] = {}  # each profile's new events, folded into its summary
        refold: set[str] = set()  # profiles whose timelines gained or lost others' events
        for kind, run in runs:
            for message in run if kind != "event" else [run]:
                if kind == "event":
                    applied = apply_events(session, message, last=len(runs) == 1)
                    for profile_id, names in sorted(applied.changed.items()):
                        changed.setdefault(profile_id, set()).update(names)
                    for profile_id, events in applied.added.items():
                        added.setdefault(profile_id, []).extend(events)
                    for profile_id in sorted(applied.moved_from):
                        rebuild_profile(session, profile_id, changed, emptied)
                    refold |= applied.moved_from
                    if len(runs) == 1 and not applied.moved_from:
                        known = applied
                elif kind == "merge":
                    merge_profiles(session, message["survivor"], message["absorbed"], changed, absorbed,
                                   message.get("seq"))
                    if message["absorbed"] in absorbed:  # its survivor's timeline gained its events
                        refold.add(absorbed[message["absorbed"]])
                else:
                    split_profile(session, message, changed, emptied)
                    refold.add(message["profile_id"])
        session.flush()
        emptied = {p for p in emptied if session.get(Profile, p) is None}  # not refilled in this batch
        survivors = [p for p in changed if p not in absorbed and p not in emptied]
        return ([(topics.PROFILES_CHANGED, Message.of(a, {"profile_id": a, "merged_into": s}))
                 for a, s in absorbed.items()] +
                [(topics.PROFILES_CHANGED, Message.of(p, {"profile_id": p, "removed": True}))
                 for p in sorted(emptied)] + self.recompute(session, survivors, changed, known, added, refold))

    def recompute(self, session: Session, profile_ids: list[str],
                  trait_changes: dict[str, set[str]] | None = None, known: Applied | None = None,
                  added: dict | None = None, refold: set[str] = frozenset()) -> list[Output]:
        """Refresh computed traits of changed profiles and announce their new snapshots, each
        naming what changed so readers re-evaluate only what reads it. `known`: traits,
        consent and rows the batch has just written, read again only for the profiles it
        lacks, and the events it added. Without it, `added`: the events the profiles gained
        since their summaries were folded ({} for none; None: fold their whole timelines);
        `refold`: profiles whose whole timelines are folded whatever `added` says (a merge,
        a split or a move changed them), so one merge doesn't refold a whole batch."""
        if not profile_ids:
            return []
        session.flush()
        definitions = self.computation.definitions(session)
        profiles = {p: known.profiles[p] for p in profile_ids if p in known.profiles} if known else {}
        profiles |= read_profiles(session, [p for p in profile_ids if p not in profiles])
        traits = _known_or_read(session, profiles, known.traits if known else {}, ProfileTrait)
        consent = _known_or_read(session, profiles, known.consent if known else {}, ProfileConsent)
        computed_before = {p: dict(profile.computed or {}) for p, profile in profiles.items()}
        self.computation.refresh_many(session, list(profiles.values()), definitions,
                                      known.added if known else added, refold)
        outputs = []
        for profile_id in (p for p in profile_ids if p in profiles):
            profile = profiles[profile_id]
            profile.version += 1
            change = snapshot_of(profile, traits[profile_id], consent[profile_id])
            names = set((trait_changes or {}).get(profile_id, ())) | changed_keys(
                computed_before[profile_id], change["computed"])
            change["changed"] = None if EVERYTHING in names else sorted(names)
            outputs.append((topics.PROFILES_CHANGED, Message.of(profile_id, change)))
        write_profiles(session, profiles.values())
        return outputs


def _known_or_read(session: Session, profile_ids, known: dict, model) -> dict[str, dict[str, TraitValue]]:
    missing = [p for p in profile_ids if p not in known]
    found = traits_by_profile(session, missing, model)  # a defaultdict: no row, no traits
    found.update(known)
    return found


def merge_profiles(session: Session, survivor: str, absorbed: str, changed: dict, absorbed_now: dict,
                   seq: int | None = None) -> None:
    """Move the absorbed profile into the survivor: timelines united by messageId, traits by
    last write wins, counts recomputed from the united timeline (nothing counted twice)."""
    if not newer_correction(session, absorbed, seq):
        return  # a later split or merge of this id was applied already (another partition)
    survivor, current = survivor_of(session, survivor), survivor_of(session, absorbed)
    if current == survivor:
        return  # redelivered merge
    if current != absorbed:  # it read as another profile by an older correction: its rows are there
        point_alias(session, absorbed, survivor)
        session.flush()
        absorbed_now[absorbed] = survivor
        return
    session.flush()
    _move_timeline(session, absorbed, survivor)
    _move_identities(session, absorbed, survivor)
    taken = {}
    for model, prefix in ((ProfileTrait, ""), (ProfileConsent, "consent.")):
        both = traits_by_profile(session, [survivor, absorbed], model)
        moved = winners(both[survivor], both[absorbed])
        write_traits(session, {(survivor, n): t for n, t in moved.items()}, model)
        session.execute(delete(model).where(model.profile_id == absorbed))
        taken |= {prefix + n: t for n, t in moved.items()
                  if both[survivor].get(n) is None or both[survivor][n].value != t.value}
    _recount(session, survivor, session.get(Profile, absorbed))
    session.execute(update(ProfileAlias).where(ProfileAlias.survivor == absorbed).values(survivor=survivor))
    session.add(ProfileAlias(absorbed=absorbed, survivor=survivor))
    session.flush()
    changed.setdefault(survivor, set()).update(taken)
    absorbed_now[absorbed] = survivor


def point_alias(session: Session, alias: str, target: str | None) -> None:
    """`alias` reads as `target` from now on (None, or itself: as itself again)."""
    session.execute(delete(ProfileAlias).where(ProfileAlias.absorbed == alias))
    if target is not None and target != alias:
        session.add(ProfileAlias(absorbed=alias, survivor=target))


def newer_correction(session: Session, profile_id: str, seq: int | None) -> bool:
    """Whether identity's correction `seq` of what `profile_id` reads as is to be applied: not
    when a newer one was (copies of a correction go to several partitions, so an older one
    may be consumed later); if so, it is noted as the newest. Records without `seq` (written
    before corrections were numbered) apply as they come."""
    if seq is None:
        return True
    noted = session.get(ProfileAliasCorrection, profile_id)
    if noted is not None and noted.seq > seq:
        return False
    if noted is None:
        session.add(ProfileAliasCorrection(profile_id=profile_id, seq=seq))
    else:
        noted.seq = seq
    return True


def split_profile(session: Session, split: dict, changed: dict, emptied: set) -> None:
    """Undo a link the identity service took back (docs/identity.md): aliases follow the split
    and each part gets its identifiers; its events then arrive re-published with a higher
    version and move (apply_events), each profile that lost some rebuilt from the rest."""
    for alias, target in (split.get("aliases") or {}).items():
        if not newer_correction(session, alias, split.get("seq")):
            continue
        point_alias(session, alias, target)
    profile_id = split["profile_id"]
    if profile_id in (split.get("parts") or {}):
        session.execute(delete(ProfileIdentity).where(ProfileIdentity.profile_id == profile_id))
        upsert(session, ProfileIdentity, [{"type": i["type"], "value": i["value"], "profile_id": profile_id}
                                          for i in split["parts"][profile_id]], keys=["type", "value", "profile_id"])
    session.flush()
    if session.get(Profile, profile_id) is not None:
        changed.setdefault(profile_id, set()).add(EVERYTHING)
    elif profile_id == split.get("from"):
        emptied.add(profile_id)


def rebuild_profile(session: Session, profile_id: str, changed: dict, emptied: set) -> None:
    """Counts, traits and consent from the profile's remaining events (some moved away);
    a profile left with none is deleted."""
    session.flush()
    for model in (ProfileTrait, ProfileConsent):
        session.execute(delete(model).where(model.profile_id == profile_id))
    _recount(session, profile_id, None)
    profile = session.get(Profile, profile_id)
    if profile is None or not profile.event_count:
        if profile is not None:
            session.delete(profile)
        session.execute(delete(ProfileIdentity).where(ProfileIdentity.profile_id == profile_id))
        emptied.add(profile_id)
        return
    events = list(session.scalars(select(ProfileEvent).where(ProfileEvent.profile_id == profile_id)
                                  .order_by(ProfileEvent.timestamp, ProfileEvent.message_id)))
    for model, stated in ((ProfileTrait, "traits"), (ProfileConsent, "consent")):
        current: dict[str, TraitValue] = {}
        for event in events:
            incoming = {n: TraitValue(v, event.timestamp, event.message_id, event.source)
                        for n, v in (getattr(event, stated) or {}).items()}
            current |= winners(current, incoming)
        write_traits(session, {(profile_id, n): t for n, t in current.items()}, model)
    changed.setdefault(profile_id, set()).add(EVERYTHING)


def changed_keys(before: dict, after: dict) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def survivor_of(session: Session, profile_id: str) -> str:
    return survivors_of(session, {profile_id})[profile_id]


def stored_traits(session: Session, profile_id: str) -> dict[str, TraitValue]:
    return traits_by_profile(session, [profile_id])[profile_id]


def snapshot_of(profile: ProfileState, traits: dict[str, TraitValue], consent: dict[str, TraitValue]) -> dict:
    """What readers and the segments projector see of a profile."""
    return {"profile_id": profile.profile_id, "version": profile.version, "event_count": profile.event_count,
            "first_seen": format_time(profile.first_seen), "last_seen": format_time(profile.last_seen),
            "traits": visible(traits), "computed": profile.computed or {},
            "consent": {purpose: given.value for purpose, given in sorted(consent.items())}}


def _move_timeline(session: Session, absorbed: str, survivor: str) -> None:
    rows = session.scalars(select(ProfileEvent).where(ProfileEvent.profile_id == absorbed)).all()
    upsert(session, ProfileEvent, [
        {"profile_id": survivor, "message_id": r.message_id, "type": r.type, "name": r.name,
         "timestamp": r.timestamp, "properties": r.properties, "source": r.source,
         "channel": r.channel, "traits": r.traits, "consent": r.consent, "version": r.version} for r in rows],
        keys=["profile_id", "message_id"])
    session.execute(delete(ProfileEvent).where(ProfileEvent.profile_id == absorbed))


def _move_identities(session: Session, absorbed: str, survivor: str) -> None:
    rows = session.scalars(select(ProfileIdentity).where(ProfileIdentity.profile_id == absorbed)).all()
    upsert(session, ProfileIdentity, [{"type": r.type, "value": r.value, "profile_id": survivor} for r in rows],
           keys=["type", "value", "profile_id"])
    session.execute(delete(ProfileIdentity).where(ProfileIdentity.profile_id == absorbed))


def _recount(session: Session, survivor: str, absorbed: Profile | None) -> None:
    """The survivor's counts from its (now merged, de-duplicated) timeline."""
    count, first, last = session.execute(
        select(func.count(), func.min(ProfileEvent.timestamp), func.max(ProfileEvent.timestamp))
        .where(ProfileEvent.profile_id == survivor)).one()
    profile = session.get(Profile, survivor)
    if profile is None and count:
        profile = Profile(profile_id=survivor, first_seen=first, last_seen=last, event_count=0, version=0,
                          computed={})
        session.add(profile)
    if profile is not None and count:
        profile.event_count, profile.first_seen, profile.last_seen = count, first, last
        profile.version = max(profile.version, absorbed.version if absorbed else 0) + 1
    elif profile is not None:
        profile.event_count = 0  # emptied by a split: removed by the caller
    if absorbed is not None:
        session.delete(absorbed)
