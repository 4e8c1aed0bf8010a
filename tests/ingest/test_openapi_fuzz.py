"""schemathesis over ingest's OpenAPI: whatever a client sends, never a 5xx."""
from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from services import migrations
from services.first_start import ensure_credentials
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.runner import bootstrap_services, build_app
from services.runtime.settings import Settings

# schemathesis generates its tests at collection time, so the app is built then
DATA_DIR = Path(tempfile.mkdtemp(prefix="rapport-fuzz-")) / "data"
RUNTIME = bootstrap_runtime(Settings(data_dir=DATA_DIR))
migrations.upgrade(RUNTIME.engine)
WRITE_KEY = ensure_credentials(RUNTIME.engine, DATA_DIR)["write_key"]
APP = build_app(RUNTIME, bootstrap_services(RUNTIME, ["ingest"]), run_projectors=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(tag="ingest")
pytestmark = pytest.mark.serial  # under xdist a failing operation passed (tests/conftest.py)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    RUNTIME.close()
    shutil.rmtree(DATA_DIR.parent, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_request_makes_ingest_answer_5xx(case):
    basic = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    response = case.call(headers={"Authorization": basic})
    assert response.status_code < 500, response.text
