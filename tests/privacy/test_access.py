"""Access control: every route needs its credential; tokens by scope; the audit log;
subject access."""
import re

import pytest
from fastapi.testclient import TestClient

from services import migrations
from services.first_start import ensure_credentials
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.runner import bootstrap_services, build_app
from tests.support import RunningPipeline, wait_until

# Routes anyone may call: probes, metrics, the API docs, and the browser SDK's settings
# (they hold nothing personal); every other route must answer 401 without a credential.
PUBLIC = {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
          "/v1/projects/{writeKey}/settings", "/v1/projects/{write_key}/settings",
          # the console's static pages and scripts: code, no data; they call the APIs with a token
          "/console", "/console/{name}"}


@pytest.fixture
def client(settings):
    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    credentials = ensure_credentials(runtime.engine, settings.data_dir)
    app = build_app(runtime, bootstrap_services(runtime), run_projectors=False)
    with TestClient(app) as client:
        client.credentials = credentials
        yield client
    runtime.close()


def every_route(app):
    """Every operation of the app, from its OpenAPI document (a route hidden from it fails
    the count below only if it is the sole one; none of Rapport's are hidden)."""
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            yield method.upper(), path


def test_every_route_of_every_app_needs_a_credential(client):
    checked = 0
    for method, path in every_route(client.app):
        if path in PUBLIC or method == "OPTIONS":
            continue
        url = re.sub(r"\{[^}]+\}", "x", path)
        response = client.request(method, url, json={})
        assert response.status_code == 401, f"{method} {path} answered {response.status_code} without credentials"
        checked += 1
    assert checked > 40  # the enumeration really ran over the whole API


def test_a_write_key_reads_nothing(client):
    write_key = client.credentials["write_key"]
    for method, path in every_route(client.app):
        if path.startswith(("/v1/profiles", "/v1/segments", "/v1/admin", "/v1/privacy")) and method == "GET":
            url = re.sub(r"\{[^}]+\}", "x", path)
            assert client.get(url, auth=(write_key, "")).status_code == 401, path


def test_tokens_by_scope_and_revocation_with_an_audit_trail(client):
    admin = {"Authorization": f"Bearer {client.credentials['admin_token']}"}
    made = client.post("/v1/admin/tokens", json={"name": "crm sync", "scopes": ["segments:read"]}, headers=admin)
    assert made.status_code == 201 and made.json()["token"].startswith("rpt_")
    reader = {"Authorization": f"Bearer {made.json()['token']}"}
    assert client.get("/v1/segments", headers=reader).status_code == 200
    refused = client.get("/v1/profiles/lookup", params={"type": "email", "value": "a@b.c"}, headers=reader)
    assert refused.status_code == 403 and "profiles:read" in refused.json()["error"]["message"]
    assert client.post("/v1/segments", json={"key": "k", "name": "k", "text": "traits.a exists"},
                       headers=reader).status_code == 403
    listed = client.get("/v1/admin/tokens", headers=admin).json()
    assert {t["name"] for t in listed} >= {"crm sync", "first start"} and all("token" not in t for t in listed)
    assert client.delete(f"/v1/admin/tokens/{made.json()['id']}", headers=admin).status_code == 204
    assert client.get("/v1/segments", headers=reader).status_code == 401
    bad = client.post("/v1/admin/tokens", json={"name": "x", "scopes": ["root"]}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "scopes"
    actions = [e["action"] for e in client.get("/v1/admin/audit", headers=admin).json()["entries"]]
    assert "POST /v1/admin/tokens" in actions and f"DELETE /v1/admin/tokens/{made.json()['id']}" in actions
    entry = client.get("/v1/admin/audit", headers=admin).json()["entries"][0]
    assert entry["actor"].startswith("token ") and "first start" in entry["actor"] and entry["at"]


def test_subject_access_exports_everything_held_about_a_person(settings):
    with RunningPipeline(settings) as pipeline:
        pipeline.ingest.post("/v1/identify", json={"userId": "eve", "traits": {"email": "eve@x.io", "plan": "pro"},
                                                   "context": {"consent": {"categoryPreferences": {"email": True}}}})
        pipeline.ingest.post("/v1/track", json={"userId": "eve", "event": "Order Completed",
                                                "properties": {"revenue": 12}})
        wait_until(lambda: (pipeline.api.get("/v1/profiles/lookup", params={"type": "user_id", "value": "eve"})
                            .json().get("lifecycle_stage") or {}).get("stage") == "customer",
                   what="eve's profile and stage")
        document = pipeline.api.get("/v1/privacy/export", params={"type": "email", "value": "eve@x.io"}).json()
        assert document["profile"]["traits"]["plan"]["value"] == "pro"
        assert document["profile"]["consent"]["email"]["given"] is True
        assert [e["event"] for e in document["events"]] == [None, "Order Completed"]
        assert document["lifecycle_history"][-1]["to"] == "customer"
        assert {"type": "email", "value": "eve@x.io"} in document["profile"]["identities"]


def test_cli_admin_actions_are_audited_and_tokens_listed_and_revoked(settings, tmp_path):
    import subprocess
    import sys

    from sqlalchemy import select

    from services.runtime.audit import AuditEntry
    from services.runtime.db import reading
    from tests.support import settings_env

    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    env = {**settings_env(settings), "PYTHONPATH": "."}

    def rapport(*args, exit_code=0):
        done = subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == exit_code, done.stdout + done.stderr
        return done.stdout
    rapport("token", "create", "ops", "--scope", "privacy")
    token_id = next(line.split()[0] for line in rapport("token", "list").splitlines() if " ops " in line)
    rapport("token", "revoke", token_id)
    assert "revoked" in next(line for line in rapport("token", "list").splitlines() if token_id in line)
    with reading(runtime.engine) as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert [e.action for e in entries] == ["rapport token create ops --scope privacy",
                                           f"rapport token revoke {token_id}"]  # listing is not audited
    assert all(e.actor.startswith("cli (") for e in entries)
    assert "no token 'nope'" in rapport("token", "revoke", "nope", exit_code=2)
    runtime.close()
