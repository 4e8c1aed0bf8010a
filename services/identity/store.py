"""The identity graph in the database: locks a component, applies a decision, and says
what to publish. The decisions themselves come from domain/ (pure)."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from functools import lru_cache

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from services.identity.domain.corrections import Split, corrections
from services.identity.domain.identifiers import Identifier
from services.identity.domain.resolution import (Evidence, Graph, Refusal, groups_of, new_profile_id,
                                                 partition)
from services.identity.domain.rules import Rules, build_rules
from services.identity.log_reader import read_at
from services.identity.tables import (IdentityComponent, IdentityCorrection, IdentityEvent, IdentityLink,
                                      IdentityMerge, IdentityOverride, IdentityProfile, IdentityRefusal,
                                      IdentityRules, IdentitySplit)
from services.runtime import topics
from services.runtime.clock import now
from services.runtime.db import core_rows, in_chunks, insert_new, pairs_in, upsert
from services.runtime.log import Log, Message
from services.runtime.projector import Output

COMPONENT_NAMESPACE = uuid.UUID("0c4b1f0e-7a57-4f0e-8f51-2b1e8f6e9d21")


RULES_ROW = 1


def configured_rules(session: Session, file_rules: Rules) -> Rules:
    """The rules an admin stored (PUT /v1/identity/rules), else those of the file: shared by
    every worker, kept across restarts and replays."""
    stored = session.get(IdentityRules, RULES_ROW)
    return _parsed(json.dumps(stored.document, sort_keys=True)) if stored else file_rules


@lru_cache(maxsize=8)
def _parsed(document: str) -> Rules:
    return build_rules(json.loads(document))


def save_rules(session: Session, rules: Rules) -> None:
    """Store `rules` for every worker; they apply to events resolved from the next batch on.
    An upsert, so two admins saving at once both succeed (the later one wins)."""
    upsert(session, IdentityRules, [{"id": RULES_ROW, "document": rules.as_json(), "updated_at": now()}],
           keys=["id"], update=["document", "updated_at"])


def operator_rules(session: Session, rules: Rules) -> Rules:
    """The configured rules (an admin's, else the file's) plus the operators' blocks and isolations."""
    rules = configured_rules(session, rules)
    rows = session.execute(select(IdentityOverride.type, IdentityOverride.value,
                                  IdentityOverride.action)).all()
    return rules.with_operator_overrides([(t, v) for t, v, a in rows if a == "block"],
                                         [(t, v) for t, v, a in rows if a == "isolate"])


@dataclass
class Change:
    """One decision about a component, to be written and published."""

    component: str
    old: dict[Identifier, str]  # identifier -> profile before
    new: dict[Identifier, str]  # identifier -> profile after
    event_profiles: dict[str, str]  # message id -> profile, for events whose profile is decided here
    refusals: list[Refusal]
    cause: str  # a message id, or "operator: ..."
    cause_identifiers: list[dict] = field(default_factory=list)
    recomputed: bool = False  # every event of the component was resolved again
    shared: frozenset[Identifier] = frozenset()  # after: identifiers that link nothing more
    first_seen: dict[Identifier, str] = field(default_factory=dict)  # after
    stored: "Stored | None" = None  # the component's links as they were read


@dataclass(frozen=True)
class Stored:
    """A component's links as stored: profile, shared or not, and when each was first seen."""

    owners: dict[Identifier, str]
    shared: frozenset[Identifier]
    first_seen: dict[Identifier, str]


@dataclass(frozen=True)
class EventRow:
    message_id: str
    version: int
    profile_id: str
    at: str
    identifiers: list
    topic: str
    partition: int
    offset: int


@lru_cache(maxsize=1 << 16)  # as new_profile_id: a SHA-1, asked again for each event of a person
def component_of(identifier: Identifier) -> str:
    """The component an identifier starts in: its own, until evidence joins it to others."""
    return str(uuid.uuid5(COMPONENT_NAMESPACE, f"{identifier.type}:{identifier.value}"))


