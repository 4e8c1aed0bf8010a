"""Computed traits: aggregations over a profile's timeline, optionally in a sliding window.

Each function is a fold (`start`, `add`, `value`) whose result doesn't depend on the order
the events are added in, so an unwindowed trait is kept as a running state (summary.py),
a batch adding only its new events, and still equals the value computed from the whole
de-duplicated timeline: after a merge (timelines united by messageId) or an unmerge
(split) the state is folded again from the timeline, so the value is what it would have
been had the profiles always been one, or never. A windowed trait keeps its events as
entries (`entry_of`, `kept`: those within one window of the latest) and folds the entries in
its window when asked (`value_at`).
"""
from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from services.profile.domain.folds import (MICROSECOND, add_exact, count_in, earliest, exact_sum, exact_value, is_number,
                                           key_of, latest, micros, moment, most_frequent)
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

    def entry_of(self, event: TimelineEvent) -> list:
        """What this trait keeps of one of its events: [time in us, messageId, the property's
        value (None without a property)], JSON as a summary stores it."""
        return [micros(event.at), event.message_id, event.properties.get(self.property) if self.property else None]

    def entries_of(self, events: Sequence[TimelineEvent]) -> list[list]:
        """The entries of this trait's events among `events`, oldest first."""
        return sorted((self.entry_of(e) for e in events if e.type == "track" and e.matches(self.event, self.where)),
                      key=by_time)

    def compute(self, events: Sequence[TimelineEvent], now: datetime) -> Any:
        return self.value_at(self.entries_of(events), now)[0]

    def next_change(self, events: Sequence[TimelineEvent], now: datetime) -> datetime | None:
        return self.value_at(self.entries_of(events), now)[1]

    def value_at(self, entries: list[list], now: datetime) -> tuple[Any, datetime | None]:
        """The value at `now` of sorted `entries`, and when it next changes with no new event
        (a windowed trait's oldest counted entry leaves its window)."""
        span = self.span()
        if span:  # sorted by time: the window is a slice (a profile keeps a window's worth and more)
            since, until = micros(now - span), micros(now)
            entries = entries[bisect_right(entries, since, key=_time_of):bisect_right(entries, until, key=_time_of)]
        return self.value(self.folded(entries)), (moment(entries[0][0]) + span if span and entries else None)

    def folded(self, entries: list[list]) -> Any:
        """The state `add` makes of `entries` one by one, made at once where the function
        allows (a window's entries are folded again each time its profile changes)."""
        function = self.function
        if function == "count":
            return len(entries)
        numbers = [e[2] for e in entries if is_number(e[2])] if function in NUMERIC else None
        if function in ("sum", "avg"):
            return [str(exact_sum(numbers)), len(numbers)]
        if function in ("min", "max"):
            return (min if function == "min" else max)(map(float, numbers), default=None)
        state = self.start()
        for entry in entries:
            state = self.add(state, entry)
        return state

    def kept(self, entries: list[list]) -> list[list]:
        """Of a windowed trait's entries, sorted, those within one window of the latest: every
        entry that can count at any time from the latest event on, whatever order the events
        came in (summary.py keeps these instead of reading the window each time)."""
        entries = sorted(entries, key=by_time)
        if not entries:
            return []
        horizon = entries[-1][0] - self.span() // MICROSECOND
        return [e for e in entries if e[0] > horizon]

    def start(self) -> Any:
        """The fold's state before any event (JSON)."""
        return {"count": 0, "sum": ["0", 0], "avg": ["0", 0], "unique": {}, "most_frequent": {}}.get(self.function)

    def add(self, state: Any, entry: list) -> Any:
        """`state` with one more of this trait's events, as `entry_of` keeps it."""
        function = self.function
        if function == "count":
            return state + 1
        if function in ("first", "last"):
            return (earliest if function == "first" else latest)(state, entry)
        value = entry[2]
        if function in ("unique", "most_frequent"):
            if isinstance(value, (str, int, float, bool)):
                count_in(state, key_of(value))
            return state
        if not is_number(value):
            return state
        if function in ("sum", "avg"):
            return [add_exact(state[0], value), state[1] + 1]
        return float(value) if state is None else (min if function == "min" else max)(state, float(value))

    def value(self, state: Any) -> Any:
        function = self.function
        if function in ("count", "min", "max"):
            return state
        if function in ("first", "last"):
            if state is None:
                return None
            return state[2] if self.property else moment(state[0]).isoformat()
        if function == "unique":
            return sorted((json.loads(k) for k in sorted(state)), key=str)
        if function == "most_frequent":
            key = most_frequent(state, tie_break=lambda k: (str(json.loads(k)), k))
            return None if key is None else json.loads(key)
        total, numbers = state
        if function == "sum":
            return round(exact_value(total), 6) if numbers else 0
        return round(exact_value(total, numbers), 6) if numbers else None


NUMERIC = ("sum", "avg", "min", "max")  # the functions of the events' numbers alone


def _time_of(entry: list) -> int:
    return entry[0]


def by_time(entry: list) -> tuple[int, str]:
    return entry[0], entry[1]  # (time, messageId): unique, so values are never compared


def compute_all(traits: Sequence[ComputedTrait], events: Sequence[TimelineEvent],
                now: datetime) -> tuple[dict[str, Any], datetime | None]:
    """Every trait's value, and the earliest time one of them changes on its own."""
    return values_at(traits, {t.name: t.entries_of(events) for t in traits}, now)


def values_at(traits: Sequence[ComputedTrait], entries: dict[str, list[list]],
              now: datetime) -> tuple[dict[str, Any], datetime | None]:
    """The same from each trait's sorted entries."""
    answers = {t.name: t.value_at(entries[t.name], now) for t in traits}
    due = [d for _, d in answers.values() if d is not None]
    return {name: value for name, (value, _) in answers.items()}, min(due, default=None)
