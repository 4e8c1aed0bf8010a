"""Running `rapport` commands as separate processes."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import terminate, wait_until

RAPPORT = [sys.executable, "-m", "services.cli"]


def run(args: list[str], env: dict) -> str:
    done = subprocess.run(RAPPORT + args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return match.group(1)


class Process:
    """A long-running `rapport` command whose output goes to a file."""

    def __init__(self, args: list[str], env: dict, log_dir: Path, port: int | None = None):
        self.port, self.log = port, log_dir / f"{'-'.join(args)}.log"
        self.popen = subprocess.Popen(RAPPORT + args + (["--port", str(port)] if port else []),
                                      env={**os.environ, **env, "COLUMNS": "200"},
                                      stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def wait_healthy(self, timeout_s: float = 60) -> None:
        def healthy():
            assert self.popen.poll() is None, f"exited: {self.output()}"
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(healthy, timeout_s, f"{self.log.name} to answer /healthz")

    def stop(self) -> bool:
        """SIGTERM; True when the process shut down gracefully (uvicorn re-raises the signal
        after its shutdown completes, so -SIGTERM is a clean exit code too)."""
        terminate(self.popen)
        return (self.popen.returncode in (0, -signal.SIGTERM)
                and "Application shutdown complete" in self.output())
