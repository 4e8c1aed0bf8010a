"""SIGTERM: the consumer finishes the batch it is applying, commits it, and the process exits."""
from __future__ import annotations

import signal
import subprocess
import sys

from services.runtime.log import Message
from tests.backends import free_port
from tests.contract.counting import KEYS, counts
from tests.operations.poison import counting_runtime
from tests.support import caught_up, settings_env, wait_until


def test_sigterm_commits_the_batch_under_way(settings, tmp_path):
    runtime = counting_runtime(settings, [Message.of(KEYS[i % len(KEYS)], {"n": i}) for i in range(200)],
                               batch_size=20)
    marker = tmp_path / "batch-started"
    worker = subprocess.Popen([sys.executable, "-m", "tests.operations.slow_worker", str(marker),
                               str(free_port())], env={**settings_env(settings), "PYTHONPATH": "."})
    try:
        wait_until(marker.exists, 60, "a batch to start")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
        applied = sum(counts(runtime.engine).values())
        assert applied > 0  # the batch under way at SIGTERM was committed, not abandoned
        assert caught_up(runtime, "counting", applied)  # ... with its offsets: none lost or repeated
        assert not caught_up(runtime, "counting", applied + 1)
        assert applied < 200  # it stopped rather than draining the log
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        runtime.close()
