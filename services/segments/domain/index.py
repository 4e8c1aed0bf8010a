"""Which segments to re-evaluate when a profile changes, and in which order (pure)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from services.segments.domain.conditions import ProfileFacts, evaluate, reads, referenced_segments


def effective_condition(condition: dict, requires_consent: str | None) -> dict:
    """A segment that requires a consent purpose holds only profiles that gave it, so
    members without it are never exported, listed, fed or published."""
    return {"and": [condition, {"consent": requires_consent}]} if requires_consent else condition


class SegmentIndex:
    """Segments by the facts they read, in dependency order (a segment after those it reads)."""

    def __init__(self, conditions: Mapping[str, dict]):
        self.conditions = dict(conditions)
        self.reads = {key: reads(c) for key, c in self.conditions.items()}
        self.ordered = self._dependency_order()

    def _dependency_order(self) -> list[str]:
        done: list[str] = []
        def visit(key: str, trail: frozenset) -> None:
            if key in done or key not in self.conditions or key in trail:
                return
            for name in sorted(referenced_segments(self.conditions[key])):
                visit(name, trail | {key})
            done.append(key)
        for key in sorted(self.conditions):
            visit(key, frozenset())
        return done

    def affected(self, changed_facts: Iterable[str] | None) -> list[str]:
        """Segments reading any changed fact, and the segments that read those, in order.
        None means "anything may have changed"."""
        if changed_facts is None:
            return list(self.ordered)
        facts = set(changed_facts)
        hit: set[str] = set()
        for key in self.ordered:  # dependency order: a dependent comes after what it reads
            if self.reads[key] & facts or any(f"segment.{k}" in self.reads[key] for k in hit):
                hit.add(key)
        return [key for key in self.ordered if key in hit]

    def dependents_of(self, keys: set[str]) -> list[str]:
        """`keys` and every segment reading them, directly or not, in order."""
        closure = set(keys)
        for key in self.ordered:  # dependents come after what they read: one pass suffices
            if any(f"segment.{k}" in self.reads[key] for k in closure):
                closure.add(key)
        return [key for key in self.ordered if key in closure]


def changed_facts(names: Iterable[str] | None, stage_changed: bool, consent_changed: set[str]) -> set[str] | None:
    """The dependency-index names of what a profile change touched (traits and computed
    traits share one name list, so a name counts as both)."""
    if names is None:
        return None
    facts = {f"{kind}.{n}" for n in names for kind in ("traits", "computed")}
    facts |= {f"consent.{p}" for p in consent_changed}
    return facts | ({"stage"} if stage_changed else set())


def membership_changes(index: SegmentIndex, keys: Iterable[str], facts: ProfileFacts | None,
                       current: Iterable[str]) -> list[tuple[str, bool]]:
    """(segment, entered) for each of `keys` whose membership flips, evaluated in the order
    given (dependency order), each seeing the flips before it; no facts (a profile that is
    gone) exits everything."""
    members, changes = set(current), []
    for key in keys:
        member = facts is not None and evaluate(index.conditions[key], replace(facts, segments=frozenset(members)))
        if member != (key in members):
            changes.append((key, member))
            members ^= {key}
    return changes
