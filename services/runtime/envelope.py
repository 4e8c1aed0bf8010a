"""Pure reading of the canonical event envelope that every service receives."""
from __future__ import annotations

from typing import Any


def as_object(value: Any) -> dict:
    """`value` when it is a JSON object, else empty: a malformed part never stops a consumer."""
    return value if isinstance(value, dict) else {}


def stated_traits(event: dict) -> dict[str, Any]:
    """Traits an event states: any event's context.traits, overridden by identify's traits."""
    return {**as_object(as_object(event.get("context")).get("traits")), **as_object(event.get("traits"))}
