"""A profile's running aggregates: the fold states of its unwindowed computed traits and of
its CRM metrics, stored with the profile so that a batch folds in only its new events
instead of reading the whole timeline again.

Every fold is order-independent (computed.py, crm.py), so a summary folded batch by batch
equals one folded from the whole timeline. A summary is folded from the timeline again
when its events changed otherwise (a merge, a split, an event moved away, retention) and
when the definitions it was folded for changed (`of`, a fingerprint). Windowed traits are
computed from the events inside their window when asked.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from services.profile.domain.computed import ComputedTrait, compute_all
from services.profile.domain.crm import CrmSettings, crm_add, crm_start, metrics_of
from services.profile.domain.timeline import TimelineEvent

FORMAT = 1  # raise when a fold's state changes shape: stored summaries are then folded again


def fingerprint(definitions: Sequence[ComputedTrait], crm: CrmSettings) -> str:
    """What a summary's states depend on: the unwindowed definitions and the exchange rates."""
    folded = [t.model_dump() for t in definitions if not t.window]
    basis = [FORMAT, folded, crm.reporting_currency, sorted(crm.exchange_rates.items())]
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def is_current(summary: dict[str, Any] | None, stamp: str) -> bool:
    return bool(summary) and summary.get("of") == stamp


def start(definitions: Sequence[ComputedTrait], crm: CrmSettings) -> dict[str, Any]:
    return {"of": fingerprint(definitions, crm), "crm": crm_start(),
            "traits": {t.name: t.start() for t in definitions if not t.window}}


def fold(summary: dict[str, Any], events: Sequence[TimelineEvent], definitions: Sequence[ComputedTrait],
         crm: CrmSettings) -> dict[str, Any]:
    """`summary` with `events` added (each new to the profile: the caller de-duplicates)."""
    unwindowed = [t for t in definitions if not t.window]
    states = summary["traits"]
    for event in events:
        crm_add(summary["crm"], event, crm)
        if event.type != "track":
            continue
        for trait in unwindowed:
            if event.matches(trait.event, trait.where):
                states[trait.name] = trait.add(states[trait.name], event)
    return canonical(summary)


def canonical(value: Any) -> Any:
    """Objects with their keys sorted, so equal summaries are stored as equal text (SQLite
    keeps JSON as written; replay compares rebuilt rows with the live ones)."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def summarise(events: Sequence[TimelineEvent], definitions: Sequence[ComputedTrait],
              crm: CrmSettings) -> dict[str, Any]:
    return fold(start(definitions, crm), events, definitions, crm)


def longest_window(definitions: Sequence[ComputedTrait]) -> timedelta | None:
    return max((span for t in definitions if (span := t.span())), default=None)


def values_of(summary: dict[str, Any], recent: Sequence[TimelineEvent], definitions: Sequence[ComputedTrait],
              crm: CrmSettings, now: datetime) -> tuple[dict[str, Any], datetime | None]:
    """The metrics and computed traits at `now`, and when one next changes on its own;
    `recent`: at least the events inside the longest window."""
    windowed, due = compute_all([t for t in definitions if t.window], recent, now)
    traits = {t.name: windowed[t.name] if t.window else t.value(summary["traits"][t.name]) for t in definitions}
    return {**metrics_of(summary["crm"], now, crm), **traits}, due
