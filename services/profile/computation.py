"""Keeps a profile's computed traits and CRM metrics current (the edge around domain/)."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.profile.domain.computed import ComputedTrait, compute_all
from services.profile.domain.crm import CrmSettings, crm_metrics
from services.profile.domain.timeline import TimelineEvent
from services.profile.tables import ComputedTraitDefinition, ProfileEvent
from services.runtime.clock import format_time, now
from services.runtime.db import each_in

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

    def refresh_many(self, session: Session, profiles: list[ProfileState], definitions: list[ComputedTrait]) -> None:
        timelines = timelines_of(session, [p.profile_id for p in profiles])
        for profile in profiles:
            self.refresh(profile, timelines.get(profile.profile_id, []), definitions)

    def refresh(self, profile: ProfileState, events: list[TimelineEvent], definitions: list[ComputedTrait]) -> None:
        """Recompute from the whole (de-duplicated) timeline, and when it next changes alone."""
        moment = self.clock()
        values, due = compute_all(definitions, events, moment)
        metrics = crm_metrics(events, moment, self.crm)
        if metrics["last_order_at"] is not None:  # days_since_last_order ticks over daily
            tick = metrics["last_order_at"] + timedelta(days=metrics["days_since_last_order"] + 1)
            due = min(due, tick) if due else tick
        profile.computed, profile.due_at = jsonable({**metrics, **values}), due


TIMELINE = (ProfileEvent.profile_id, ProfileEvent.message_id, ProfileEvent.type, ProfileEvent.name,
            ProfileEvent.timestamp, ProfileEvent.properties, ProfileEvent.source, ProfileEvent.channel)


def timelines_of(session: Session, profile_ids: list[str]) -> dict[str, list[TimelineEvent]]:
    """Rows, not ORM objects: a batch reads every event of its profiles, and only these columns."""
    found: dict[str, list[TimelineEvent]] = {}
    for condition in each_in(session, ProfileEvent.profile_id, profile_ids):
        for profile_id, message_id, type_, name, at, properties, source, channel in session.execute(
                select(*TIMELINE).where(condition)):
            found.setdefault(profile_id, []).append(
                TimelineEvent(message_id, type_, name, at, properties or {}, source, channel))
    return found


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: format_time(v) if isinstance(v, datetime) else v for k, v in values.items()}
