"""The resolution rule: which identifiers form one profile, given the evidence seen.

Evidence is an event's identifiers. The partition of identifiers into profiles is a
pure function of the SET of evidence: link evidence one by one in the order of its
key (event timestamp, messageId), each link refused where it would break a type's
per-profile limit or per-window limit (merge protection), an identifier so refused for
breaking a limit itself marked shared (it links nothing after its first link, and the
linking starts again), and name each profile after its strongest identifier. Delivery order therefore never matters; late evidence is handled by
recomputing its component (see corrections.py and docs/identity.md).
"""
from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache

from services.identity.domain.identifiers import Identifier
from services.identity.domain.rules import Rules

PROFILE_NAMESPACE = uuid.UUID("6f1c7f1e-5b0e-4d59-9a55-3c3f0f0e7a11")


@lru_cache(maxsize=1 << 16)  # a SHA-1 each; a batch asks it for every identifier of every event it links
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
    conflict_type: str  # the type whose limit the link would break, or "shared"
    limit: int
    conflicting: tuple[str, ...]  # the values of conflict_type the merge would have joined
    window_hours: int | None = None  # set when the limit counts first sightings in a window
    shares: bool = False  # `dropped` itself broke the limit: it is shared (see partition)

    @property
    def reason(self) -> str:
        dropped = f"{self.dropped.type} {self.dropped.value!r}"
        if self.conflict_type == SHARED:
            return (f"{dropped} is shared (merge protection refused it before): it stays with the "
                    f"profile it joined first ({self.conflicting[0]}) and links nothing more")
        within = f" first seen within {self.window_hours} h" if self.window_hours else ""
        return (f"linking {dropped} would give one profile {len(self.conflicting)} "
                f"{self.conflict_type} identifiers{within} ({', '.join(self.conflicting)}); "
                f"the limit is {self.limit}")


SHARED = "shared"
Conflict = tuple[str, int, tuple[str, ...], "int | None"]


class Graph:
    """Groups of identifiers (one per profile) built by linking evidence.

    `shared` identifiers may join one profile (their first link) and then link nothing;
    `first_seen` is when each identifier was first seen, for limits per time window."""

    def __init__(self, rules: Rules, groups: Iterable[Iterable[Identifier]] = (),
                 shared: Iterable[Identifier] = (), first_seen: Mapping[Identifier, str] | None = None):
        self.rules, self.shared = rules, frozenset(shared)
        self.first_seen: dict[Identifier, str] = dict(first_seen or {})
        self.group_of: dict[Identifier, set[Identifier]] = {}
        for group in groups:
            members = set(group)
            self.group_of.update({i: members for i in members})

    def link(self, evidence: Evidence) -> tuple[Identifier, list[Refusal]]:
        """Link one event's identifiers; answers the identifier naming its group, and refusals."""
        ids = sorted(set(evidence.identifiers), key=self.rules.rank)
        for i in ids:
            self.group_of.setdefault(i, {i})
            self.first_seen.setdefault(i, evidence.at)  # evidence comes in key order
        kept = [i for i in ids if (i.type, i.value) not in self.rules.isolated] or ids[:1]
        linkable = [i for i in kept if not self._spent(i)] or kept[:1]
        spent = [i for i in kept if i not in linkable]
        refusals = []
        while len(linkable) > 1 and not self._together(linkable) and (conflict := self._conflict(linkable)):
            dropped = self._excess(linkable, conflict)
            linkable.remove(dropped)  # then try again
            refusals.append(Refusal(evidence.message_id, dropped, *conflict))
        refusals = [replace(r, shares=self._breaks_limit(linkable, r)) for r in refusals]
        refusals += [self._refused_shared(evidence.message_id, i, linkable)
                     for i in spent if self.group_of[i] is not self.group_of[linkable[0]]]
        for i in linkable[1:]:
            self._union(linkable[0], i)
        return linkable[0], refusals

    def _together(self, identifiers: list[Identifier]) -> bool:
        """All in one profile already: linking them merges nothing, so there is nothing to
        refuse (most events of a known person; checking their profile's limits again cost a
        count, and a sort of its sightings per window, every event)."""
        group = self.group_of[identifiers[0]]
        return all(self.group_of[i] is group for i in identifiers)

    def _excess(self, linkable: list[Identifier], conflict: Conflict) -> Identifier:
        """The identifier to drop: for a crowded window, the event's latest sighting in it (by
        first seen, then value), else the event's weakest identifier."""
        type_, _, crowd, window_hours = conflict
        in_crowd = [i for i in linkable[1:] if window_hours and i.type == type_ and i.value in crowd]
        return max(in_crowd, key=lambda i: (self.first_seen[i], i.value)) if in_crowd else linkable[-1]

    def _spent(self, identifier: Identifier) -> bool:
        """A shared identifier that joined a profile already (its group only grows by its own links)."""
        return identifier in self.shared and len(self.group_of[identifier]) > 1

    def _breaks_limit(self, kept: list[Identifier], refusal: Refusal) -> bool:
        """Whether the dropped identifier's own profile breaks a count limit with what the event
        kept (a tablet holding another user id), rather than being dropped as the event's weakest."""
        return refusal.window_hours is None and self._conflict([*kept, refusal.dropped], windows=False) is not None

    def _refused_shared(self, message_id: str, identifier: Identifier, kept: list[Identifier]) -> Refusal:
        conflict = self._conflict([*kept, identifier])
        if conflict:  # say which limit linking it would break, as for any other refusal
            return Refusal(message_id, identifier, *conflict)
        holder = min(self.group_of[identifier] - {identifier}, key=self.rules.rank)
        return Refusal(message_id, identifier, SHARED, 1, (f"{holder.type} {holder.value}",))

    def _conflict(self, kept: list[Identifier], windows: bool = True) -> Conflict | None:
        union = set().union(*(self.group_of[i] for i in kept))
        counts = Counter(i.type for i in union)
        ordered = sorted(counts, key=lambda t: (self.rules.rule(t).priority, t))
        for type_ in ordered:
            limit = self.rules.rule(type_).limit
            if limit is not None and counts[type_] > limit:
                return type_, limit, tuple(sorted(i.value for i in union if i.type == type_)), None
        for type_ in ordered if windows else ():
            rule = self.rules.rule(type_)
            if rule.window_limit is not None and counts[type_] > rule.window_limit:
                crowded = crowded_window([(self.first_seen[i], i.value) for i in union if i.type == type_],
                                         rule.window_limit, rule.window_hours)
                if crowded:
                    return type_, rule.window_limit, crowded, rule.window_hours
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
        return profile_named(self.group_of[identifier], self.rules)

    def owners(self) -> dict[Identifier, str]:
        named: dict[int, str] = {}
        for group in self.group_of.values():  # an entry per identifier: name each group once
            if id(group) not in named:
                named[id(group)] = profile_named(group, self.rules)
        return {i: named[id(g)] for i, g in self.group_of.items()}

    def newly_shared(self, refusals: Iterable[Refusal]) -> set[Identifier]:
        return {r.dropped for r in refusals if r.shares and r.dropped not in self.shared}


