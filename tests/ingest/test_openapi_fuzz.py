"""schemathesis over ingest's OpenAPI: whatever a client sends, never a 5xx."""
from __future__ import annotations

import base64

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.support import app_at_collection

APP, CREDENTIALS, CLEANUP = app_at_collection("rapport-fuzz-", ["ingest"])
WRITE_KEY = CREDENTIALS["write_key"]
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(tag="ingest")
pytestmark = pytest.mark.serial  # under xdist a failing operation passed (tests/conftest.py)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    CLEANUP()


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_request_makes_ingest_answer_5xx(case):
    basic = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    response = case.call(headers={"Authorization": basic})
    assert response.status_code < 500, response.text
