"""`rapport up` on a laptop, and `rapport migrate` + `rapport serve` as a deployment runs them."""
from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from services.identity.domain.identifiers import Identifier
from services.identity.domain.resolution import new_profile_id
from tests.backends import free_port
from tests.e2e.processes import RAPPORT, Process, found, run
from tests.support import settings_env, wait_until

pytestmark = pytest.mark.e2e
WRITE_KEY, TOKEN = r"write key.*?: (wk_\S+)", r"access token.*?: (rpt_\S+)"


def profile_plan(base: str, token: str, user: str):
    response = httpx.get(f"{base}/v1/profiles/{new_profile_id(Identifier('user_id', user))}",
                         headers={"Authorization": f"Bearer {token}"})
    return response.status_code == 200 and response.json()["traits"].get("plan")


def test_rapport_up_prints_credentials_that_work_and_are_reused_on_restart(tmp_path):
    env = {"RAPPORT_DATA_DIR": str(tmp_path / "data"), "RAPPORT_POLL_TIMEOUT_MS": "50",
           "RAPPORT_DEMO": "false"}  # tests/console runs `up` with its demo data
    first = Process(["up"], env, tmp_path, port=free_port())
    try:
        first.wait_healthy()
        output = first.output()
        assert "/docs" in output
        write_key, token = found(WRITE_KEY, output), found(TOKEN, output)
        base = f"http://127.0.0.1:{first.port}"
        sent = httpx.post(f"{base}/v1/identify", auth=(write_key, ""),
                          json={"userId": "ada", "traits": {"plan": "pro"}})
        assert sent.status_code == 200
        wait_until(lambda: profile_plan(base, token, "ada") == "pro", 30, "ada's profile")
    finally:
        assert first.stop()

    (tmp_path / "again").mkdir()
    again = Process(["up"], env, tmp_path / "again", port=free_port())
    try:
        again.wait_healthy()
        assert (found(WRITE_KEY, again.output()), found(TOKEN, again.output())) == (write_key, token)
        base = f"http://127.0.0.1:{again.port}"
        assert profile_plan(base, token, "ada") == "pro"  # the data outlived the process
    finally:
        again.stop()


@pytest.mark.real_backends
@pytest.mark.unmigrated_database  # `rapport migrate` creates the schema
def test_one_process_per_service_on_postgres_and_kafka(tmp_path, request):
    from tests.conftest import settings_for

    env = settings_env(settings_for("postgres+kafka", request, tmp_path))
    run(["migrate"], env)
    write_key = found(WRITE_KEY, run(["source", "create", "shop", "--kind", "shop"], env))
    token = found(TOKEN, run(["token", "create", "marketing", "--scope", "profiles:read",
                              "--scope", "segments:read", "--scope", "segments:write"], env))
    services = {name: Process(["serve", name, *(["--workers", "2"] if name == "ingest" else [])], env, tmp_path,
                              port=free_port()) for name in ("ingest", "identity", "profile", "segments")}
    try:
        for service in services.values():
            service.wait_healthy()
        wait_until(lambda: services["ingest"].output().count("Application startup complete") == 2, 30,
                   "ingest's two worker processes")
        ingest, profile = (f"http://127.0.0.1:{services[n].port}" for n in ("ingest", "profile"))
        segments = f"http://127.0.0.1:{services['segments'].port}"
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{segments}/v1/segments", headers=auth, json={
            "key": "pro", "name": "Pro", "condition": {"trait": "plan", "equals": "pro"}}).status_code == 201
        for user, plan in [("grace", "pro"), ("alan", "free")]:
            assert httpx.post(f"{ingest}/v1/identify", auth=(write_key, ""),
                              json={"userId": user, "traits": {"plan": plan}}).status_code == 200
        wait_until(lambda: profile_plan(profile, token, "grace") == "pro", 60, "grace's profile")
        wait_until(lambda: httpx.get(f"{segments}/v1/segments/pro/members", headers=auth).json()["members"]
                   == [new_profile_id(Identifier("user_id", "grace"))], 60, "grace in the segment")
    finally:
        graceful = {name: service.stop() for name, service in services.items()}
    assert graceful == dict.fromkeys(services, True), graceful  # SIGTERM shuts each down cleanly


def test_only_ingest_runs_in_several_processes(tmp_path):
    env = {"RAPPORT_DATA_DIR": str(tmp_path / "data")}
    run(["migrate"], env)
    refused = subprocess.run(RAPPORT + ["serve", "identity", "--workers", "2", "--port", str(free_port())],
                             env={**os.environ, **env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "only ingest runs in several processes" in refused.stdout
