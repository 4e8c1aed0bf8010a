"""Resolving a batch of events at once.

Most events take no decision that needs the database between them:
- a known person's event whose identifiers are all in one profile already, arriving in key
  order: linking it changes no owner, sighting or refusal, so its profile is the one they
  share; or the same with identifiers never seen, which join that profile without a
  refusal. Their component is the one whose name sorts first, as GraphStore joins them: the
  known one, or a new identifier's, which the known one's links and events then move to;
- a new person's event: every identifier never seen (not even in a leftover component),
  linked without a refusal.
The batch's identifiers are read, their components locked and loaded once; each such event
is decided in memory (the domain's Graph, as GraphStore would) and its rows are written in
bulk with the others. Every other event (a merge, a refusal, late evidence, an identifier
with history) goes through GraphStore.resolve one at a time, after the bulk rows so far are
written, and the components it touches are left to that path for the rest of the batch.
Both paths write the same rows and publish the same messages, so where a batch starts or
ends changes nothing (tests/identity/test_batch_resolution.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.identity.domain.identifiers import Identifier
from services.identity.domain.resolution import Evidence, Graph, groups_of, profile_named
from services.identity.store import (GraphStore, component_of, event_row, evidence_key, links_of,
                                     resolved_event)
from services.identity.tables import IdentityComponent, IdentityEvent, IdentityLink, IdentityProfile
from services.runtime.db import core_rows, each_in, insert_new_rows, insert_rows, update_each
from services.runtime.projector import Output, RetryBatch

Item = tuple[dict, Evidence, tuple[str, int, int]]  # (event, its evidence, its position in the log)


@dataclass
class Component:
    """A component as locked and read at the start of the batch (or made in it)."""

    last_key: str
    owners: dict[Identifier, str] = field(default_factory=dict)
    shared: set[Identifier] = field(default_factory=set)
    first_seen: dict[Identifier, str] = field(default_factory=dict)
    graph: Graph | None = None  # built when an event first needs it
    named_by_rules: bool | None = None  # whether each profile is named as the rules name it

    def settles(self, evidence: Evidence, rules, new: set[Identifier] = frozenset()) -> str | None:
        """The profile of `evidence` when linking it last changes nothing here (no owner,
        sighting or refusal) but add the identifiers `new` to its profile, and it is linked;
        else None."""
        if evidence_key(evidence) <= self.last_key:
            return None  # late evidence: recomputed on the one-at-a-time path
        if not new and (profile_id := self._holding_all(evidence, rules)) is not None:
            self.last_key = evidence_key(evidence)
            return profile_id
        if self.graph is None:
            self.graph = Graph(rules, groups_of(self.owners), self.shared, self.first_seen)
        anchor, refusals = self.graph.link(evidence)
        profile_id = self.graph.profile_of(anchor)
        owners, first_seen = self.owners | dict.fromkeys(new, profile_id), self.first_seen | dict.fromkeys(new, evidence.at)
        if refusals or self.graph.first_seen != first_seen or self.graph.owners() != owners:
            return None  # (the graph is spent: the caller leaves this component alone now)
        self.owners, self.first_seen, self.last_key = owners, first_seen, evidence_key(evidence)
        return profile_id

    def _holding_all(self, evidence: Evidence, rules) -> str | None:
        """The one profile holding every identifier of `evidence`, each seen before: linking
        them joins nothing, so no limit can be broken, and no first sighting is added (most
        events of a known person; linking each in the graph cost a sixth of identity's time)."""
        profile_ids = {self.owners.get(i) for i in evidence.identifiers}
        if len(profile_ids) != 1 or None in profile_ids or not all(i in self.first_seen for i in evidence.identifiers):
            return None
        if self.named_by_rules is None:  # stored under other rules: the graph would differ, not settled here
            self.named_by_rules = all(profile_named(group, rules) == self.owners[next(iter(group))]
                                      for group in groups_of(self.owners))
        return profile_ids.pop() if self.named_by_rules else None


@dataclass
class Writes:
    """Rows decided in memory, written in a few statements before anything reads them."""

    components: list[dict] = field(default_factory=list)
    links: list[dict] = field(default_factory=list)
    profiles: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    renames: list[dict] = field(default_factory=list)  # {"held", "into"}: a component joined into a new one
    last_keys: dict[str, str] = field(default_factory=dict)  # known components' greatest keys

    def flush(self, session: Session) -> None:
        self._insert_new(session, IdentityComponent, self.components, ["component"])
        self._insert_new(session, IdentityLink, self.links, ["type", "value"])
        # no id is named after an identifier without a component yet (components stay)
        self._insert_new(session, IdentityProfile, self.profiles, ["profile_id"])
        insert_rows(session, IdentityEvent, self.events)
        moves = final_components(self.renames)
        for model in (IdentityLink, IdentityEvent):
            update_each(session, model.__table__, "component", {c: {"component": into} for c, into in moves.items()})
        # a component joined twice names the last one it joined (later renames overwrite)
        update_each(session, IdentityComponent.__table__, "component",
                    {r["held"]: {"merged_into": r["into"]} for r in self.renames})
        update_each(session, IdentityComponent.__table__, "component",
                    {c: {"last_key": k} for c, k in self.last_keys.items()})
        self.__init__()

    @staticmethod
    def _insert_new(session: Session, model, rows: list[dict], keys: list[str]) -> None:
        if len(insert_new_rows(session, model, rows, keys)) < len(rows):
            # a concurrent worker made one of these first: decide the batch again with it known
            raise RetryBatch(f"{model.__tablename__}: a row this batch made was made concurrently")


def final_components(renames: list[dict]) -> dict[str, str]:
    """Where each component's rows end when the renames ({"held", "into"}) run in the order
    made: a component renamed into one renamed later ends in the later one's target."""
    final: dict[str, str] = {}
    for rename in renames:
        held, into = rename["held"], rename["into"]
        for start, now in final.items():
            if now == held:
                final[start] = into
        final.setdefault(held, into)
    return {start: into for start, into in final.items() if start != into}


def _joined(names: list[str], target: str, key: str) -> list[dict]:
    """Rows of the components `names`, each joined into `target`, which holds the last key."""
    return [{"component": c, "last_key": key if c == target else "", "merged_into": None if c == target else target}
            for c in sorted(names)]


def _links(owners: dict[Identifier, str], component: str, evidence: Evidence) -> list[dict]:
    """Rows of identifiers first linked by `evidence`, each to its profile, in `component`."""
    return [{"type": i.type, "value": i.value, "profile_id": p, "component": component,
             "first_message_id": evidence.message_id, "shared": False, "first_at": evidence.at}
            for i, p in owners.items()]


@dataclass
class Batch:
    """What resolving a batch knows as it goes."""

    links: dict[Identifier, str]  # identifier -> component, as locked (and made in memory)
    components: dict[str, Component]
    unseen: set[Identifier]  # never linked, nor made by this batch yet
    touched: set[str | None] = field(default_factory=set)  # changed one at a time: left to that path
    writes: Writes = field(default_factory=Writes)


class BatchResolver:
    def __init__(self, store: GraphStore):
        self.store, self.session, self.rules = store, store.session, store.rules

    def resolve(self, items: list[Item]) -> list[Output]:
        done = self._resolved_already([evidence.message_id for _, evidence, _ in items])
        identifiers = {i for _, evidence, _ in items for i in evidence.identifiers}
        links, components = self._lock(identifiers)
        batch = Batch(links, components, self._without_history(identifiers - set(links)))
        outputs: list[Output] = []
        for event, evidence, position in items:
            if evidence.message_id in done:
                continue  # a duplicate delivery: resolved and published already
            done.add(evidence.message_id)
            settled = self.settled(evidence, batch)
            batch.unseen -= set(evidence.identifiers)
            if settled is None:
                batch.writes.flush(self.session)  # what that path reads must be there
                outputs += self.store.resolve(event, evidence, position)
                batch.touched.update(batch.links.get(i) for i in evidence.identifiers)
                continue
            component, profile_id = settled
            batch.writes.events.append(event_row(evidence, component, profile_id, position))
            outputs.append(resolved_event(profile_id, evidence, event))
        batch.writes.flush(self.session)
        return outputs

    def settled(self, evidence: Evidence, batch: Batch) -> tuple[str, str] | None:
        """(component, profile) of an event decided in memory; None sends it the other way."""
        if set(evidence.identifiers) <= batch.unseen:
            return self._new_person(evidence, batch)
        new = {i for i in evidence.identifiers if i not in batch.links}
        owner = {batch.links[i] for i in evidence.identifiers if i in batch.links}
        component = owner.pop() if len(owner) == 1 else None
        if component is None or component in batch.touched or not new <= batch.unseen:
            return None
        profile_id = batch.components[component].settles(evidence, self.rules, new)
        if profile_id is None:
            return None
        target = min([component, *(component_of(i) for i in new)])  # the one GraphStore joins into
        if target != component:
            self._rename(batch, component, target)
        batch.writes.last_keys[target] = batch.components[target].last_key
        self._attach(evidence, batch, target, profile_id, new)
        return target, profile_id

    @staticmethod
    def _rename(batch: Batch, old: str, new: str) -> None:
        """A known component joined into a new identifier's, whose name sorts first: its
        links and events move there and it points there (flushed in Writes.renames)."""
        batch.components[new] = held = batch.components.pop(old)
        batch.links.update(dict.fromkeys(held.owners, new))
        batch.writes.renames.append({"held": old, "into": new})

    @staticmethod
    def _attach(evidence: Evidence, batch: Batch, component: str, profile_id: str, new: set[Identifier]) -> None:
        """The rows of identifiers never seen joining a known person's component, as
        GraphStore makes them: a component each, joined into that one, and their links."""
        key = batch.components[component].last_key
        batch.writes.components += _joined([component_of(i) for i in new], component, key)
        batch.writes.links += _links(dict.fromkeys(new, profile_id), component, evidence)
        batch.links.update({i: component for i in new})

    def _new_person(self, evidence: Evidence, batch: Batch) -> tuple[str, str] | None:
        """The rows of a new person's first event, as GraphStore would make them: a component
        per identifier, all joined into the first by name; links, and a profile named after
        the strongest identifier of each group."""
        graph = Graph(self.rules)
        anchor, refusals = graph.link(evidence)
        if refusals:
            return None
        owners, key, writes = graph.owners(), evidence_key(evidence), batch.writes
        target = min(component_of(i) for i in owners)
        writes.components += _joined([component_of(i) for i in owners], target, key)
        writes.links += _links(owners, target, evidence)
        for group in groups_of(owners):
            named = min(group, key=self.rules.rank)
            writes.profiles.append({"profile_id": owners[named], "named_type": named.type,
                                    "named_value": named.value})
        batch.links.update({i: target for i in owners})
        batch.components[target] = Component(key, dict(owners), set(), dict(graph.first_seen), graph)
        return target, graph.profile_of(anchor)

    def _resolved_already(self, message_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for condition in each_in(self.session, IdentityEvent.message_id, message_ids):
            found.update(self.session.scalars(select(IdentityEvent.message_id).where(condition)))
        return found

    def _without_history(self, identifiers: set[Identifier]) -> set[Identifier]:
        """Those never linked: no component is left named after them (one that is, from an
        identifier blocked or split off before, keeps its last key: GraphStore decides)."""
        named = {component_of(i): i for i in identifiers}
        for condition in each_in(self.session, IdentityComponent.component, named):
            for component in self.session.scalars(select(IdentityComponent.component).where(condition)):
                identifiers = identifiers - {named[component]}
        return identifiers

    def _lock(self, identifiers: set[Identifier]) -> tuple[dict[Identifier, str], dict[str, Component]]:
        """The known identifiers' components, locked (sorted, then again for any a concurrent
        merge moved them to, as GraphStore does for one event) and read with all their links."""
        locked: dict[str, Component] = {}
        while True:
            links = links_of(self.session, identifiers)
            todo = set(links.values()) - set(locked)
            if not todo:
                break
            for condition in each_in(self.session, IdentityComponent.component, todo):  # sorted
                for component, last_key in core_rows(
                        self.session, select(IdentityComponent.component, IdentityComponent.last_key).where(condition)
                        .order_by(IdentityComponent.component).with_for_update()):
                    locked[component] = Component(last_key)
        for condition in each_in(self.session, IdentityLink.component, set(links.values())):
            for t, v, profile_id, component, shared, first_at in core_rows(
                    self.session, select(IdentityLink.type, IdentityLink.value, IdentityLink.profile_id,
                                         IdentityLink.component, IdentityLink.shared, IdentityLink.first_at)
                    .where(condition)):
                held, identifier = locked[component], Identifier(t, v)
                held.owners[identifier] = profile_id
                if shared:
                    held.shared.add(identifier)
                if first_at:
                    held.first_seen[identifier] = first_at
        return links, locked
