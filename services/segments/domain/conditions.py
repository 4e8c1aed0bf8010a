"""Segment conditions: a JSON tree (stored) with a text form that round-trips.

    {"and": [c, ...]}  {"or": [c, ...]}  {"not": c}
    {"trait": "country", "op": "=", "value": "DE"}          text: traits.country = "DE"
    {"computed": "orders_30d", "op": ">=", "value": 2}      text: orders_30d >= 2
    {"event": "Order Completed", "at_least": 2, "within": "30d", "where": {"coupon": "X"}}
                        text: did "Order Completed" at least 2 times within 30d where {coupon = "X"}
    {"stage": "customer"}   {"consent": "email"}   {"in_segment": "vip"}
Operators: = != > >= < <= contains exists. The older {"trait": t, "equals": v} is read as
{"trait": t, "op": "=", "value": v}.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OPS = ("=", "!=", ">", ">=", "<", "<=", "contains", "exists")
LEAVES = ("trait", "computed", "event", "stage", "consent", "in_segment")
WINDOW_UNITS = "mhdw"


class ConditionError(ValueError):
    """A definition that can't be evaluated, with the path to the offending part."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


@dataclass(frozen=True)
class ProfileFacts:
    """What a condition can read of a profile."""

    traits: Mapping[str, Any] = field(default_factory=dict)
    computed: Mapping[str, Any] = field(default_factory=dict)
    stage: str | None = None
    consent: Mapping[str, bool] = field(default_factory=dict)
    segments: frozenset[str] = frozenset()


# --- checking -------------------------------------------------------------------------

def normalise(condition: Any, path: str = "condition") -> dict:
    """The canonical tree, or a ConditionError naming the offending part."""
    if not isinstance(condition, dict) or not condition:
        raise ConditionError(path, "must be an object with one of: and, or, not, " + ", ".join(LEAVES))
    kinds = [k for k in condition if k in ("and", "or", "not", *LEAVES)]
    unknown = [k for k in condition if k not in ("and", "or", "not", *LEAVES, "op", "value", "equals",
                                                 "at_least", "within", "where")]
    if unknown:
        raise ConditionError(path, f"unknown operator {unknown[0]!r}")
    if len(kinds) != 1:
        raise ConditionError(path, "must have exactly one of: and, or, not, " + ", ".join(LEAVES))
    kind = kinds[0]
    if kind in ("and", "or"):
        parts = condition[kind]
        if not isinstance(parts, list) or not parts:
            raise ConditionError(f"{path}.{kind}", "must be a non-empty list")
        parts = [normalise(part, f"{path}.{kind}[{i}]") for i, part in enumerate(parts)]
        return parts[0] if len(parts) == 1 else {kind: parts}  # one part needs no and/or
    if kind == "not":
        return {"not": normalise(condition["not"], f"{path}.not")}
    return _leaf(kind, condition, path)


def _leaf(kind: str, condition: dict, path: str) -> dict:
    name = condition[kind]
    if not isinstance(name, str) or not name:
        raise ConditionError(f"{path}.{kind}", "must be a non-empty string")
    extra = set(condition) - {kind} - {"trait": {"op", "value", "equals"}, "computed": {"op", "value"},
                                       "event": {"at_least", "within", "where"}}.get(kind, set())
    if extra:
        raise ConditionError(f"{path}.{sorted(extra)[0]}", f"does not go with {kind}")
    if kind in ("trait", "computed"):
        return _comparison(kind, name, condition, path)
    if kind == "event":
        return _event(name, condition, path)
    return {kind: name}


def _comparison(kind: str, name: str, condition: dict, path: str) -> dict:
    if "equals" in condition:
        if "op" in condition:
            raise ConditionError(f"{path}.equals", "goes without op")
        return {kind: name, "op": "=", "value": condition["equals"]}
    op = condition.get("op")
    if op not in OPS:
        raise ConditionError(f"{path}.op", f"must be one of {', '.join(OPS)}")
    if op == "exists":
        return {kind: name, "op": op}
    if "value" not in condition:
        raise ConditionError(f"{path}.value", f"is required with {op}")
    value = condition["value"]
    if isinstance(value, float) and not math.isfinite(value):
        raise ConditionError(f"{path}.value", "must be a finite number")
    if isinstance(value, (dict, list)):
        raise ConditionError(f"{path}.value", "must be a string, number, boolean or null")
    if op in (">", ">=", "<", "<=") and not (isinstance(value, (int, float, str)) and not isinstance(value, bool)):
        raise ConditionError(f"{path}.value", f"{op} compares numbers or strings")
    return {kind: name, "op": op, "value": value}


