"""Fixtures: every backend-dependent test runs on the embedded default and on
PostgreSQL + a Kafka-protocol broker (see tests/backends.py for where those come from)."""
from __future__ import annotations

import os
import uuid
from contextlib import ExitStack

import pytest
import sqlalchemy

from services import migrations
from services.runtime.db import make_engine
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


def pytest_configure(config):
    config.addinivalue_line("markers", "unmigrated_database: the test's PostgreSQL database starts "
                                       "empty instead of as a copy of the migrated template")


def pytest_collection_modifyitems(items):
    """schemathesis's tests of each operation report no failure from an xdist worker (a route
    answering 500 passed): a module using schemathesis must mark its tests `serial`."""
    unmarked = sorted({item.module.__name__ for item in items if "schemathesis" in vars(item.module)
                       and item.get_closest_marker("serial") is None})
    if unmarked:
        raise pytest.UsageError(f"mark the tests of {', '.join(unmarked)} `serial` (they use schemathesis)")


def pytest_runtest_setup(item):
    """A `serial` test fails under xdist rather than pass unchecked (see above)."""
    if os.environ.get("PYTEST_XDIST_WORKER") and item.get_closest_marker("serial"):
        pytest.fail("a `serial` test must run in one process: `make test` runs them after the "
                    "parallel part (`pytest -m serial`)")


@pytest.fixture(scope="session")
def migrated_template(postgres_server_url):
    """A database migrated to head once per session (so every migration runs on PostgreSQL
    in every session), that each test's database is copied from: a copy takes ~0.1 s, running
    the migrations again ~0.35 s. Nothing connects to it after this, as copying requires."""
    if isinstance(postgres_server_url, BackendUnavailable):
        unavailable(postgres_server_url)
    with fresh_database(postgres_server_url) as url:
        engine = make_engine(url)
        try:
            migrations.upgrade(engine)
        finally:
            engine.dispose()
        yield sqlalchemy.make_url(url).database


def _test_database(request, postgres_server_url):
    if isinstance(postgres_server_url, BackendUnavailable):
        unavailable(postgres_server_url)
    empty = request.node.get_closest_marker("unmigrated_database") is not None
    return fresh_database(postgres_server_url,
                          template=None if empty else request.getfixturevalue("migrated_template"))


@pytest.fixture
def postgres_url(request, postgres_server_url):
    """A new database of this test's own, already migrated to head unless the test is marked
    unmigrated_database (migrating it again is a no-op)."""
    with _test_database(request, postgres_server_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url(request, postgres_server_url):
    """Like `postgres_url`, for one module's shared fixtures (see `shared_settings`)."""
    with _test_database(request, postgres_server_url) as url:
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
    """Settings of one test (or, asked from a module-scoped fixture, of one module): its own
    data dir, database and topic prefix.

    The consumer groups' session timeout is 2 s: Tansu answers a group's first JoinGroup
    after about half of it rounded up to a whole second (3 s took 2 s per group, 2 s takes 1 s),
    and every test starts new groups."""
    common = {"data_dir": tmp_path / "data", "poll_timeout_ms": 50, **overrides}
    if backend == "embedded":
        return Settings(**common)
    per_test = request.scope == "function"
    kafka = request.getfixturevalue("kafka_servers" if per_test else "kafka_bootstrap")
    if isinstance(kafka, BackendUnavailable):
        unavailable(kafka)
    return Settings(log_backend="kafka",
                    database_url=request.getfixturevalue("postgres_url" if per_test else "module_postgres_url"),
                    kafka_bootstrap_servers=kafka, topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
                    **{"default_partitions": 3, "kafka_session_timeout_ms": 2000, **common})


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def settings(backend, request, tmp_path) -> Settings:
    return settings_for(backend, request, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def shared_settings(request, tmp_path_factory) -> Settings:
    """Like `settings`, but one per module and backend: for a running pipeline (or other
    expensive state) that a module's read-only tests share. Tests that change state keep
    using `settings` and get their own."""
    return settings_for(request.param, request, tmp_path_factory.mktemp("shared"))
