"""The sources admin API and CLI: create, list, rotate, disable; admin scope only."""
from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from services.cli import app
from services.ingest.service import Ingest
from services.runtime.access import create_token
from services.runtime.db import writing
from services.runtime.settings import Settings
from tests.ingest.conftest import ids
from tests.support import wait_until


def sends(pipeline, write_key: str) -> int:
    return httpx.post(pipeline.ingest.base_url.join("/v1/track"), json=ids(event="x"),
                      auth=(write_key, "")).status_code


def test_an_admin_creates_lists_rotates_disables_and_enables_a_source(pipeline):
    created = pipeline.api.post("/v1/sources", json={"name": "Shopify", "kind": "shop", "plan_mode": "warn"})
    assert created.status_code == 201, created.text
    source = created.json()
    assert (source["kind"], source["plan_mode"], source["enabled"]) == ("shop", "warn", True)
    listed = pipeline.api.get("/v1/sources").json()["sources"]
    assert source["id"] in [s["id"] for s in listed]
    assert sends(pipeline, source["write_key"]) == 200

    rotated = pipeline.api.post(f"/v1/sources/{source['id']}/rotate").json()
    assert rotated["write_key"] != source["write_key"]
    assert sends(pipeline, source["write_key"]) == 401
    assert sends(pipeline, rotated["write_key"]) == 200

    assert pipeline.api.post(f"/v1/sources/{source['id']}/disable").json()["enabled"] is False
    assert sends(pipeline, rotated["write_key"]) == 401
    assert pipeline.api.post(f"/v1/sources/{source['id']}/enable").json()["enabled"] is True
    assert sends(pipeline, rotated["write_key"]) == 200

    assert pipeline.api.patch(f"/v1/sources/{source['id']}", json={"plan_mode": "block"}).json()["plan_mode"] == "block"


@pytest.mark.parametrize("body", [{"name": "x", "kind": "fax"}, {"name": "", "kind": "shop"},
                                  {"name": "x", "plan_mode": "maybe"}])
def test_a_bad_source_is_a_422(pipeline, body):
    assert pipeline.api.post("/v1/sources", json=body).status_code == 422


def test_an_unknown_source_is_a_404(pipeline):
    assert pipeline.api.post("/v1/sources/src_nope/rotate").status_code == 404


def test_the_sources_api_needs_the_admin_scope(pipeline):
    with writing(pipeline.runtime.engine) as session:
        reader = create_token(session, "reader", ["profiles:read"])
    url = pipeline.ingest.base_url.join("/v1/sources")
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {reader}"}).status_code == 403


def test_a_disabled_key_stops_working_in_another_process_within_the_cache_ttl(pipeline):
    """Another replica caches keys for ingest_key_cache_s; it notices a disable by then."""
    source = pipeline.api.post("/v1/sources", json={"name": "web", "kind": "website"}).json()
    replica = Ingest(pipeline.runtime.engine, pipeline.runtime.log,
                     Settings(data_dir=pipeline.runtime.settings.data_dir, ingest_key_cache_s=0.2))
    assert replica.source(source["write_key"]).enabled
    pipeline.api.post(f"/v1/sources/{source['id']}/disable").raise_for_status()
    assert replica.source(source["write_key"]).enabled  # still cached: no query per request
    wait_until(lambda: not replica.source(source["write_key"]).enabled, 5, "the cache to expire")


def test_the_cli_creates_lists_rotates_and_disables_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("RAPPORT_DATA_DIR", str(tmp_path / "data"))
    cli = CliRunner()
    assert cli.invoke(app, ["migrate"]).exit_code == 0
    created = cli.invoke(app, ["source", "create", "Zendesk", "--kind", "helpdesk"])
    assert created.exit_code == 0, created.output
    source_id = created.output.split()[1]
    key = created.output.split("write key: ")[1].split()[0]
    listed = cli.invoke(app, ["source", "list"])
    assert source_id in listed.output and "helpdesk" in listed.output
    rotated = cli.invoke(app, ["source", "rotate", source_id])
    assert rotated.exit_code == 0 and key not in rotated.output and "write key: wk_" in rotated.output
    disabled = cli.invoke(app, ["source", "disable", source_id])
    assert disabled.exit_code == 0
    assert "disabled" in cli.invoke(app, ["source", "list"]).output
    assert cli.invoke(app, ["source", "plan", source_id, "block"]).exit_code == 0
    assert "block" in cli.invoke(app, ["source", "list"]).output
    assert cli.invoke(app, ["source", "rotate", "src_nope"]).exit_code != 0
