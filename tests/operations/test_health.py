"""/healthz and /readyz on each backend: ready only with the database, its migrations and the log."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services import migrations
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.db import make_engine
from services.runtime.runner import bootstrap_services, build_app
from tests.backends import Tansu, free_port
from tests.support import wait_until


def app_of(runtime):
    return build_app(runtime, bootstrap_services(runtime), run_projectors=False)


def readyz(runtime):
    response = TestClient(app_of(runtime)).get("/readyz")
    return response.status_code, response.json()["checks"]


@pytest.mark.unmigrated_database
def test_ready_once_migrated(settings):
    runtime = bootstrap_runtime(settings)
    try:
        assert TestClient(app_of(runtime)).get("/healthz").json() == {"status": "ok"}
        assert readyz(runtime) == (503, {"database": True, "migrations": False, "log": True})
        migrations.upgrade(runtime.engine)
        assert readyz(runtime) == (200, {"database": True, "migrations": True, "log": True})
    finally:
        runtime.close()


def test_not_ready_without_a_database(settings):
    nowhere = make_engine(f"postgresql+psycopg://rapport@127.0.0.1:{free_port()}/none")
    runtime = bootstrap_runtime(settings, engine=nowhere)
    try:
        assert readyz(runtime) == (503, {"database": False, "migrations": False, "log": True})
    finally:
        runtime.close()


def test_not_ready_when_kafka_goes_down(tmp_path):
    from services.runtime.settings import Settings

    broker = Tansu()
    broker.start()
    try:
        runtime = bootstrap_runtime(Settings(data_dir=tmp_path, log_backend="kafka",
                                             kafka_bootstrap_servers=broker.bootstrap))
        migrations.upgrade(runtime.engine)
        assert readyz(runtime)[0] == 200
    finally:
        broker.stop()
    try:
        assert readyz(runtime) == (503, {"database": True, "migrations": True, "log": False})
    finally:
        runtime.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread is killed on purpose
def test_healthz_fails_when_a_projector_thread_died(tmp_path):
    """Not migrated: the embedded consumer can't read its stored offsets, its thread dies."""
    from services.runtime.settings import Settings

    runtime = bootstrap_runtime(Settings(data_dir=tmp_path))
    app = build_app(runtime, bootstrap_services(runtime, ["segments"]))
    try:
        with TestClient(app) as client:
            wait_until(lambda: not app.state.projector_threads[0].is_alive(), what="the thread to die")
            response = client.get("/healthz")
            assert response.status_code == 500 and response.json()["dead"] == ["projector-segments"]
    finally:
        runtime.close()


def test_the_projectors_of_every_service_take_turns_in_one_thread(tmp_path):
    from services.runtime.settings import Settings

    runtime = bootstrap_runtime(Settings(data_dir=tmp_path))
    migrations.upgrade(runtime.engine)
    app = build_app(runtime, bootstrap_services(runtime))
    try:
        with TestClient(app) as client:
            names = sorted(t.name for t in app.state.projector_threads)
            assert client.get("/healthz").status_code == 200
    finally:
        runtime.close()
    assert "projectors-identity+profile+segments" in names
    assert not any(name.startswith("projector-") for name in names)  # no thread of their own
