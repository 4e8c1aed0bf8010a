"""Time moves profiles too: windowed computed traits fall due, RFM quintiles drift.

The ticker recomputes each profile whose next change time (`due_at`) has passed, in
its own transaction with the profile rows locked, and publishes the new snapshots;
so a 30-day window drops an order on the day it ages out, not at the next event.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from services.profile.domain.crm import quintile_cuts
from services.profile.handler import ProfileHandler
from services.profile.tables import Profile, ProfileEvent, RfmCuts
from services.runtime.background import BackgroundLoop
from services.runtime.bootstrap import Runtime
from services.runtime.db import reading, upsert, writing
from services.runtime.log import publish_all
from services.runtime.retention import SWEEP_EVERY_S

MAX_WAIT_S = 1.0  # due profiles are recomputed within this of their due time


class ProfileTicker(BackgroundLoop):
    name, idle_wait_s = "profile-ticker", MAX_WAIT_S

    def __init__(self, handler: ProfileHandler, runtime: Runtime, batch_size: int = 500):
        super().__init__()
        self.handler, self.engine, self.log = handler, runtime.engine, runtime.log
        self.clock = handler.computation.clock
        self.rfm_every_s, self.batch_size = runtime.settings.rfm_refresh_s, batch_size
        self.rfm_refreshed_at: datetime | None = None
        self.timeline_days, self.swept_at = runtime.settings.timeline_retention_days, None

    def step(self) -> bool:
        busy = self.tick() == self.batch_size
        self.refresh_rfm_if_stale()
        self.forget_old_events_if_due()
        return busy

    def forget_old_events_if_due(self) -> None:
        moment = self.clock()
        if not self.timeline_days or (self.swept_at and (moment - self.swept_at).total_seconds() < SWEEP_EVERY_S):
            return
        forget_old_events(self.engine, moment - timedelta(days=self.timeline_days), moment)
        self.swept_at = moment

    def tick(self) -> int:
        """Recompute the profiles that are due; answers how many."""
        if not self.anything_due():
            return 0  # most seconds: no write transaction, so no turn taken from the projectors
        with writing(self.engine) as session:
            due = session.scalars(select(Profile.profile_id).where(Profile.due_at <= self.clock())
                                  .order_by(Profile.due_at).limit(self.batch_size)
                                  .with_for_update(skip_locked=True)).all()
            publish_all(self.log, self.handler.recompute(session, list(due), added={}))  # time moved, not events
        return len(due)

    def anything_due(self) -> bool:
        with reading(self.engine) as session:
            return session.scalar(select(Profile.profile_id).where(Profile.due_at <= self.clock()).limit(1)) is not None

    def refresh_rfm_if_stale(self) -> None:
        moment = self.clock()
        if self.rfm_refreshed_at and (moment - self.rfm_refreshed_at).total_seconds() < self.rfm_every_s:
            return
        refresh_rfm(self.engine, moment)
        self.rfm_refreshed_at = moment


def refresh_rfm(engine, moment: datetime) -> None:
    """Quintile cut points of recency, frequency and monetary over every customer."""
    with reading(engine) as session:
        customers = [c for c in session.scalars(select(Profile.computed)) if c and c.get("orders")]
    dimensions = {"recency": [c["days_since_last_order"] for c in customers],
                  "frequency": [c["orders"] for c in customers],
                  "monetary": [c["revenue"] for c in customers]}
    with writing(engine) as session:
        upsert(session, RfmCuts, [{"dimension": d, "cuts": quintile_cuts(v), "computed_at": moment}
                                  for d, v in dimensions.items()], keys=["dimension"],
               update=["cuts", "computed_at"])


def forget_old_events(engine, cutoff: datetime, moment: datetime) -> int:
    """Timeline retention: events older than `cutoff` go; their profiles are recomputed (so
    computed traits then cover the retained events; counts of events seen stay)."""
    with writing(engine) as session:
        touched = set(session.scalars(select(ProfileEvent.profile_id).where(ProfileEvent.timestamp < cutoff)))
        gone = session.execute(delete(ProfileEvent).where(ProfileEvent.timestamp < cutoff)).rowcount
        if touched:
            session.execute(update(Profile).where(Profile.profile_id.in_(touched))
                            .values(due_at=moment, summary=None))  # folded again from what is kept
    return gone
