"""Fixtures: every backend-dependent test runs on the embedded default and on
PostgreSQL + a Kafka-protocol broker (see tests/backends.py for where those come from)."""
from __future__ import annotations

import uuid
from contextlib import ExitStack

import pytest

from services.runtime.settings import Settings
from tests.backends import (BackendUnavailable, docker_available, fresh_database, kafka_broker,
                            postgres_server, unavailable)

BACKENDS = ["embedded", "postgres+kafka"]


def _session_backend(factory):
    with ExitStack() as stack:
        try:
            resource = stack.enter_context(factory())
        except BackendUnavailable as error:
            resource = error
        yield resource


@pytest.fixture(scope="session")
def postgres_server_url():
    yield from _session_backend(postgres_server)


@pytest.fixture(scope="session")
def kafka_bootstrap():
    yield from _session_backend(kafka_broker)


@pytest.fixture
def postgres_url(postgres_server_url):
    if isinstance(postgres_server_url, BackendUnavailable):
        unavailable(postgres_server_url)
    with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def broker_is_tansu() -> bool:
    return not docker_available()


@pytest.fixture
def kafka_servers(kafka_bootstrap):
    if isinstance(kafka_bootstrap, BackendUnavailable):
        unavailable(kafka_bootstrap)
    return kafka_bootstrap


def settings_for(backend: str, request, tmp_path, **overrides) -> Settings:
    """Settings of one test: its own data dir, database and topic prefix."""
    common = {"data_dir": tmp_path / "data", "poll_timeout_ms": 50, **overrides}
    if backend == "embedded":
        return Settings(**common)
    return Settings(log_backend="kafka", database_url=request.getfixturevalue("postgres_url"),
                    kafka_bootstrap_servers=request.getfixturevalue("kafka_servers"),
                    topic_prefix=f"t{uuid.uuid4().hex[:8]}.", **{"default_partitions": 3,
                    "kafka_session_timeout_ms": 3000, **common})


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def settings(backend, request, tmp_path) -> Settings:
    return settings_for(backend, request, tmp_path)
