"""Computed traits: aggregations over a profile's timeline, optionally in a sliding window.

A computed trait is recomputed from the profile's de-duplicated timeline, never
incremented: after a merge (timelines united by messageId) or an unmerge (split),
the value is what it would have been had the profiles always been one, or never.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from services.profile.domain.timeline import TimelineEvent

Function = Literal["count", "sum", "avg", "min", "max", "first", "last", "unique", "most_frequent"]
NEEDS_PROPERTY = {"sum", "avg", "min", "max", "unique", "most_frequent"}
WINDOW = re.compile(r"^(\d+)([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_window(text: str) -> timedelta:
    match = WINDOW.match(text)
    if not match:
        raise ValueError("must be a number and a unit m, h, d or w, e.g. 30d")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


class ComputedTrait(BaseModel):
    """e.g. {"name": "orders_30d", "function": "count", "event": "Order Completed", "window": "30d"}"""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    function: Function
    event: str | None = Field(None, description="event name; any track event when absent")
    property: str | None = Field(None, description="the property aggregated (first/last: the "
                                                   "event time when absent)")
    where: dict[str, Any] = Field(default_factory=dict, description="property equality filters")
    window: str | None = Field(None, description="sliding window such as 7d, 30d, 90d")

    @field_validator("window")
    @classmethod
    def _window(cls, window: str | None) -> str | None:
        if window is not None:
            parse_window(window)
        return window

    @model_validator(mode="after")
    def _property_where_needed(self):
        if self.function in NEEDS_PROPERTY and not self.property:
            raise ValueError(f"property is required for {self.function}")
        return self

    def span(self) -> timedelta | None:  # a method: the field `property` shadows the builtin here
        return parse_window(self.window) if self.window else None

    def relevant(self, events: Sequence[TimelineEvent], now: datetime) -> list[TimelineEvent]:
        """The events this trait aggregates at `now`, oldest first."""
        span = self.span()
        since = now - span if span else None
        return sorted((e for e in events if e.type == "track" and e.matches(self.event, self.where)
                       and (since is None or since < e.at <= now)),
                      key=lambda e: (e.at, e.message_id))

    def compute(self, events: Sequence[TimelineEvent], now: datetime) -> Any:
        chosen = self.relevant(events, now)
        if self.function == "count":
            return len(chosen)
        if self.function in ("first", "last"):
            if not chosen:
                return None
            event = chosen[0] if self.function == "first" else chosen[-1]
            return event.properties.get(self.property) if self.property else event.at.isoformat()
        return aggregate(self.function, [e.properties.get(self.property) for e in chosen])

    def next_change(self, events: Sequence[TimelineEvent], now: datetime) -> datetime | None:
        """When the windowed value next changes with no new event: its oldest event leaves."""
        span = self.span()
        if not span:
            return None
        chosen = self.relevant(events, now)
        return chosen[0].at + span if chosen else None


def aggregate(function: str, values: list[Any]) -> Any:
    if function in ("unique", "most_frequent"):
        present = [v for v in values if isinstance(v, (str, int, float, bool))]
        if function == "unique":
            return sorted(set(present), key=str)
        ranked = Counter(present).most_common()
        return min((v for v, n in ranked if n == ranked[0][1]), key=str) if ranked else None
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if function == "sum":
        return round(sum(numbers), 6)
    if not numbers:
        return None
    if function == "avg":
        return round(sum(numbers) / len(numbers), 6)
    return min(numbers) if function == "min" else max(numbers)


def compute_all(traits: Sequence[ComputedTrait], events: Sequence[TimelineEvent],
                now: datetime) -> tuple[dict[str, Any], datetime | None]:
    """Every trait's value, and the earliest time one of them changes on its own."""
    values = {t.name: t.compute(events, now) for t in traits}
    due = [d for t in traits if (d := t.next_change(events, now)) is not None]
    return values, min(due, default=None)
