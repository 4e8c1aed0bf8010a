"""Which identifiers an event carries, normalised so that equal people match."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.runtime.envelope import stated_traits

# Lower number = higher priority; the profile id of a new person derives from the
# highest-priority identifier it was first seen with.
PRIORITY = {"user_id": 1, "email": 2, "anonymous_id": 3}

BLOCKED_VALUES = frozenset({"", "null", "none", "undefined", "nan", "0", "-1", "anonymous",
                            "test@test.com"})


@dataclass(frozen=True, order=True)
class Identifier:
    type: str
    value: str

    @property
    def priority(self) -> int:
        return PRIORITY.get(self.type, len(PRIORITY) + 1)


def normalise(kind: str, value: Any) -> str | None:
    """The matching form of a value, or None when it must never link anything."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    if kind == "email":
        text = text.lower()
        if "@" not in text:
            return None
    return None if text.lower() in BLOCKED_VALUES else text


def identifiers_of(event: dict) -> list[Identifier]:
    """userId, anonymousId and email (from traits or context.traits), blocked values left out."""
    traits = stated_traits(event)
    found = {("user_id", event.get("userId")), ("anonymous_id", event.get("anonymousId")),
             ("email", traits.get("email"))}
    normalised = {Identifier(kind, value) for kind, raw in found
                  if (value := normalise(kind, raw)) is not None}
    return sorted(normalised, key=lambda i: (i.priority, i.value))
