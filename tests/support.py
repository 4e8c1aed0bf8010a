"""Helpers for tests: waiting on conditions, and the whole pipeline behind real HTTP."""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import uvicorn

from services import migrations
from services.first_start import ensure_credentials
from services.runtime.bootstrap import Runtime, bootstrap_runtime
from services.runtime.runner import SERVICE_NAMES, bootstrap_services, build_app
from services.runtime.settings import Settings
from tests.backends import free_port

T = TypeVar("T")


def app_at_collection(prefix: str, services=SERVICE_NAMES) -> tuple:
    """(app, first-start credentials, cleanup) of a migrated runtime on a fresh embedded data
    dir: schemathesis generates its tests at collection time, so the app is built then."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix)) / "data"
    runtime = bootstrap_runtime(Settings(data_dir=data_dir))
    migrations.upgrade(runtime.engine)
    credentials = ensure_credentials(runtime.engine, data_dir)

    def cleanup() -> None:
        runtime.close()
        shutil.rmtree(data_dir.parent, ignore_errors=True)
    return build_app(runtime, bootstrap_services(runtime, services), run_projectors=False), credentials, cleanup


def terminate(popen, timeout_s: float = 30) -> None:
    """SIGTERM a child process and wait for it; SIGKILL it if it takes longer than `timeout_s`."""
    if popen is not None and popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def kafka_errors(caplog) -> list[str]:
    """What kafka-python logged as errors (a failed fetch: the connection closed on a frame
    it refused), from a test's captured records."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("kafka") and r.levelno >= logging.ERROR]


def wait_until(check: Callable[[], T], timeout_s: float = 30, what: str = "condition") -> T:
    """Poll `check` until it answers something truthy; fail with `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {result!r}")
        time.sleep(0.05)


class RunningPipeline:
    """Every service in this process, served by uvicorn on a free port."""

    def __init__(self, settings: Settings):
        self.runtime: Runtime = bootstrap_runtime(settings)
        migrations.upgrade(self.runtime.engine)
        credentials = ensure_credentials(self.runtime.engine, settings.data_dir)
        self.write_key, self.token = credentials["write_key"], credentials["admin_token"]
        app = build_app(self.runtime, bootstrap_services(self.runtime))
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "RunningPipeline":
        self.thread.start()
        wait_until(lambda: self.server.started, 30, "the HTTP server to start")
        base = f"http://127.0.0.1:{self.port}"
        self.ingest = httpx.Client(base_url=base, auth=(self.write_key, ""), timeout=30)
        self.api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {self.token}"},
                                timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.ingest.close()
        self.api.close()
        self.runtime.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """The RAPPORT_* environment that recreates `settings` in a child process."""
    fields = ("data_dir", "database_url", "log_backend", "embedded_log_url", "kafka_bootstrap_servers",
              "topic_prefix", "default_partitions", "poll_timeout_ms", "batch_size",
              "kafka_session_timeout_ms")
    return {f"RAPPORT_{name.upper()}": str(getattr(settings, name)) for name in fields}


def caught_up(runtime: Runtime, consumer: str, records: int) -> bool:
    """True when `consumer` has stored offsets past `records` records in all.

    Offsets count from 0 with no gaps on both backends, so the stored next offsets add up
    to the records applied. (Tansu's end offsets are wrong for multi-record batches, so
    tests don't rely on them.)
    """
    from sqlalchemy import func, select

    from services.runtime.db import reading
    from services.runtime.tables import ConsumerOffset

    with reading(runtime.engine) as session:
        applied = session.scalar(select(func.coalesce(func.sum(ConsumerOffset.next_offset), 0))
                                 .where(ConsumerOffset.consumer == consumer))
    return applied >= records


class KafkaPartitionsReader:
    """Kafka records of `names` from offset 0, in no consumer group: assigned every partition."""

    def __init__(self, log, settings: Settings, names):
        from kafka import TopicPartition

        from services.runtime.log.kafka import kafka_consumer

        self.prefix = log.prefix
        self.kafka = kafka_consumer(log.servers, group_id=None, enable_auto_commit=False)
        partitions = [TopicPartition(log.name(name), p) for name in names for p in range(settings.partitions_for(name))]
        self.kafka.assign(partitions)
        self.kafka.seek_to_beginning(*partitions)

    def poll(self, max_records: int, timeout_s: float) -> list:
        from services.runtime.log import Record

        fetched = self.kafka.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [Record(tp.topic[len(self.prefix):], r.partition, r.offset,
                       r.key.decode() if r.key is not None else None, r.value, r.timestamp)
                for tp, records in fetched.items() for r in records]

    def close(self) -> None:
        self.kafka.close()


def log_reader(log, settings: Settings, names, group: str):
    """A consumer of the topics `names` from their start, for a test reading back what is on
    the log. On Kafka it is in no group: Tansu answers a group's first join after a second or
    more, and a reader needs no partitions shared out. On the embedded log, a consumer of the
    new group `group` (no wait there)."""
    if settings.log_backend == "kafka":
        return KafkaPartitionsReader(getattr(log, "inner", log), settings, names)
    return log.consumer(group, list(names), lambda _tps: {})


class Clock:
    """A clock a test moves by hand (set `moment`)."""

    def __init__(self, moment):
        self.moment = moment

    def __call__(self):
        return self.moment


class running_projectors:
    """Runs the handlers' projectors in threads for the `with` block, then stops them."""

    def __init__(self, runtime: Runtime, *handlers):
        self.projectors = [runtime.projector(handler) for handler in handlers]

    def __enter__(self):
        self.threads = [projector.start() for projector in self.projectors]
        return self

    def __exit__(self, *exc) -> None:
        for projector in self.projectors:
            projector.stop.set()
        for thread in self.threads:
            thread.join(30)


def prepared_plan(conn, sql: str, values: dict[str, str], mode: str = "force_generic_plan") -> str:
    """PostgreSQL's plan of `sql` (psycopg's %(name)s placeholders, bound to `values` by name,
    as text literals) once prepared, as psycopg prepares a statement run often; `mode` is
    plan_cache_mode (the generic plan is the one chosen for any parameter)."""
    names: list[str] = []
    numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.append(m[1]) or len(names)}", sql)
    conn.exec_driver_sql(f"SET plan_cache_mode = {mode}")
    conn.exec_driver_sql(f"PREPARE planned AS {numbered}")
    try:
        literals = ", ".join("'" + str(values[name]).replace("'", "''") + "'" for name in names)
        return "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN EXECUTE planned({literals})"))
    finally:
        conn.exec_driver_sql("DEALLOCATE planned")
        conn.exec_driver_sql("RESET plan_cache_mode")