def links_of(session: Session, identifiers) -> dict[Identifier, str]:
    """The component of each identifier that is linked."""
    links: dict[Identifier, str] = {}
    for keys in in_chunks({(i.type, i.value) for i in identifiers}):
        rows = core_rows(session, select(IdentityLink.type, IdentityLink.value, IdentityLink.component)
                         .where(pairs_in(session, IdentityLink.type, IdentityLink.value, keys)))
        links.update({Identifier(t, v): c for t, v, c in rows})
    return links


def event_row(evidence: Evidence, component: str, profile_id: str, position: tuple[str, int, int]) -> dict:
    return {"message_id": evidence.message_id, "component": component, "profile_id": profile_id,
            "at": evidence.at, "identifiers": [i.as_json() for i in evidence.identifiers],
            "topic": position[0], "partition": position[1], "offset": position[2], "version": 0}


def evidence_key(evidence: Evidence) -> str:
    """The order evidence is linked in, as a component's last_key stores it."""
    return f"{evidence.at} {evidence.message_id}"


def resolved_event(profile_id: str, evidence: Evidence, event: dict) -> Output:
    return (topics.EVENTS_RESOLVED, Message.of(profile_id, {
        "kind": "event", "profile_id": profile_id, "identifiers": [i.as_json() for i in evidence.identifiers],
        "event": event, "version": 0}))


