"""The resolution rule: which identifiers form one profile, given the evidence seen.

Evidence is an event's identifiers. The partition of identifiers into profiles is a
pure function of the SET of evidence: link evidence one by one in the order of its
key (event timestamp, messageId), each link refused where it would break a type's
per-profile limit (merge protection), and name each profile after its strongest
identifier. Delivery order therefore never matters; late evidence is handled by
recomputing its component (see corrections.py and docs/identity.md).
"""
from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.identity.domain.identifiers import Identifier
from services.identity.domain.rules import Rules

PROFILE_NAMESPACE = uuid.UUID("6f1c7f1e-5b0e-4d59-9a55-3c3f0f0e7a11")


def new_profile_id(identifier: Identifier) -> str:
    """Deterministic, so that replaying the log recreates the same ids."""
    return str(uuid.uuid5(PROFILE_NAMESPACE, f"{identifier.type}:{identifier.value}"))


@dataclass(frozen=True)
class Evidence:
    message_id: str
    at: str  # the event timestamp, ISO 8601 UTC with microseconds: sorts as text
    identifiers: tuple[Identifier, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.at, self.message_id)


@dataclass(frozen=True)
class Refusal:
    """A link merge protection refused: `dropped` was not linked to the rest of the event."""

    message_id: str
    dropped: Identifier
    conflict_type: str
    limit: int
    conflicting: tuple[str, ...]  # the values of conflict_type the merge would have joined

    @property
    def reason(self) -> str:
        return (f"linking {self.dropped.type} {self.dropped.value!r} would give one profile "
                f"{len(self.conflicting)} {self.conflict_type} identifiers "
                f"({', '.join(self.conflicting)}); the limit is {self.limit}")


class Graph:
    """Groups of identifiers (one per profile) built by linking evidence."""

    def __init__(self, rules: Rules, groups: Iterable[Iterable[Identifier]] = ()):
        self.rules = rules
        self.group_of: dict[Identifier, set[Identifier]] = {}
        for group in groups:
            members = set(group)
            self.group_of.update({i: members for i in members})

    def link(self, evidence: Evidence) -> tuple[Identifier, list[Refusal]]:
        """Link one event's identifiers; answers the identifier naming its group, and refusals."""
        ids = sorted(set(evidence.identifiers), key=self.rules.rank)
        for i in ids:
            self.group_of.setdefault(i, {i})
        kept = [i for i in ids if (i.type, i.value) not in self.rules.isolated] or ids[:1]
        refusals = []
        while len(kept) > 1 and (conflict := self._conflict(kept)):
            dropped = kept.pop()  # the weakest identifier goes, then try again
            refusals.append(Refusal(evidence.message_id, dropped, *conflict))
        for i in kept[1:]:
            self._union(kept[0], i)
        return kept[0], refusals

    def _conflict(self, kept: list[Identifier]) -> tuple[str, int, tuple[str, ...]] | None:
        union = set().union(*(self.group_of[i] for i in kept))
        counts = Counter(i.type for i in union)
        for type_ in sorted(counts, key=lambda t: (self.rules.rule(t).priority, t)):
            limit = self.rules.rule(type_).limit
            if limit is not None and counts[type_] > limit:
                return type_, limit, tuple(sorted(i.value for i in union if i.type == type_))
        return None

    def _union(self, a: Identifier, b: Identifier) -> None:
        big, small = self.group_of[a], self.group_of[b]
        if big is small:
            return
        if len(big) < len(small):
            big, small = small, big
        big |= small
        self.group_of.update({i: big for i in small})

    def profile_of(self, identifier: Identifier) -> str:
        """A profile is named after its strongest identifier."""
        return new_profile_id(min(self.group_of[identifier], key=self.rules.rank))

    def owners(self) -> dict[Identifier, str]:
        named = {id(g): new_profile_id(min(g, key=self.rules.rank)) for g in self.group_of.values()}
        return {i: named[id(g)] for i, g in self.group_of.items()}


@dataclass(frozen=True)
class Outcome:
    owners: dict[Identifier, str]  # identifier -> profile id
    event_profiles: dict[str, str]  # message id -> profile id
    refusals: list[Refusal]


def partition(evidence: Iterable[Evidence], rules: Rules) -> Outcome:
    """The profiles that a set of evidence makes, whatever order it arrived in."""
    graph, anchors, refusals = Graph(rules), {}, []
    for item in _deduplicated(evidence):
        anchors[item.message_id], refused = graph.link(item)
        refusals += refused
    owners = graph.owners()
    return Outcome(owners, {m: owners[a] for m, a in anchors.items()}, refusals)


def _deduplicated(evidence: Iterable[Evidence]) -> list[Evidence]:
    """By key order; one item per messageId (the smallest, should two differ)."""
    chosen: dict[str, Evidence] = {}
    for item in sorted(evidence, key=lambda e: (e.key, e.identifiers)):
        chosen.setdefault(item.message_id, item)
    return list(chosen.values())


def groups_of(owners: Mapping[Identifier, str]) -> list[set[Identifier]]:
    by_profile: dict[str, set[Identifier]] = {}
    for identifier, profile_id in owners.items():
        by_profile.setdefault(profile_id, set()).add(identifier)
    return list(by_profile.values())