def profile_named(group: Iterable[Identifier], rules: Rules) -> str:
    """A profile is named after its strongest identifier."""
    return new_profile_id(min(group, key=rules.rank))


def crowded_window(sightings: Iterable[tuple[str, str]], limit: int, hours: int) -> tuple[str, ...]:
    """The values of the latest window of `hours` holding more than `limit` first sightings
    ((timestamp, value) pairs, ordered by both so ties are deterministic), or (). The latest,
    because linking in key order makes the newest sightings the excess ones."""
    ordered = sorted(sightings)
    times = [_instant(at) for at, _ in ordered]
    start, crowded = 0, ()
    for end, at in enumerate(times):
        while at - times[start] >= timedelta(hours=hours):
            start += 1
        if end - start + 1 > limit:
            crowded = tuple(value for _, value in ordered[start:end + 1])
    return crowded


@lru_cache(maxsize=65536)
def _instant(at: str) -> datetime:
    return datetime.fromisoformat(at)


@dataclass(frozen=True)
class Outcome:
    owners: dict[Identifier, str]  # identifier -> profile id
    event_profiles: dict[str, str]  # message id -> profile id
    refusals: list[Refusal]
    shared: frozenset[Identifier] = frozenset()
    first_seen: dict[Identifier, str] = field(default_factory=dict)


def partition(evidence: Iterable[Evidence], rules: Rules) -> Outcome:
    """The profiles that a set of evidence makes, whatever order it arrived in.

    An identifier that merge protection drops because its own profile breaks a limit (a
    family tablet meeting a second user id) is shared: it may join the first profile that
    claims it, by key order, and links nothing after. Finding one means linking again from
    the first item with it marked: two passes or more, each a function of the evidence set,
    so the outcome is one too (docs/identity.md)."""
    items, shared = _deduplicated(evidence), frozenset()
    while True:
        outcome, found = _linked(items, rules, shared)
        if not found:
            return outcome
        shared |= found


def _linked(items: list[Evidence], rules: Rules, shared: frozenset[Identifier]
            ) -> tuple[Outcome | None, set[Identifier]]:
    """One pass in key order; stops at the first identifier found to be shared."""
    graph, anchors, refusals = Graph(rules, shared=shared), {}, []
    for item in items:
        anchors[item.message_id], refused = graph.link(item)
        if found := graph.newly_shared(refused):
            return None, found
        refusals += refused
    owners = graph.owners()
    return Outcome(owners, {m: owners[a] for m, a in anchors.items()}, refusals, shared,
                   graph.first_seen), set()


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
