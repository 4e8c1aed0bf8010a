"""A profile's running aggregates: the fold states of its unwindowed computed traits and of
its CRM metrics, and the events its windowed traits may still count, stored with the
profile so that a batch folds in only its new events instead of reading the timeline again.

Every fold is order-independent (computed.py, crm.py), so a summary folded batch by batch
equals one folded from the whole timeline. A summary is folded from the timeline again
when its events changed otherwise (a merge, a split, an event moved away, retention) and
when the definitions it was folded for changed (`of`, a fingerprint).

A windowed trait keeps the entries of its events within one window of its latest event
(`ComputedTrait.kept`): at any time from that event on, they are all the window can hold.
Only when that event is dated after now (a clock ahead) do its values need the timeline's
window read (`needs_window_read`). Keeping no fewer makes the kept set a function of the
events alone, so replay rebuilds it exactly; what ages out of it is dropped at the next event.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from services.profile.domain.computed import ComputedTrait, values_at
from services.profile.domain.crm import CrmSettings, crm_add, crm_start, metrics_of
from services.profile.domain.folds import micros
from services.profile.domain.timeline import TimelineEvent

FORMAT = 2  # raise when a fold's state changes shape: stored summaries are then folded again


def fingerprint(definitions: Sequence[ComputedTrait], crm: CrmSettings) -> str:
    """What a summary's states depend on: the definitions (in any order: the database lists
    them as it likes) and the exchange rates."""
    folded = sorted((t.model_dump() for t in definitions), key=lambda d: d["name"])
    basis = [FORMAT, folded, crm.reporting_currency, sorted(crm.exchange_rates.items())]
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def is_current(summary: dict[str, Any] | None, stamp: str) -> bool:
    return bool(summary) and summary.get("of") == stamp


def start(definitions: Sequence[ComputedTrait], crm: CrmSettings) -> dict[str, Any]:
    return {"of": fingerprint(definitions, crm), "crm": crm_start(),
            "traits": {t.name: t.start() for t in definitions if not t.window},
            "windows": {t.name: [] for t in definitions if t.window}}


def fold(summary: dict[str, Any], events: Sequence[TimelineEvent], definitions: Sequence[ComputedTrait],
         crm: CrmSettings) -> dict[str, Any]:
    """`summary` with `events` added, in place (each new to the profile: the caller de-duplicates)."""
    states, windows = summary["traits"], summary["windows"]
    arrived: dict[str, list[list]] = {}
    for event in events:
        crm_add(summary["crm"], event, crm)
        if event.type != "track":
            continue
        for trait in definitions:
            if event.matches(trait.event, trait.where):
                if trait.window:
                    arrived.setdefault(trait.name, []).append(trait.entry_of(event))
                else:
                    states[trait.name] = trait.add(states[trait.name], trait.entry_of(event))
    for trait in definitions:
        if trait.name in arrived:
            windows[trait.name] = trait.kept(windows[trait.name] + arrived[trait.name])
    return summary  # stored with its keys sorted (SortedJson), so equal summaries are equal text


def summarise(events: Sequence[TimelineEvent], definitions: Sequence[ComputedTrait],
              crm: CrmSettings) -> dict[str, Any]:
    return fold(start(definitions, crm), events, definitions, crm)


def longest_window(definitions: Sequence[ComputedTrait]) -> timedelta | None:
    return max((span for t in definitions if (span := t.span())), default=None)


def needs_window_read(summary: dict[str, Any], definitions: Sequence[ComputedTrait], now: datetime) -> bool:
    """Whether a windowed trait's kept entries may lack some its window holds at `now`: only
    when its latest event is dated after `now`."""
    windows = summary["windows"]
    return any(windows[t.name] and windows[t.name][-1][0] > micros(now) for t in definitions if t.window)


def values_of(summary: dict[str, Any], definitions: Sequence[ComputedTrait], crm: CrmSettings, now: datetime,
              recent: Sequence[TimelineEvent] | None = None) -> tuple[dict[str, Any], datetime | None]:
    """The metrics and computed traits at `now`, and when one next changes on its own.
    `recent`: at least the events inside the longest window, needed where `needs_window_read`."""
    windowed = [t for t in definitions if t.window]
    values, due = values_at(windowed, {t.name: summary["windows"][t.name] if recent is None
                                       else t.entries_of(recent) for t in windowed}, now)
    traits = {t.name: values[t.name] if t.window else t.value(summary["traits"][t.name]) for t in definitions}
    return {**metrics_of(summary["crm"], now, crm), **traits}, due
