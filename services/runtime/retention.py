"""Retention: raw events in the embedded log and the profile timeline, each kept for a
configured number of days (0 keeps them for ever, the default)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from services.runtime import topics
from services.runtime.background import BackgroundLoop
from services.runtime.clock import now

SWEEP_EVERY_S = 3600.0


class RawEventRetention(BackgroundLoop):
    """Drops events.raw records older than the retention from the embedded log.

    Kafka keeps its own retention per topic (deploy/k8s sets events.raw's); replaying a
    projection from the start then starts at the oldest record kept."""

    name, idle_wait_s = "raw-event-retention", SWEEP_EVERY_S

    def __init__(self, log, days: int, clock: Callable[[], datetime] = now):
        super().__init__()
        self.log, self.days, self.clock = log, days, clock

    def step(self) -> bool:
        cutoff = self.clock() - timedelta(days=self.days)
        self.log.forget_before(topics.EVENTS_RAW, int(cutoff.timestamp() * 1000))
        return False
