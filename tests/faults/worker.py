"""`rapport serve SERVICE`, with one fault added for the fault suite:
`python -m tests.faults.worker SERVICE PORT`.

With RAPPORT_FAULT_KILL_AFTER_PUBLISH=N, the process SIGKILLs itself right after one of
its projector's batches has published its output to the log and before the transaction
that stores the batch and its offsets commits: at the k-th such batch of its life, k drawn
uniformly from 1..2N, until RAPPORT_FAULT_KILLS_MAX (default 3) such kills of this service
are marked in RAPPORT_FAULT_MARKS (one line each, so the harness counts kills that hit
exactly that window). The projector itself runs unchanged: the real `publish` runs first.
"""
from __future__ import annotations

import os
import random
import signal
import sys

from services import migrations
from services.cli import _serve
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.projector import Projector
from services.runtime.runner import build_app, bootstrap_services
from services.runtime.settings import Settings


def kill_after_publish(service: str, mean_batches: int, marks: str, most: int) -> None:
    with open(marks) as file:
        if sum(line.split()[0] == service for line in file) >= most:
            return
    publish, countdown = Projector.publish, [random.randint(1, 2 * mean_batches)]

    def publish_then_maybe_die(self, outputs):
        publish(self, outputs)
        if outputs:
            countdown[0] -= 1
            if countdown[0] == 0:
                with open(marks, "a") as file:
                    file.write(f"{service} after_publish\n")
                os.kill(os.getpid(), signal.SIGKILL)

    Projector.publish = publish_then_maybe_die


def main(service: str, port: int) -> None:
    mean_batches = int(os.environ.get("RAPPORT_FAULT_KILL_AFTER_PUBLISH", "0"))
    if mean_batches:
        kill_after_publish(service, mean_batches, os.environ["RAPPORT_FAULT_MARKS"],
                           int(os.environ.get("RAPPORT_FAULT_KILLS_MAX", "3")))
    settings = Settings()
    runtime = bootstrap_runtime(settings)
    assert migrations.at_head(runtime.engine), "run `rapport migrate` first"
    _serve(build_app(runtime, bootstrap_services(runtime, [service])), "127.0.0.1", port)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
