"""Segment conditions: a JSON tree, checked when defined and evaluated on a profile.

    {"trait": "plan", "equals": "pro"}
    {"and": [cond, ...]}   {"or": [cond, ...]}   {"not": cond}
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ConditionError(ValueError):
    """A definition that can't be evaluated, with the path to the offending part."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


OPERATORS = ("trait", "and", "or", "not")


def validate(condition: Any, path: str = "condition") -> None:
    if not isinstance(condition, dict) or not condition:
        raise ConditionError(path, "must be an object with one of: trait, and, or, not")
    unknown = [key for key in condition if key not in (*OPERATORS, "equals")]
    if unknown:
        raise ConditionError(path, f"unknown operator {unknown[0]!r}")
    operators = [key for key in condition if key in OPERATORS]
    if len(operators) != 1:
        raise ConditionError(path, "must have exactly one of: trait, and, or, not")
    if "equals" in condition and "trait" not in condition:
        raise ConditionError(f"{path}.equals", "goes only with trait")
    if "trait" in condition:
        if not isinstance(condition["trait"], str) or not condition["trait"]:
            raise ConditionError(f"{path}.trait", "must be a non-empty string")
        if "equals" not in condition:
            raise ConditionError(f"{path}.equals", "is required with trait")
    elif "not" in condition:
        validate(condition["not"], f"{path}.not")
    elif "and" in condition or "or" in condition:
        op = "and" if "and" in condition else "or"
        parts = condition[op]
        if not isinstance(parts, list) or not parts:
            raise ConditionError(f"{path}.{op}", "must be a non-empty list")
        for i, part in enumerate(parts):
            validate(part, f"{path}.{op}[{i}]")


def same_value(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1 and false is not 0 (as Python's == would have it)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def evaluate(condition: Mapping[str, Any], traits: Mapping[str, Any]) -> bool:
    if "trait" in condition:
        return condition["trait"] in traits and same_value(traits[condition["trait"]], condition["equals"])
    if "not" in condition:
        return not evaluate(condition["not"], traits)
    if "and" in condition:
        return all(evaluate(part, traits) for part in condition["and"])
    return any(evaluate(part, traits) for part in condition["or"])
