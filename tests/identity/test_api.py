"""Identity over HTTP and the CLI: a profile's identities and history; unmerge."""
from __future__ import annotations

from contextlib import contextmanager

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


@contextmanager
def tablet_world(settings):
    world = IdentityWorld(settings)
    world.send([raw("2026-01-01T10:00:00Z", "m1", anonymousId="tablet"),
                raw("2026-01-01T11:00:00Z", "m2", anonymousId="tablet", userId="alice"),
                raw("2026-01-01T12:00:00Z", "m3", anonymousId="tablet", userId="bob")])
    world.resolve()
    try:
        yield world
    finally:
        world.close()


@contextmanager
def client_of(world, settings):
    admin = ensure_credentials(world.runtime.engine, settings.data_dir)["admin_token"]
    with writing(world.runtime.engine) as session:
        reader = create_token(session, "reader", ["profiles:read"])
    app = make_app("identity", [router_for(DEFAULT_RULES)], world.runtime.engine, world.runtime.log)
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {reader}"}


@pytest.fixture
def world(settings):
    with tablet_world(settings) as world:
        yield world


@pytest.fixture
def api(world, settings):
    with client_of(world, settings) as api:
        yield api


# The tests that change nothing (reads, and requests that are refused) share one world per
# backend; the others get their own.
@pytest.fixture(scope="module")
def read_world(shared_settings):
    with tablet_world(shared_settings) as world:
        yield world


@pytest.fixture(scope="module")
def read_api(read_world, shared_settings):
    with client_of(read_world, shared_settings) as api:
        yield api


def test_an_absorbed_id_answers_with_its_survivor_its_identities_and_history(read_api):
    client, _, reader = read_api
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
    unknown = CliRunner().invoke(app, ["identity", "unmerge", "no-such-profile", "anonymous_id", "tablet"])
    assert unknown.exit_code == 1 and "profile 'no-such-profile' has no identifier" in unknown.output


# --- the paths: /v1/profiles/{id}/identities, /merges, /unmerge ---------------------

def test_profile_identities_and_merges_answer_for_the_survivor_with_evidence(read_api):
    client, _, reader = read_api
    identities = client.get(f"/v1/profiles/{TABLET}/identities", headers=reader)
    assert identities.status_code == 200, identities.text
    assert (identities.json()["profile_id"], identities.json()["requested_id"]) == (ALICE, TABLET)
    assert [(i["type"], i["value"]) for i in identities.json()["identities"]] == [
        ("anonymous_id", "tablet"), ("user_id", "alice")]
    merges = client.get(f"/v1/profiles/{ALICE}/merges", headers=reader).json()
    assert [(m["survivor"], m["absorbed"], m["message_id"]) for m in merges["merges"]] == [(ALICE, TABLET, "m2")]
    assert {"type": "anonymous_id", "value": "tablet"} in merges["merges"][0]["identifiers"]
    assert "identities" not in merges
    refused = client.get(f"/v1/profiles/{BOB}/merges", headers=reader).json()["refused_merges"]
    assert refused[0]["message_id"] == "m3"
    assert client.get("/v1/profiles/nobody/identities", headers=reader).status_code == 404


@pytest.mark.parametrize("path", ["identities", "merges"])
def test_profile_reads_need_a_token_with_profiles_read(read_api, read_world, path):
    client, _, _ = read_api
    with writing(read_world.runtime.engine) as session:
        segments_only = create_token(session, "segments", ["segments:read"])
    assert client.get(f"/v1/profiles/{ALICE}/{path}").status_code == 401
    answer = client.get(f"/v1/profiles/{ALICE}/{path}", headers={"Authorization": f"Bearer {segments_only}"})
    assert answer.status_code == 403


def test_profile_unmerge_is_the_identity_unmerge_and_needs_admin(api, world):
    client, admin, reader = api
    body = {"type": "anonymous_id", "value": "tablet", "action": "remove", "reason": "family tablet"}
    assert client.post(f"/v1/profiles/{TABLET}/unmerge", json=body).status_code == 401
    assert client.post(f"/v1/profiles/{TABLET}/unmerge", json=body, headers=reader).status_code == 403
    answer = client.post(f"/v1/profiles/{TABLET}/unmerge", json=body, headers=admin)  # an absorbed id
    assert answer.status_code == 200, answer.text
    assert answer.json()["profile_id"] == ALICE and answer.json()["events_resolved_again"] == 2
    assert world.event_profiles() == {"m1": TABLET, "m2": ALICE, "m3": BOB}
    assert client.get(f"/v1/profiles/{TABLET}/identities", headers=reader).json()["profile_id"] == TABLET


