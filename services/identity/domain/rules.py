"""Identity rules: identifier types (priority, per-profile limit, where they are read
from, how they are normalised) and values that never link. Loaded from a JSON file
whose entries override the documented defaults below (see docs/identity.md)."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

# Lower priority number = stronger identifier. limit: identifiers of that type one
# profile may hold (None: no limit). window_limit: identifiers of that type one profile may
# gain within any window_hours, counted by when each was first seen (event time); a person
# gets a few new browsers a day, a bot or a broken SDK one per event. sources: dotted paths
# into the event, or "externalId:<type>" for entries of context.externalIds.
DEFAULT_TYPES: dict[str, dict[str, Any]] = {
    "user_id": {"priority": 1, "limit": 1, "kind": "id", "sources": ["userId"]},
    "shop_customer_id": {"priority": 2, "limit": 1, "kind": "id",
                         "sources": ["externalId:shop_customer_id", "externalId:shopify_customer_id"]},
    "helpdesk_requester_id": {"priority": 3, "limit": 1, "kind": "id",
                              "sources": ["externalId:helpdesk_requester_id",
                                          "externalId:zendesk_requester_id"]},
    "email": {"priority": 4, "limit": 5, "kind": "email",
              "sources": ["traits.email", "context.traits.email"]},
    "phone": {"priority": 5, "limit": 5, "kind": "phone",
              "sources": ["traits.phone", "context.traits.phone"]},
    **{f"social:{platform}": {"priority": 6, "limit": 1, "kind": "handle",
                              "sources": [f"externalId:{platform}"]}
       for platform in ("twitter", "instagram", "facebook", "tiktok", "linkedin")},
    "device_id": {"priority": 7, "limit": 10, "kind": "id", "sources": ["context.device.id"]},
    "anonymous_id": {"priority": 8, "limit": 200, "window_limit": 10, "window_hours": 24, "kind": "id",
                     "sources": ["anonymousId"]},
}
# context.externalIds types that no rule names become identifier types of their own.
DEFAULT_CUSTOM = {"priority": 20, "limit": 1, "kind": "id"}
EXTERNAL = "externalId:"  # a source naming a context.externalIds type
DEFAULT_BLOCKED_VALUES = ("", "null", "none", "undefined", "nan", "0", "-1", "anonymous",
                          "test@test.com", "n/a", "unknown")


@dataclass(frozen=True)
class TypeRule:
    name: str
    priority: int
    limit: int | None
    kind: str = "id"  # id | email | phone | handle: which normaliser applies
    sources: tuple[str, ...] = ()
    window_limit: int | None = None  # at most this many first seen within any window_hours
    window_hours: int = 24


@dataclass(frozen=True)
class Rules:
    types: Mapping[str, TypeRule]
    custom: TypeRule = TypeRule("custom", **DEFAULT_CUSTOM)
    blocked_values: frozenset[str] = frozenset(DEFAULT_BLOCKED_VALUES)
    blocked_patterns: tuple[re.Pattern, ...] = ()
    default_phone_region: str | None = None
    blocked: frozenset[tuple[str, str]] = frozenset()  # (type, value) an operator blocked
    isolated: frozenset[tuple[str, str]] = frozenset()  # (type, value) an operator unlinked

    def rule(self, type_: str) -> TypeRule:
        return self.types.get(type_) or replace(self.custom, name=type_)

    @cached_property
    def reading_plan(self) -> dict[str, list[tuple[str | None, tuple[str, ...]]]]:
        """Each type's sources split once (every event reads them): (externalIds type, ())
        or (None, a dotted path's parts)."""
        return {name: [(s[len(EXTERNAL):], ()) if s.startswith(EXTERNAL) else (None, tuple(s.split(".")))
                       for s in rule.sources] for name, rule in self.types.items()}

    @cached_property
    def normal_forms(self) -> dict[tuple[str, str], str | None]:
        """identifiers.normalise's answers for these rules, (type, text) -> normal form."""
        return {}

    @cached_property
    def path_plan(self) -> dict[str, list[tuple[None, tuple[str, ...]]]]:
        """reading_plan without the context.externalIds sources: all an event without
        externalIds (nearly every one) can state."""
        plan = {name: [(None, path) for external, path in sources if external is None]
                for name, sources in self.reading_plan.items()}
        return {name: sources for name, sources in plan.items() if sources}

    @cached_property
    def priorities(self) -> dict[str, int]:
        return {name: rule.priority for name, rule in self.types.items()}

    def rank(self, identifier) -> tuple:
        """Strongest first; a total order, so every tie-break built on it is deterministic."""
        return (self.priorities.get(identifier.type, self.custom.priority), identifier.type, identifier.value)

    def is_blocked(self, type_: str, value: str) -> bool:
        return (value.lower() in self.blocked_values or (type_, value) in self.blocked
                or any(p.fullmatch(value) for p in self.blocked_patterns))

    def with_operator_overrides(self, blocked: Iterable[tuple[str, str]],
                                isolated: Iterable[tuple[str, str]]) -> "Rules":
        return replace(self, blocked=self.blocked | frozenset(blocked),
                       isolated=self.isolated | frozenset(isolated))

    def as_json(self) -> dict:
        """A document build_rules takes back unchanged (default types switched off are null)."""
        off = {n: None for n in DEFAULT_TYPES if n not in self.types}
        return {"types": {**off, **{n: _rule_json(r) for n, r in sorted(self.types.items())}},
                "custom": _rule_json(self.custom), "blocked_values": sorted(self.blocked_values),
                "blocked_patterns": [p.pattern for p in self.blocked_patterns],
                "default_phone_region": self.default_phone_region}


def _rule_json(rule: TypeRule) -> dict:
    return {"priority": rule.priority, "limit": rule.limit, "window_limit": rule.window_limit,
            "window_hours": rule.window_hours, "kind": rule.kind, "sources": list(rule.sources)}


def build_rules(config: Mapping[str, Any] | None = None) -> Rules:
    """Defaults overridden by `config` (the JSON file's content); raises ValueError when invalid."""
    if not isinstance(config or {}, Mapping) or not isinstance((config or {}).get("types", {}), Mapping):
        raise ValueError("identity rules must be an object, and their types an object")
    config = dict(config or {})
    unknown = set(config) - {"types", "custom", "blocked_values", "extra_blocked_values",
                             "blocked_patterns", "default_phone_region"}
    if unknown:
        raise ValueError(f"unknown identity rule settings: {', '.join(sorted(unknown))}")
    for key in ("blocked_values", "extra_blocked_values", "blocked_patterns"):
        if not isinstance(config.get(key, []), list):
            raise ValueError(f"identity rule setting {key!r} must be a list")
    types = {name: _type_rule(name, DEFAULT_TYPES.get(name, {}), given)
             for name, given in {**{n: {} for n in DEFAULT_TYPES}, **config.get("types", {})}.items()
             if given is not None}  # a type set to null is switched off
    blocked = config.get("blocked_values", DEFAULT_BLOCKED_VALUES)
    return Rules(types=types, custom=_type_rule("custom", DEFAULT_CUSTOM, config.get("custom", {})),
                 blocked_values=frozenset(str(v).strip().lower() for v in
                                          [*blocked, *config.get("extra_blocked_values", [])]),
                 blocked_patterns=tuple(_pattern(p) for p in config.get("blocked_patterns", [])),
                 default_phone_region=config.get("default_phone_region"))


def _pattern(text: str) -> re.Pattern:
    try:
        return re.compile(text, re.IGNORECASE)
    except (re.error, TypeError) as error:
        raise ValueError(f"blocked pattern {text!r} is not a regular expression: {error}") from None


def _type_rule(name: str, default: Mapping, given: Mapping) -> TypeRule:
    if not isinstance(given, Mapping):
        raise ValueError(f"identity rule {name!r} must be an object or null")
    merged = {**default, **given}
    if not isinstance(merged.get("priority"), int):
        raise ValueError(f"identity rule {name!r}: priority must be an integer")
    for key in ("limit", "window_limit"):
        if not _positive_or_null(merged.get(key)):
            raise ValueError(f"identity rule {name!r}: {key} must be a positive integer or null")
    if merged.get("window_hours", 24) is None or not _positive_or_null(merged.get("window_hours", 24)):
        raise ValueError(f"identity rule {name!r}: window_hours must be a positive integer")
    if merged.get("kind", "id") not in ("id", "email", "phone", "handle"):
        raise ValueError(f"identity rule {name!r}: kind must be id, email, phone or handle")
    if not isinstance(merged.get("sources", ()), (list, tuple)):
        raise ValueError(f"identity rule {name!r}: sources must be a list")
    return TypeRule(name, merged["priority"], merged.get("limit"), merged.get("kind", "id"),
                    tuple(merged.get("sources", ())), merged.get("window_limit"),
                    merged.get("window_hours", 24))


def _positive_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)


def load_rules(path: Path | str | None) -> Rules:
    """The rules in the JSON file at `path`, or the defaults when there is none."""
    if not path:
        return DEFAULT_RULES
    return build_rules(json.loads(Path(path).read_text()))


DEFAULT_RULES = build_rules()