def _event(name: str, condition: dict, path: str) -> dict:
    event: dict[str, Any] = {"event": name}
    at_least = condition.get("at_least", 1)
    if not isinstance(at_least, int) or isinstance(at_least, bool) or at_least < 1:
        raise ConditionError(f"{path}.at_least", "must be a whole number >= 1")
    event["at_least"] = at_least
    within = condition.get("within")
    if within is not None:
        if not (isinstance(within, str) and within[:-1].isdigit() and within[-1:] in WINDOW_UNITS
                and int(within[:-1]) > 0):
            raise ConditionError(f"{path}.within", "must be a window such as 30d, 12h, 2w or 90m")
        event["within"] = within
    where = condition.get("where") or {}
    if not isinstance(where, dict) or any(isinstance(v, (dict, list)) for v in where.values()):
        raise ConditionError(f"{path}.where", "must map property names to plain values")
    if where:
        event["where"] = dict(sorted(where.items()))
    return event


def referenced_segments(condition: dict) -> set[str]:
    return {leaf["in_segment"] for leaf in leaves(condition) if "in_segment" in leaf}


def check_references(key: str, condition: dict, others: Mapping[str, dict]) -> None:
    """Every referenced segment exists, and none leads back to `key` (a cycle)."""
    for name in sorted(referenced_segments(condition)):
        if name != key and name not in others:
            raise ConditionError("condition", f"in_segment({name!r}): no such segment")
    seen, stack = set(), [(name, [key, name]) for name in referenced_segments(condition)]
    while stack:
        name, trail = stack.pop()
        if name == key:
            raise ConditionError("condition", "segments may not depend on themselves: " + " -> ".join(trail))
        if name in seen:
            continue
        seen.add(name)
        stack += [(n, trail + [n]) for n in referenced_segments(others.get(name, {}))]


# --- reading --------------------------------------------------------------------------

def leaves(condition: dict):
    for kind in ("and", "or"):
        if kind in condition:
            for part in condition[kind]:
                yield from leaves(part)
            return
    if "not" in condition:
        yield from leaves(condition["not"])
        return
    yield condition


def event_trait(leaf: dict) -> dict:
    """The computed trait that counts an event condition's events (the profile service
    keeps it, windows included, and recomputes it on time)."""
    spec = {k: leaf[k] for k in ("event", "within", "where") if k in leaf}
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    trait = {"name": f"seg_event_{digest}", "function": "count", "event": leaf["event"],
             "where": leaf.get("where", {})}
    return trait | ({"window": leaf["within"]} if "within" in leaf else {})


def reads(condition: dict) -> set[str]:
    """The profile facts a condition reads: its entry in the dependency index."""
    found = set()
    for leaf in leaves(condition):
        if "trait" in leaf:
            found.add(f"traits.{leaf['trait']}")
        elif "computed" in leaf:
            found.add(f"computed.{leaf['computed']}")
        elif "event" in leaf:
            found.add(f"computed.{event_trait(leaf)['name']}")
        elif "stage" in leaf:
            found.add("stage")
        elif "consent" in leaf:
            found.add(f"consent.{leaf['consent']}")
        else:
            found.add(f"segment.{leaf['in_segment']}")
    return found


# --- evaluating -----------------------------------------------------------------------

def same_value(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1 and false is not 0 (as Python's == would have it)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def compare(actual: Any, op: str, expected: Any = None) -> bool:
    if op == "exists":
        return actual is not None
    if op == "=":
        return same_value(actual, expected)
    if op == "!=":
        return not same_value(actual, expected)
    if op == "contains":
        if isinstance(actual, str) and isinstance(expected, str):
            return expected in actual
        return isinstance(actual, list) and any(same_value(a, expected) for a in actual)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (actual, expected))
    if not numbers and not (isinstance(actual, str) and isinstance(expected, str)):
        return False
    return {">": actual > expected, ">=": actual >= expected,
            "<": actual < expected, "<=": actual <= expected}[op]


def evaluate(condition: Mapping[str, Any], facts: ProfileFacts | Mapping[str, Any]) -> bool:
    """Does the profile meet the (canonical) condition? A plain mapping is taken as traits."""
    if not isinstance(facts, ProfileFacts):
        facts = ProfileFacts(traits=facts)
    if "and" in condition:
        return all(evaluate(part, facts) for part in condition["and"])
    if "or" in condition:
        return any(evaluate(part, facts) for part in condition["or"])
    if "not" in condition:
        return not evaluate(condition["not"], facts)
    if "trait" in condition or "computed" in condition:
        kind = "trait" if "trait" in condition else "computed"
        source = facts.traits if kind == "trait" else facts.computed
        op = condition.get("op", "=")
        expected = condition.get("value", condition.get("equals"))
        return condition[kind] in source and compare(source[condition[kind]], op, expected) \
            if op != "exists" else compare(source.get(condition[kind]), op)
    if "event" in condition:
        return compare(facts.computed.get(event_trait(condition)["name"]), ">=", condition.get("at_least", 1))
    if "stage" in condition:
        return facts.stage == condition["stage"]
    if "consent" in condition:
        return facts.consent.get(condition["consent"]) is True
    return condition["in_segment"] in facts.segments


def validate(condition: Any, path: str = "condition") -> None:
    """Raise a ConditionError naming the offending part, if any."""
    normalise(condition, path)