def test_the_profile_service_routes_do_not_clash_with_these(read_api):
    from services.profile.routes import router as profile_router

    paths = {(m, r.path) for r in profile_router.routes for m in r.methods}
    ours = {(m, r.path) for r in router_for(DEFAULT_RULES).routes for m in r.methods}
    assert not paths & ours


# --- rules read and updated by admins -------------------------------------------------------

def test_admins_replace_the_rules_for_every_worker_and_new_events_follow_them(api, world):
    client, admin, reader = api
    assert client.put("/v1/identity/rules", json={}).status_code == 401
    assert client.put("/v1/identity/rules", json={}, headers=reader).status_code == 403
    assert client.get("/v1/identity/rules", headers=reader).status_code == 403
    rules = client.get("/v1/identity/rules", headers=admin).json()
    assert "guest" not in rules["blocked_values"]
    rules["blocked_values"].append("guest")  # add a blocked value
    rules["types"]["device_id"] = None  # and switch a type off
    answer = client.put("/v1/identity/rules", json=rules, headers=admin)
    assert answer.status_code == 200, answer.text
    assert client.get("/v1/identity/rules", headers=admin).json() == answer.json()
    assert answer.json()["types"]["device_id"] is None and "guest" in answer.json()["blocked_values"]
    # a fresh worker (as after a restart) reads them from the database
    world.send([raw("2026-01-02T10:00:00Z", "g1", userId="guest", anonymousId="g-a"),
                raw("2026-01-02T10:01:00Z", "g2", userId="guest", anonymousId="g-b"),
                raw("2026-01-02T10:02:00Z", "d1", userId="carol", context={"device": {"id": "d-9"}})])
    world.resolve()
    owners = world.owners()
    assert Identifier("user_id", "guest") not in owners and Identifier("device_id", "d-9") not in owners
    assert owners[Identifier("anonymous_id", "g-a")] != owners[Identifier("anonymous_id", "g-b")]
    # remove the blocked value again: "guest" links from the next event on
    rules = answer.json()
    rules["blocked_values"].remove("guest")
    assert client.put("/v1/identity/rules", json=rules, headers=admin).status_code == 200
    world.send([raw("2026-01-03T10:00:00Z", "g3", userId="guest", anonymousId="g-c")])
    world.resolve()
    assert world.owners()[Identifier("anonymous_id", "g-c")] == new_profile_id(Identifier("user_id", "guest"))


@pytest.mark.parametrize("document", [{"types": {"email": {"limit": 0}}}, {"blocked_patterns": ["("]},
                                      {"types": []}, {"blocked_values": "guest"}, {"nonsense": 1}])
def test_invalid_rules_are_refused_and_the_old_ones_stay(read_api, document):
    client, admin, _ = read_api
    answer = client.put("/v1/identity/rules", json=document, headers=admin)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_rules"
    assert client.get("/v1/identity/rules", headers=admin).json() == DEFAULT_RULES.as_json()


def test_merge_history_carries_the_history_of_the_profiles_absorbed_before(api, world):
    client, _, reader = api
    world.send([raw("2026-01-05T10:00:00Z", "c1", anonymousId="phone"),
                raw("2026-01-05T11:00:00Z", "c2", anonymousId="phone", traits={"email": "cy@x.io"}),
                raw("2026-01-05T12:00:00Z", "c3", userId="cy", traits={"email": "cy@x.io"})])
    world.resolve()
    phone, email = (new_profile_id(Identifier(t, v)) for t, v in (("anonymous_id", "phone"), ("email", "cy@x.io")))
    cy = new_profile_id(Identifier("user_id", "cy"))
    body = client.get(f"/v1/profiles/{phone}/merges", headers=reader).json()
    assert body["profile_id"] == cy
    assert [(m["survivor"], m["absorbed"], m["message_id"]) for m in body["merges"]] == [
        (email, phone, "c2"), (cy, email, "c3")]
