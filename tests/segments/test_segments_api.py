"""Segments over HTTP: text definitions, validation, preview, consent, the changes feed, exports."""
import json
from contextlib import contextmanager

import pytest

from services.identity.domain.identifiers import Identifier
from services.identity.domain.resolution import new_profile_id
from tests.support import RunningPipeline, wait_until

PEOPLE = {"ann": {"plan": "pro", "country": "DE", "email": "ann@x.io"},
          "bob": {"plan": "free", "country": "DE"}, "cy": {"plan": "pro", "country": "FR"}}


def pid(user: str) -> str:
    return new_profile_id(Identifier("user_id", user))


@contextmanager
def people_pipeline(settings):
    with RunningPipeline(settings) as running:
        for user, traits in PEOPLE.items():
            assert running.ingest.post("/v1/identify", json={"userId": user, "traits": traits}).status_code == 200
        wait_until(lambda: running.api.post("/v1/segments/preview", json={"text": "traits.plan exists"})
                   .json()["count"] == 3, what="three profiles seen by segments")
        yield running


@pytest.fixture
def pipeline(settings):
    with people_pipeline(settings) as running:
        yield running


@pytest.fixture(scope="module")
def unsaved_pipeline(shared_settings):
    """One pipeline per backend for the tests that save nothing (refused definitions, previews)."""
    with people_pipeline(shared_settings) as running:
        yield running


def wait_backfilled(pipeline, key: str) -> dict:
    return wait_until(lambda: (s := pipeline.api.get(f"/v1/segments/{key}").json())["backfill"]["state"] == "done"
                      and s, what=f"{key} backfilled")


def members(pipeline, key):
    return pipeline.api.get(f"/v1/segments/{key}/members").json()["members"]


def test_a_segment_defined_in_text_is_stored_as_json_and_filled(pipeline):
    created = pipeline.api.post("/v1/segments", json={
        "key": "de-pro", "name": "German pro", "text": 'traits.plan = "pro" and traits.country = "DE"'})
    assert created.status_code == 201, created.text
    assert created.json()["condition"] == {"and": [{"trait": "plan", "op": "=", "value": "pro"},
                                                   {"trait": "country", "op": "=", "value": "DE"}]}
    assert wait_backfilled(pipeline, "de-pro")["size"] == 1 and members(pipeline, "de-pro") == [pid("ann")]
    nested = pipeline.api.post("/v1/segments", json={"key": "not-de-pro", "name": "x",
                                                     "text": 'not in_segment("de-pro")'})
    assert nested.status_code == 201
    wait_backfilled(pipeline, "not-de-pro")
    assert sorted(members(pipeline, "not-de-pro")) == sorted([pid("bob"), pid("cy")])


@pytest.mark.parametrize("body, field", [
    ({"text": 'traits.plan = '}, "text:1:14"),
    ({"condition": {"and": [{"trait": "plan", "op": "=", "value": 1}, {"trait": "x", "op": "~"}]}},
     "condition.and[1].op"),
    ({"text": 'in_segment("nope")'}, "condition"),
    ({"text": "x exists", "condition": {"stage": "lead"}}, "body")])
def test_an_invalid_definition_gets_a_422_pointing_at_the_part(unsaved_pipeline, body, field):
    response = unsaved_pipeline.api.post("/v1/segments", json={"key": "bad", "name": "Bad", **body})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"].startswith(field.split(":")[0])


def test_a_cycle_between_segments_is_refused(pipeline):
    assert pipeline.api.post("/v1/segments", json={"key": "a", "name": "a", "text": "traits.x exists"}).status_code == 201
    assert pipeline.api.post("/v1/segments", json={"key": "b", "name": "b", "text": 'in_segment("a")'}).status_code == 201
    looped = pipeline.api.put("/v1/segments/a", json={"key": "a", "name": "a", "text": 'in_segment("b")'})
    assert looped.status_code == 422 and "a -> b -> a" in looped.json()["error"]["message"]
    assert pipeline.api.delete("/v1/segments/a").status_code == 409  # b reads it


