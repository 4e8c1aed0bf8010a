"""Traits: per trait, the write with the latest event timestamp wins.

Ties on the timestamp are broken by messageId, so the winner does not depend on
delivery order. A null is a write too: it unsets the trait and stops an older value
from coming back.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.runtime.envelope import as_object, stated_traits


@dataclass(frozen=True)
class TraitValue:
    value: Any
    at: datetime
    message_id: str
    source: str | None = None

    def beats(self, other: "TraitValue | None") -> bool:
        return other is None or (self.at, self.message_id) > (other.at, other.message_id)


traits_of = stated_traits


def consent_of(event: dict) -> dict[str, bool]:
    """Consent an event states: context.consent.categoryPreferences, purpose -> given."""
    preferences = as_object(as_object(as_object(event.get("context")).get("consent")).get("categoryPreferences"))
    return {str(purpose)[:64]: given for purpose, given in preferences.items() if isinstance(given, bool)}


def winners(current: Mapping[str, TraitValue], incoming: Mapping[str, TraitValue]) -> dict[str, TraitValue]:
    """The incoming values that beat the current ones (what to write)."""
    return {name: value for name, value in incoming.items() if value.beats(current.get(name))}


def visible(traits: Mapping[str, TraitValue]) -> dict[str, Any]:
    """The trait values a reader sees (unset traits left out)."""
    return {name: t.value for name, t in sorted(traits.items()) if t.value is not None}
