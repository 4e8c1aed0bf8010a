"""A profile's events as the pure rules see them."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


# slots and not frozen: a batch builds one per event of every changed profile, and a frozen
# dataclass's __init__ costs four times as much; the rules only read them.
@dataclass(slots=True)
class TimelineEvent:
    message_id: str
    type: str  # track, identify, page, screen, ...
    name: str | None  # the track event's name
    at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    channel: str | None = None  # where it happened: web, mobile, social, shop, helpdesk, ...

    def matches(self, name: str | None, where: dict[str, Any]) -> bool:
        """Is this an event of `name` (any when None) whose properties equal `where`?"""
        if name is not None and self.name != name:
            return False
        return all(self.properties.get(key) == value for key, value in where.items())
