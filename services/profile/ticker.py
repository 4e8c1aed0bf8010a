"""Time moves profiles too: windowed computed traits fall due, RFM quintiles drift.

The ticker recomputes each profile whose next change time (`due_at`) has passed, in
its own transaction with the profile rows locked, and publishes the new snapshots;
so a 30-day window drops an order on the day it ages out, not at the next event.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime

from sqlalchemy import select

from services.profile.domain.crm import quintile_cuts
from services.profile.handler import ProfileHandler
from services.profile.tables import Profile, RfmCuts
from services.runtime.bootstrap import Runtime
from services.runtime.db import reading, upsert, writing
from services.runtime.log import publish_all

logger = logging.getLogger(__name__)
MAX_WAIT_S = 1.0  # due profiles are recomputed within this of their due time


class ProfileTicker:
    def __init__(self, handler: ProfileHandler, runtime: Runtime, batch_size: int = 500):
        self.handler, self.engine, self.log = handler, runtime.engine, runtime.log
        self.clock = handler.computation.clock
        self.rfm_every_s, self.batch_size = runtime.settings.rfm_refresh_s, batch_size
        self.rfm_refreshed_at: datetime | None = None
        self.stop = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="profile-ticker", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                busy = self.tick() == self.batch_size
                self.refresh_rfm_if_stale()
            except Exception:
                logger.exception("profile ticker failed; retrying")
                busy = False
            if not busy:
                self.stop.wait(MAX_WAIT_S)

    def tick(self) -> int:
        """Recompute the profiles that are due; answers how many."""
        with writing(self.engine) as session:
            due = session.scalars(select(Profile.profile_id).where(Profile.due_at <= self.clock())
                                  .order_by(Profile.due_at).limit(self.batch_size)
                                  .with_for_update(skip_locked=True)).all()
            publish_all(self.log, self.handler.recompute(session, list(due)))
        return len(due)

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
