"""schemathesis over the OpenAPI of every service (ingest, identity, profile, segments and
the runtime's admin routes) in one app on the embedded default, with an admin token so
routes are exercised past 401: never a 5xx, and every response matches its schema."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.support import app_at_collection

APP, CREDENTIALS, CLEANUP = app_at_collection("rapport-fuzz-all-")
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
pytestmark = pytest.mark.serial  # under xdist a failing operation passed (tests/conftest.py)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    CLEANUP()


def auth_for(case) -> dict[str, str]:
    if "ingest" in (case.operation.tags or []):  # write keys: the Basic username
        import base64

        return {"Authorization": "Basic " + base64.b64encode(f"{CREDENTIALS['write_key']}:".encode()).decode()}
    return {"Authorization": f"Bearer {CREDENTIALS['admin_token']}"}


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_operation_answers_below_500_and_as_documented(case):
    response = case.call(headers=auth_for(case))
    case.validate_response(response, checks=CHECKS)



@pytest.mark.parametrize("method, url", [  # schemathesis found each of these answering 500 (OverflowError)
    ("POST", f"/v1/admin/parked/{2**63}/retry"), ("GET", f"/v1/lifecycle/transitions?after={2**63}"),
    ("GET", f"/v1/segments/any/changes?after={2**63}"), ("GET", f"/v1/admin/audit?after={2**63}")])
def test_a_number_past_64_bits_is_refused_not_a_5xx(method, url):
    from fastapi.testclient import TestClient

    with TestClient(APP) as client:
        response = client.request(method, url, headers={"Authorization": f"Bearer {CREDENTIALS['admin_token']}"})
    assert response.status_code == 422, response.text
