"""Identity over HTTP and the CLI: a profile's identities and history; unmerge."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from services.first_start import ensure_credentials
from services.identity.domain.identifiers import Identifier
from services.identity.domain.resolution import new_profile_id
from services.runtime.access import create_token
from services.runtime.db import writing
from services.runtime.http import make_app
from services.identity.routes import router_for
from services.identity.domain.rules import DEFAULT_RULES
from tests.identity.support import IdentityWorld, raw

ALICE, BOB = new_profile_id(Identifier("user_id", "alice")), new_profile_id(Identifier("user_id", "bob"))
TABLET = new_profile_id(Identifier("anonymous_id", "tablet"))


@pytest.fixture
def world(settings):
    world = IdentityWorld(settings)
    world.send([raw("2026-01-01T10:00:00Z", "m1", anonymousId="tablet"),
                raw("2026-01-01T11:00:00Z", "m2", anonymousId="tablet", userId="alice"),
                raw("2026-01-01T12:00:00Z", "m3", anonymousId="tablet", userId="bob")])
    world.resolve()
    yield world
    world.close()


@pytest.fixture
def api(world, settings):
    admin = ensure_credentials(world.runtime.engine, settings.data_dir)["admin_token"]
    with writing(world.runtime.engine) as session:
        reader = create_token(session, "reader", ["profiles:read"])
    app = make_app("identity", [router_for(DEFAULT_RULES)], world.runtime.engine, world.runtime.log)
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {reader}"}


def test_an_absorbed_id_answers_with_its_survivor_its_identities_and_history(api):
    client, _, reader = api
    body = client.get(f"/v1/identity/profiles/{TABLET}", headers=reader).json()
    assert (body["profile_id"], body["requested_id"]) == (ALICE, TABLET)
    assert [(i["type"], i["value"]) for i in body["identities"]] == [("anonymous_id", "tablet"),
                                                                     ("user_id", "alice")]
    assert [(m["survivor"], m["absorbed"], m["message_id"]) for m in body["merges"]] == [(ALICE, TABLET, "m2")]
    assert client.get(f"/v1/identity/profiles/{BOB}", headers=reader).json()["refused_merges"][0][
        "dropped"] == {"type": "anonymous_id", "value": "tablet"}
    assert client.get("/v1/identity/profiles/nobody", headers=reader).status_code == 404
    assert client.get(f"/v1/identity/profiles/{ALICE}").status_code == 401


def test_unmerge_needs_admin_and_splits_the_identifier_off_with_its_events(api, world):
    client, admin, reader = api
    body = {"type": "anonymous_id", "value": "tablet", "action": "remove", "reason": "family tablet"}
    assert client.post(f"/v1/identity/profiles/{ALICE}/unmerge", json=body, headers=reader).status_code == 403
    answer = client.post(f"/v1/identity/profiles/{ALICE}/unmerge", json=body, headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json()["events_resolved_again"] == 2
    assert world.owners() == {Identifier("anonymous_id", "tablet"): TABLET,
                              Identifier("user_id", "alice"): ALICE, Identifier("user_id", "bob"): BOB}
    assert world.event_profiles() == {"m1": TABLET, "m2": ALICE, "m3": BOB}
    assert world.refusals() == set()  # the tablet links to nothing now: no merge is refused
    after = client.get(f"/v1/identity/profiles/{TABLET}", headers=reader).json()
    assert after["profile_id"] == TABLET  # the absorbed id is its own profile again
    records = world.resolved(world.sent + 6)
    split = next(r for r in records if r["kind"] == "split" and r["profile_id"] == ALICE)
    assert split["aliases"] == {ALICE: ALICE, TABLET: TABLET} and split["message_ids"] == ["m1", "m2"]
    # the next tablet event stays off alice's profile
    world.send([raw("2026-01-02T10:00:00Z", "m4", anonymousId="tablet", userId="alice")])
    world.resolve()
    assert world.event_profiles()["m4"] == ALICE
    assert world.owners()[Identifier("anonymous_id", "tablet")] == TABLET


def test_blocking_an_identifier_removes_it_and_it_never_links_again(api, world):
    client, admin, _ = api
    answer = client.post(f"/v1/identity/profiles/{TABLET}/unmerge", headers=admin,
                         json={"type": "anonymous_id", "value": "tablet", "action": "block"})
    assert answer.status_code == 200, answer.text
    assert Identifier("anonymous_id", "tablet") not in world.owners()
    assert world.event_profiles()["m2"] == ALICE
    missing = client.post(f"/v1/identity/profiles/{ALICE}/unmerge", headers=admin,
                          json={"type": "anonymous_id", "value": "tablet"})
    assert missing.status_code == 404


def test_the_cli_unmerges_too(world, settings, monkeypatch):
    from services.cli import app
    from tests.support import settings_env

    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["identity", "unmerge", ALICE, "anonymous_id", "tablet",
                                      "--reason", "shared device"])
    assert result.exit_code == 0, result.output
    assert world.owners()[Identifier("anonymous_id", "tablet")] == TABLET
