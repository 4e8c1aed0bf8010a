"""A background loop owned by a service, next to its projector (tickers, backfills)."""
from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)


class BackgroundLoop:
    """Calls `step()` until stopped; waits `idle_wait_s` whenever a step found nothing to do."""

    name = "background"
    idle_wait_s = 1.0

    def __init__(self):
        self.stop = threading.Event()

    def step(self) -> bool:
        """Do one unit of work; True when there may be more right away."""
        raise NotImplementedError

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                busy = self.step()
            except Exception:
                logger.exception("%s step failed; retrying", self.name)
                busy = False
            if not busy:
                self.stop.wait(self.idle_wait_s)
