"""Keeps a profile's computed traits and CRM metrics current (the edge around domain/)."""
from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, true
from sqlalchemy.orm import Session

from services.profile.domain.computed import ComputedTrait
from services.profile.domain.crm import CrmSettings
from services.profile.domain.summary import (fingerprint, fold, is_current, longest_window, needs_window_read,
                                             summarise, values_of)
from services.profile.domain.timeline import TimelineEvent
from services.profile.tables import ComputedTraitDefinition, ProfileEvent
from services.runtime.clock import format_time, now
from services.runtime.db import core_rows, each_in

if TYPE_CHECKING:
    from services.profile.applying import ProfileState


@dataclass
class Computation:
    crm: CrmSettings
    configured: list[ComputedTrait]  # from the config file; the admin API adds more
    clock: Callable[[], datetime] = now

    @classmethod
    def from_settings(cls, settings, clock: Callable[[], datetime] = now) -> "Computation":
        configured = []
        if settings.computed_traits_file:
            configured = [ComputedTrait.model_validate(d)
                          for d in json.loads(settings.computed_traits_file.read_text())]
        crm = CrmSettings(settings.reporting_currency, settings.exchange_rates,
                          settings.expected_lifetime_years)
        return cls(crm, configured, clock)

    def definitions(self, session: Session) -> list[ComputedTrait]:
        declared = [ComputedTrait.model_validate(row.definition)
                    for row in session.scalars(select(ComputedTraitDefinition))]
        names = {t.name for t in declared}
        return declared + [t for t in self.configured if t.name not in names]

    def refresh_many(self, session: Session, profiles: list[ProfileState], definitions: list[ComputedTrait],
                     added: dict[str, list[TimelineEvent]] | None = None,
                     refold: Collection[str] = ()) -> None:
        """Recompute computed traits and metrics, and when they next change alone. `added`: the
        events each profile gained since its stored summary was folded, which are folded in;
        None when no stored summary can be trusted. `refold`: the profiles whose summaries
        can't be (events moved, merged, split). Those have their whole timelines read and
        folded. Windowed traits come from their summaries, but for a window holding an event
        dated ahead of now (summary.py): those profiles have their windows read."""
        moment, stamp = self.clock(), fingerprint(definitions, self.crm)
        stale = {p.profile_id for p in profiles
                 if added is None or p.profile_id in refold or not is_current(p.summary, stamp)}
        timelines = timelines_of(session, stale)
        for profile in profiles:
            pid = profile.profile_id
            if pid in stale:
                profile.summary = summarise(timelines.get(pid, []), definitions, self.crm)
            else:
                profile.summary = fold(profile.summary, (added or {}).get(pid, []), definitions, self.crm)
        ahead = {p.profile_id for p in profiles if needs_window_read(p.summary, definitions, moment)}
        recent = timelines_of(session, ahead - stale, since=moment - longest_window(definitions)) if ahead else {}
        for profile in profiles:
            pid = profile.profile_id
            window = (timelines if pid in stale else recent).get(pid, []) if pid in ahead else None
            self.refresh(profile, window, definitions, moment)

    def refresh(self, profile: ProfileState, recent: list[TimelineEvent] | None, definitions: list[ComputedTrait],
                moment: datetime) -> None:
        values, due = values_of(profile.summary, definitions, self.crm, moment, recent)
        if values["last_order_at"] is not None:  # days_since_last_order ticks over daily
            tick = values["last_order_at"] + timedelta(days=values["days_since_last_order"] + 1)
            due = min(due, tick) if due else tick
        profile.computed, profile.due_at = jsonable(values), due


TIMELINE = (ProfileEvent.profile_id, ProfileEvent.message_id, ProfileEvent.type, ProfileEvent.name,
            ProfileEvent.timestamp, ProfileEvent.properties, ProfileEvent.source, ProfileEvent.channel)


def timelines_of(session: Session, profile_ids: Iterable[str],
                 since: datetime | None = None) -> dict[str, list[TimelineEvent]]:
    """Each profile's events (after `since`): rows, not ORM objects, and only these columns,
    read without the ORM's row loading (py-spy: 11% of the profile service's time at 1,000
    events/s went to that loading, when windowed traits read their windows each batch)."""
    found: dict[str, list[TimelineEvent]] = {}
    after = ProfileEvent.timestamp > since if since is not None else true()
    for condition in each_in(session, ProfileEvent.profile_id, profile_ids):
        for profile_id, message_id, type_, name, at, properties, source, channel in core_rows(
                session, select(*TIMELINE).where(condition, after)):
            found.setdefault(profile_id, []).append(
                TimelineEvent(message_id, type_, name, at, properties or {}, source, channel))
    return found


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: format_time(v) if isinstance(v, datetime) else v for k, v in values.items()}
