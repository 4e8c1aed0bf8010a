"""A process serving an app whose only projector is slow, for the SIGTERM test.

Each batch marks its start in a file (so the test knows a batch is under way) and
takes a second, the time a real batch of heavy work might take.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from services.cli import _serve
from services.runtime.bootstrap import Service, bootstrap_runtime
from services.runtime.runner import build_app
from services.runtime.settings import Settings
from tests.contract.counting import CountingHandler


class SlowHandler(CountingHandler):
    def __init__(self, marker: Path):
        super().__init__()
        self.marker = marker

    def apply(self, session, batch):
        self.marker.write_text(str(batch[0].offset))
        time.sleep(1.0)  # work, not synchronisation: the test waits on the marker
        return super().apply(session, batch)


if __name__ == "__main__":
    runtime = bootstrap_runtime(Settings())
    service = Service("slow", projector=runtime.projector(SlowHandler(Path(sys.argv[1]))))
    _serve(build_app(runtime, [service]), "127.0.0.1", int(sys.argv[2]))