class GraphStore:
    def __init__(self, session: Session, rules: Rules, log: Log | None):
        self.session, self.rules, self.log = session, rules, log

    # --- one event ---------------------------------------------------------------------

    def resolve(self, event: dict, evidence: Evidence, position: tuple[str, int, int]) -> list[Output]:
        if self.session.get(IdentityEvent, evidence.message_id) is not None:
            return []  # a duplicate delivery: resolved and published already
        fresh = self._ensure_links(evidence)
        component, last_key = self._lock_and_join(evidence.identifiers)
        stored = self._stored(component)
        old = {i: p for i, p in stored.owners.items() if i not in fresh}
        self.session.add(IdentityEvent(**event_row(evidence, component, "", position)))
        key = evidence_key(evidence)
        cause = [i.as_json() for i in evidence.identifiers]
        # in order, linking it last is what a recomputation would do, unless it shows an
        # identifier to be shared; late evidence may change earlier decisions: recompute
        change = self._linked(component, stored, old, evidence, cause) if key > last_key else None
        change = change or self._recomputed(component, old, evidence.message_id, cause, stored)
        self.session.get(IdentityComponent, component).last_key = max(last_key, key)
        outputs = self.apply(change)
        return outputs + [resolved_event(change.event_profiles[evidence.message_id], evidence, event)]

    def _linked(self, component: str, stored: Stored, old: dict, evidence: Evidence, cause: list
                ) -> Change | None:
        """The change of linking `evidence` last, or None when it shows an identifier to be
        shared: that identifier's earlier links must go, which takes a recomputation."""
        graph = Graph(self.rules, groups_of(old), stored.shared, stored.first_seen)
        anchor, refusals = graph.link(evidence)
        if graph.newly_shared(refusals):
            return None
        return Change(component, old, graph.owners(), {evidence.message_id: graph.profile_of(anchor)},
                      refusals, evidence.message_id, cause, shared=graph.shared,
                      first_seen=graph.first_seen, stored=stored)

    # --- an operator's correction ------------------------------------------------------

    def recompute(self, identifier: Identifier, cause: str) -> list[Output]:
        """Resolve every event of `identifier`'s component again (after the rules changed)."""
        link = self.session.get(IdentityLink, (identifier.type, identifier.value))
        if link is None:
            return []
        component, _ = self._lock_and_join([identifier])
        stored = self._stored(component)
        return self.apply(self._recomputed(component, stored.owners, cause, [], stored))

    def _recomputed(self, component: str, old: dict, cause: str, cause_identifiers: list,
                    stored: Stored) -> Change:
        rows = self.session.scalars(select(IdentityEvent).where(IdentityEvent.component == component)).all()
        evidence = [Evidence(r.message_id, r.at, self._linkable(r.identifiers)) for r in rows]
        outcome = partition([e for e in evidence if e.identifiers], self.rules)
        return Change(component, old, outcome.owners, outcome.event_profiles, outcome.refusals, cause,
                      cause_identifiers, recomputed=True, shared=outcome.shared,
                      first_seen=outcome.first_seen, stored=stored)

    def _linkable(self, identifiers: list[dict]) -> tuple[Identifier, ...]:
        """Stored evidence under today's rules: values blocked since then drop out."""
        found = (Identifier.of(d) for d in identifiers)
        return tuple(i for i in found if not self.rules.is_blocked(i.type, i.value))

    # --- locking: components, in a fixed order -------------------------------------------

    def _ensure_links(self, evidence: Evidence) -> set[Identifier]:
        """Rows for identifiers never seen, each its own component; answers those that are new."""
        known = set(links_of(self.session, evidence.identifiers))
        fresh = set()
        for i in sorted(set(evidence.identifiers) - known):  # a fixed order: no deadlock on inserts
            component = component_of(i)
            insert_new(self.session, IdentityComponent, {"component": component, "last_key": ""},
                       ["component"])
            if insert_new(self.session, IdentityLink, {
                    "type": i.type, "value": i.value, "profile_id": new_profile_id(i),
                    "first_message_id": evidence.message_id, "component": component,
                    "shared": False, "first_at": evidence.at}, ["type", "value"]):
                fresh.add(i)
        return fresh

    def _lock_and_join(self, identifiers) -> tuple[str, str]:
        """Lock the components of `identifiers` (sorted, so workers queue instead of deadlocking;
        re-read after locking, since a merge may have committed meanwhile) and join them into one.
        Answers the component and the greatest evidence key it had."""
        locked: dict[str, IdentityComponent] = {}
        while True:
            current = set(links_of(self.session, identifiers).values())
            todo = sorted(current - set(locked))
            if not todo:
                break
            for component in todo:
                locked[component] = self.session.scalars(
                    select(IdentityComponent).where(IdentityComponent.component == component)
                    .with_for_update().execution_options(populate_existing=True)).one()
        rows = [locked[c] for c in sorted(current)]
        target, others = rows[0], rows[1:]
        for row in others:
            for table in (IdentityLink, IdentityEvent):
                self.session.execute(update(table).where(table.component == row.component)
                                     .values(component=target.component))
            row.merged_into = target.component
        last_key = max(r.last_key for r in rows)
        target.last_key = last_key
        self.session.flush()
        return target.component, last_key

    def _stored(self, component: str) -> Stored:
        rows = self.session.execute(select(IdentityLink.type, IdentityLink.value, IdentityLink.profile_id,
                                           IdentityLink.shared, IdentityLink.first_at)
                                    .where(IdentityLink.component == component)).all()
        return Stored({Identifier(t, v): p for t, v, p, _, _ in rows},
                      frozenset(Identifier(t, v) for t, v, _, shared, _ in rows if shared),
                      {Identifier(t, v): at for t, v, _, _, at in rows if at})

    # --- writing a decision ----------------------------------------------------------------

    def apply(self, change: Change) -> list[Output]:
        merges, splits = corrections(change.old, change.new)
        old_events = self._event_profiles(change) if splits else {}
        self._write_links(change)
        self._write_profiles(change)
        self._write_event_profiles(change, merges)
        outputs: list[Output] = []
        seq = self._correction(change) if merges or splits else None
        for merge in merges:
            self.session.add(IdentityMerge(survivor=merge.survivor, absorbed=merge.absorbed,
                                           message_id=change.cause, identifiers=change.cause_identifiers,
                                           merged_at=now()))
            outputs.append((topics.EVENTS_RESOLVED, Message.of(merge.survivor, {
                "kind": "merge", "survivor": merge.survivor, "absorbed": merge.absorbed,
                "message_id": change.cause, "identifiers": change.cause_identifiers, "seq": seq})))
        for split in splits:
            outputs += self._split(change, split, old_events, seq)
        outputs += self._refusals(change)
        self.session.flush()
        return outputs

    def _write_links(self, change: Change) -> None:
        gone = [(i.type, i.value) for i in change.old if i not in change.new]
        if gone:
            self.session.execute(delete(IdentityLink).where(
                pairs_in(self.session, IdentityLink.type, IdentityLink.value, gone)))
        moved: dict[str, list[tuple[str, str]]] = {}
        for identifier, profile_id in change.new.items():
            if change.old.get(identifier) != profile_id:
                moved.setdefault(profile_id, []).append((identifier.type, identifier.value))
        for profile_id, keys in moved.items():
            self._update_links(keys, profile_id=profile_id)
        self._write_link_facts(change)

    def _write_link_facts(self, change: Change) -> None:
        """Shared marks and first sightings that changed (linking in order changes neither: a
        new identifier is stored with its event's time, and a new shared one recomputes)."""
        stored = change.stored or Stored({}, frozenset(), {})
        for shared in (True, False):
            keys = [(i.type, i.value) for i in change.new
                    if (i in change.shared) == shared and (i in stored.shared) != shared]
            self._update_links(keys, shared=shared)
        by_time: dict[str, list[tuple[str, str]]] = {}
        for identifier, at in change.first_seen.items():
            if identifier in change.new and stored.first_seen.get(identifier) != at:
                by_time.setdefault(at, []).append((identifier.type, identifier.value))
        for at, keys in by_time.items():
            self._update_links(keys, first_at=at)

    def _update_links(self, keys: list[tuple[str, str]], **values) -> None:
        if keys:
            self.session.execute(update(IdentityLink).where(
                pairs_in(self.session, IdentityLink.type, IdentityLink.value, keys)).values(**values))

    def _write_profiles(self, change: Change) -> None:
        """Every profile id reads as the profile now holding the identifier it is named after."""
        for profile_id in set(change.new.values()) - set(change.old.values()):
            named = min((i for i, p in change.new.items() if p == profile_id), key=self.rules.rank)
            insert_new(self.session, IdentityProfile, {"profile_id": profile_id, "named_type": named.type,
                                                       "named_value": named.value}, ["profile_id"])
        touched = [(i.type, i.value) for i in change.new if change.old.get(i) != change.new[i]]
        if not touched:
            return
        for row in self.session.scalars(select(IdentityProfile).where(
                pairs_in(self.session, IdentityProfile.named_type, IdentityProfile.named_value, touched))):
            reading = change.new[Identifier(row.named_type, row.named_value)]
            row.merged_into = None if reading == row.profile_id else reading

    def _event_profiles(self, change: Change) -> dict[str, "EventRow"]:
        """A copy, taken before the writes (updates would change loaded rows in place)."""
        rows = self.session.scalars(select(IdentityEvent).where(IdentityEvent.component == change.component))
        return {r.message_id: EventRow(r.message_id, r.version, r.profile_id, r.at, r.identifiers, r.topic, r.partition, r.offset)
                for r in rows}

    def _write_event_profiles(self, change: Change, merges) -> None:
        if not change.recomputed:  # linking only merges: events follow their profile
            for merge in merges:
                self.session.execute(update(IdentityEvent).where(
                    IdentityEvent.component == change.component, IdentityEvent.profile_id == merge.absorbed)
                    .values(profile_id=merge.survivor))
        for message_id, profile_id in change.event_profiles.items():
            self.session.execute(update(IdentityEvent).where(IdentityEvent.message_id == message_id,
                                                             IdentityEvent.profile_id != profile_id)
                                 .values(profile_id=profile_id))

    def _correction(self, change: Change) -> int:
        """The number of this change's merges and splits. The component is locked, so an id's
        corrections are numbered in the order they are made (PostgreSQL's sequence, SQLite's
        one writer)."""
        row = IdentityCorrection(made_at=now())
        self.session.add(row)
        self.session.flush()
        return row.id

    def _split(self, change: Change, split: Split, old_events: dict[str, "EventRow"], seq: int) -> list[Output]:
        parts = {p: [i.as_json() for i in ids] for p, ids in split.parts.items()}
        removed = [i.as_json() for i in split.removed]
        self.session.add(IdentitySplit(profile_id=split.profile_id, parts=parts, removed=removed,
                                       cause=change.cause, split_at=now()))
        moved = sorted((m for m, r in old_events.items() if r.profile_id == split.profile_id),
                       key=lambda m: (old_events[m].at, m))
        record = {"kind": "split", "from": split.profile_id, "parts": parts, "removed": removed,
                  "aliases": self._aliases(split), "message_ids": moved, "cause": change.cause, "seq": seq}
        keys = sorted({split.profile_id, *split.parts})
        outputs = [(topics.EVENTS_RESOLVED, Message.of(k, {**record, "profile_id": k})) for k in keys]
        return outputs + self._reresolved(change, moved, old_events)

    def _aliases(self, split: Split) -> dict[str, str | None]:
        """What every id named after one of the split profile's identifiers reads as now
        (None: its identifier was blocked, so it reads as nothing)."""
        owner = {i: p for p, ids in split.parts.items() for i in ids}
        keys = [(i.type, i.value) for i in [*owner, *split.removed]]
        rows = self.session.scalars(select(IdentityProfile).where(
            pairs_in(self.session, IdentityProfile.named_type, IdentityProfile.named_value, keys)))
        return {r.profile_id: owner.get(Identifier(r.named_type, r.named_value)) for r in rows}

    def _reresolved(self, change: Change, moved: list[str], old_events: dict) -> list[Output]:
        rows = [old_events[m] for m in moved]
        events = read_at(self.log, [(r.topic, r.partition, r.offset) for r in rows]) if rows else {}
        outputs = []
        for row in rows:
            profile_id = change.event_profiles.get(row.message_id)
            event = events.get((row.topic, row.partition, row.offset))
            if profile_id is None or event is None:
                continue  # every identifier of it is blocked now, or its subject was erased
            self.session.execute(update(IdentityEvent).where(IdentityEvent.message_id == row.message_id)
                                 .values(version=row.version + 1))
            outputs.append((topics.EVENTS_RESOLVED, Message.of(profile_id, {
                "kind": "event", "profile_id": profile_id, "identifiers": row.identifiers,
                "event": event, "reresolved": True,
                "version": row.version + 1})))
        return outputs

    def _refusals(self, change: Change) -> list[Output]:
        """Store the refusals in force (a recomputation drops those it no longer makes);
        publish the new ones."""
        decided = {(r.message_id, r.dropped.type, r.dropped.value): r for r in change.refusals}
        if change.recomputed:
            stale = self.session.scalars(select(IdentityRefusal).join(
                IdentityEvent, IdentityEvent.message_id == IdentityRefusal.message_id)
                .where(IdentityEvent.component == change.component)).all()
            for row in stale:
                if (row.message_id, row.dropped_type, row.dropped_value) not in decided:
                    self.session.delete(row)
                else:
                    row.profile_id = change.event_profiles[row.message_id]
        outputs = []
        for refusal in decided.values():
            profile_id = change.event_profiles[refusal.message_id]
            if insert_new(self.session, IdentityRefusal, {
                    "message_id": refusal.message_id, "profile_id": profile_id,
                    "dropped_type": refusal.dropped.type, "dropped_value": refusal.dropped.value,
                    "conflict_type": refusal.conflict_type, "reason": refusal.reason, "refused_at": now()},
                    ["message_id", "dropped_type", "dropped_value"]):
                outputs.append((topics.EVENTS_RESOLVED, Message.of(profile_id, {
                    "kind": "refusal", "profile_id": profile_id, "message_id": refusal.message_id,
                    "dropped": refusal.dropped.as_json(), "conflict_type": refusal.conflict_type,
                    "limit": refusal.limit, "window_hours": refusal.window_hours,
                    "conflicting": list(refusal.conflicting), "reason": refusal.reason})))
        return outputs
