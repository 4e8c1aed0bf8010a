"""Conditions compiled to a set-based predicate over stored profiles (pure).

The result is a small tree that a database edge renders as SQL (segments/predicate_sql.py);
it means exactly what `evaluate` means, JSON semantics included: true is not 1, a string
is never a number, a missing name is not null, `!=` needs the name present. Every leaf is
two-valued (never SQL NULL), so `not` negates as Python does.

A condition compiles only if all its leaves do; the others are evaluated in Python.
Only names of printable ASCII without a double quote or a backslash compile: SQLite's JSON
paths can't spell those, and a non-ASCII key is stored escaped, which its paths don't match.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from services.segments.domain.conditions import event_trait


@dataclass(frozen=True)
class AllOf:
    parts: tuple["Predicate", ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple["Predicate", ...]


@dataclass(frozen=True)
class Negated:
    part: "Predicate"


@dataclass(frozen=True)
class JsonTest:
    """A test of `document[name]`, where document is traits, computed or consent.

    test: present (key there, any value), not_null (there and not null), equals (same
    JSON scalar), text_contains (a string holding `value`), element (an array with an
    element equal to `value`), number (a number `op` value), text (a string `op` value,
    by code point)."""

    document: str
    name: str
    test: str
    value: Any = None
    op: str = "="


@dataclass(frozen=True)
class StageIs:
    stage: str


@dataclass(frozen=True)
class MemberOf:
    segment: str


Predicate = Union[AllOf, AnyOf, Negated, JsonTest, StageIs, MemberOf]


def compilable_name(name: str) -> bool:
    return all(" " <= c <= "~" and c not in '"\\' for c in name)


def compile_condition(condition: dict) -> Predicate | None:
    """The predicate of a canonical condition, or None if some leaf doesn't compile."""
    for kind, build in (("and", AllOf), ("or", AnyOf)):
        if kind in condition:
            parts = [compile_condition(part) for part in condition[kind]]
            return None if any(p is None for p in parts) else build(tuple(parts))
    if "not" in condition:
        part = compile_condition(condition["not"])
        return None if part is None else Negated(part)
    return _leaf(condition)


def _leaf(leaf: dict) -> Predicate | None:
    if "stage" in leaf:
        return StageIs(leaf["stage"])
    if "in_segment" in leaf:
        return MemberOf(leaf["in_segment"])
    if "consent" in leaf:
        return _json("consent", leaf["consent"], "equals", True)
    if "event" in leaf:  # the count trait the profile service keeps, at least n
        return _json("computed", event_trait(leaf)["name"], "number", leaf.get("at_least", 1), ">=")
    document = "traits" if "trait" in leaf else "computed"
    name = leaf["trait"] if "trait" in leaf else leaf["computed"]
    return comparison(document, name, leaf.get("op", "="), leaf.get("value", leaf.get("equals")))


def comparison(document: str, name: str, op: str, value: Any) -> Predicate | None:
    """`compare(document.get(name), op, value)` of conditions.py, with the name present."""
    if op == "exists":
        return _json(document, name, "not_null")
    if op in ("=", "!="):
        equal = _json(document, name, "equals", value)
        return equal if op == "=" or equal is None else AllOf((_json(document, name, "present"), Negated(equal)))
    if op == "contains":
        element = _json(document, name, "element", value)
        if not isinstance(value, str) or element is None:
            return element
        return AnyOf((_json(document, name, "text_contains", value), element))
    kind = "text" if isinstance(value, str) else "number"
    return _json(document, name, kind, value, op)


def _json(document: str, name: str, test: str, value: Any = None, op: str = "=") -> JsonTest | None:
    return JsonTest(document, name, test, value, op) if compilable_name(name) else None
