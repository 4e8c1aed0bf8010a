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


def validate(condition: Any, path: str = "condition") -> None:
    if not isinstance(condition, dict) or len(condition.keys() - {"equals"}) != 1:
        raise ConditionError(path, "must be an object with one of: trait, and, or, not")
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
    else:
        raise ConditionError(path, f"unknown operator {next(iter(condition))!r}")


def evaluate(condition: Mapping[str, Any], traits: Mapping[str, Any]) -> bool:
    if "trait" in condition:
        return condition["trait"] in traits and traits[condition["trait"]] == condition["equals"]
    if "not" in condition:
        return not evaluate(condition["not"], traits)
    if "and" in condition:
        return all(evaluate(part, traits) for part in condition["and"])
    return any(evaluate(part, traits) for part in condition["or"])