def test_preview_counts_and_samples_without_saving(unsaved_pipeline):
    shown = unsaved_pipeline.api.post("/v1/segments/preview", json={"text": 'traits.country = "DE"'},
                                      params={"sample": 1}).json()
    assert shown["count"] == 2 and len(shown["sample"]) == 1 and shown["text"] == 'traits.country = "DE"'
    assert unsaved_pipeline.api.get("/v1/segments").json() == []


def test_replaying_the_changes_feed_from_zero_rebuilds_membership(pipeline):
    assert pipeline.api.post("/v1/segments", json={"key": "pro", "name": "Pro", "text": 'traits.plan = "pro"'}
                             ).status_code == 201
    wait_backfilled(pipeline, "pro")
    pipeline.ingest.post("/v1/identify", json={"userId": "cy", "traits": {"plan": "free"}})
    pipeline.ingest.post("/v1/identify", json={"userId": "bob", "traits": {"plan": "pro"}})
    expected = sorted([pid("ann"), pid("bob")])
    wait_until(lambda: sorted(members(pipeline, "pro")) == expected, what="bob in, cy out")
    rebuilt, cursor, seqs = set(), 0, []
    while True:
        page = pipeline.api.get("/v1/segments/pro/changes", params={"after": cursor, "limit": 2}).json()
        if not page["changes"]:
            break
        for change in page["changes"]:
            seqs.append(change["seq"])
            rebuilt = rebuilt | {change["profile_id"]} if change["change"] == "entered" \
                else rebuilt - {change["profile_id"]}
        cursor = page["next"]
    assert sorted(rebuilt) == expected and seqs == sorted(seqs) and len(seqs) == 4  # 2 in, 1 out, 1 in
    sizes = pipeline.api.get("/v1/segments/pro/sizes").json()["sizes"]
    assert sizes[-1]["size"] == 2


def test_a_segment_requiring_consent_holds_only_those_who_gave_it(pipeline):
    created = pipeline.api.post("/v1/segments", json={"key": "mail-de", "name": "Mailable Germans",
                                                      "text": 'traits.country = "DE"', "requires_consent": "email"})
    assert created.status_code == 201
    wait_backfilled(pipeline, "mail-de")
    assert members(pipeline, "mail-de") == []  # nobody has consented yet
    pipeline.ingest.post("/v1/track", json={"userId": "ann", "event": "Consent Changed", "context": {
        "consent": {"categoryPreferences": {"email": True}}}})
    wait_until(lambda: members(pipeline, "mail-de") == [pid("ann")], what="ann in once she consents")
    feed = pipeline.api.get("/v1/segments/mail-de/changes").json()["changes"]
    assert [c["profile_id"] for c in feed] == [pid("ann")]  # bob never appears


def test_export_streams_members_with_chosen_traits(pipeline):
    pipeline.api.post("/v1/segments", json={"key": "de", "name": "DE", "text": 'traits.country = "DE"'})
    wait_backfilled(pipeline, "de")
    csv_text = pipeline.api.get("/v1/segments/de/export", params={"format": "csv", "traits": "plan,email"}).text
    lines = csv_text.strip().splitlines()
    assert lines[0] == "profile_id,plan,email" and len(lines) == 3
    assert f"{pid('ann')},pro,ann@x.io" in lines
    rows = [json.loads(line) for line in pipeline.api.get("/v1/segments/de/export",
                                                          params={"traits": "plan"}).text.splitlines()]
    assert {r["profile_id"]: r["traits"]["plan"] for r in rows} == {pid("ann"): "pro", pid("bob"): "free"}


def test_the_cli_shows_a_segments_backfill_progress(pipeline, settings):
    import subprocess
    import sys

    from tests.support import settings_env

    pipeline.api.post("/v1/segments", json={"key": "de", "name": "DE", "text": 'traits.country = "DE"'})
    shown = subprocess.run([sys.executable, "-m", "services.cli", "segment", "status", "de", "--wait",
                            "--timeout", "60"], env={**settings_env(settings), "PYTHONPATH": "."},
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "de: 2 members; backfill done (3/3 profiles)" in shown.stdout
    missing = subprocess.run([sys.executable, "-m", "services.cli", "segment", "status", "nope"],
                             env={**settings_env(settings), "PYTHONPATH": "."}, capture_output=True, text=True)
    assert missing.returncode == 2
