"""The pipeline as separate processes (one `rapport serve` per service, through
tests/faults/worker.py) on a private PostgreSQL and a Tansu broker that stores in S3;
every part can be SIGKILLed or restarted."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx

from services.runtime.settings import Settings
from tests.backends import Tansu, free_port
from tests.e2e.processes import found, run
from tests.faults.backends import PrivatePostgres, S3Server
from tests.support import settings_env, terminate, wait_until

SERVICES = ("ingest", "identity", "profile", "segments")


class Worker:
    """One service process; its output goes to a file, appended across restarts."""

    def __init__(self, name: str, env: dict, log_dir: Path):
        self.name, self.env, self.port = name, env, free_port()
        self.log = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.popen = subprocess.Popen([sys.executable, "-m", "tests.faults.worker", self.name, str(self.port)],
                                      env=self.env, stdout=self.log.open("a"), stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        if self.popen.poll() is not None:
            self.start()  # died (e.g. on its own fault hook, or the broker was down at start)
            return False
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL, then start again at once."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()
        self.start()

    def stop(self) -> None:
        terminate(self.popen)


class Cluster:
    def __init__(self, kill_after_publish: int = 0, kills_max: int = 3, partitions: int = 3,
                 durable_broker: bool = True):
        self.dir = Path(tempfile.mkdtemp(prefix="rapport-faults-"))
        self.marks = self.dir / "marks"
        self.marks.touch()
        self.postgres = PrivatePostgres()
        self.postgres.start()
        self.s3 = S3Server() if durable_broker else None  # memory storage loses all on a restart
        self.broker = (Tansu(storage=f"s3://{S3Server.BUCKET}/", env=self.s3.broker_env()) if self.s3
                       else Tansu())
        self.broker.start()
        self.settings = Settings(data_dir=self.dir / "data", database_url=self.postgres.url,
                                 log_backend="kafka", kafka_bootstrap_servers=self.broker.bootstrap,
                                 topic_prefix=f"f{uuid.uuid4().hex[:6]}.", default_partitions=partitions,
                                 poll_timeout_ms=100, kafka_session_timeout_ms=2000)
        env = {**os.environ, **settings_env(self.settings), "RAPPORT_LOG_LEVEL": "WARNING",
               "RAPPORT_LOG_FORMAT": "text", "RAPPORT_FAULT_MARKS": str(self.marks),
               "RAPPORT_FAULT_KILL_AFTER_PUBLISH": str(kill_after_publish),
               "RAPPORT_FAULT_KILLS_MAX": str(kills_max), "PYTHONPATH": os.getcwd()}
        run(["migrate"], env)
        self.write_key = found(r"write key: (wk_\S+)", run(["source", "create", "load", "--kind", "server"], env))
        self.token = found(r"(rpt_\S+)", run(["token", "create", "faults", "--scope", "admin",
                                              "--scope", "profiles:read", "--scope", "segments:read",
                                              "--scope", "segments:write"], env))
        self.workers = {name: Worker(name, env, self.dir) for name in SERVICES}
        for worker in self.workers.values():
            worker.start()
        self.wait_healthy()

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.workers[service].port}"

    def wait_healthy(self, timeout_s: float = 120) -> None:
        for worker in self.workers.values():
            wait_until(worker.healthy, timeout_s, f"{worker.name} to answer /healthz")

    def restart_broker(self) -> None:
        self.broker.process.send_signal(signal.SIGKILL)
        self.broker.process.wait()
        self.broker.start()

    def restart_postgres(self) -> None:
        self.postgres.restart()

    def killed_after_publish(self) -> int:
        return len(self.marks.read_text().splitlines())

    def close(self, keep_logs: bool = False) -> None:
        """Stop everything; the processes' logs stay in `dir` only with keep_logs."""
        for worker in self.workers.values():
            worker.stop()
        self.broker.stop()
        if self.s3:
            self.s3.close()
        self.postgres.close(keep=keep_logs)
        if keep_logs:
            print(f"logs kept in {self.dir}, PostgreSQL's data in {self.postgres.data}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
