"""Erasure: a deletion request removes the person from every table, makes their data on the
log unreadable, drops their new events, and a replay of every projection doesn't bring
them back. On each backend, with one partition per topic so that a later event of
somebody else is a barrier: once it is applied, everything before it is too."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sqlalchemy import select

from services.identity.tables import IdentityLink
from services.runtime.db import reading
from services.runtime.replay import rebuild
from services.runtime.runner import projector_for
from tests.conftest import settings_for
from tests.privacy.erasure_support import found_in_tables, found_on_log
from tests.support import RunningPipeline, settings_env, wait_until

ALICE = {"userId": "u-alice-71", "anonymousId": "anon-alice-71"}
ALICE_TRAITS = {"email": "Alice.Quorvane@Example.com", "phone": "+49 30 98765432", "name": "Alice Quorvane",
                "plan": "pro"}
# how each may be stored: as sent, normalised (lower case, E.164) or in parts
NEEDLES = ["alice.quorvane@example.com", "Alice Quorvane", "Quorvane", "+493098765432", "98765432",
           "u-alice-71", "anon-alice-71"]


@pytest.fixture
def pipeline(backend, request, tmp_path):
    with RunningPipeline(settings_for(backend, request, tmp_path, default_partitions=1)) as running:
        assert running.api.post("/v1/segments", json={"key": "pro", "name": "Pro", "condition": {
            "trait": "plan", "equals": "pro"}}).status_code == 201
        yield running


def send(pipeline, path: str, body: dict) -> None:
    response = pipeline.ingest.post(path, json=body)
    assert response.status_code == 200, response.text


def send_alice(pipeline, n: int = 0) -> None:
    send(pipeline, "/v1/identify", {**ALICE, "traits": ALICE_TRAITS})
    send(pipeline, "/v1/track", {**ALICE, "event": "Order Completed", "properties": {
        "order_id": f"o-{n}", "revenue": 40, "currency": "EUR", "shipping_name": "Alice Quorvane"}})


def barrier(pipeline, n: int) -> None:
    """Bob's n-th event, applied by every projector: everything sent before it is applied."""
    send(pipeline, "/v1/identify", {"userId": "u-bob", "traits": {"plan": "pro", "barrier": n}})
    bob = wait_until(lambda: (r := pipeline.api.get("/v1/profiles/lookup",
                                                    params={"type": "user_id", "value": "u-bob"})
                              ).status_code == 200 and r.json()["traits"].get("barrier") == n and r.json(),
                     60, f"bob's barrier {n} in his profile")
    wait_until(lambda: {"profile_id": bob["profile_id"], "traits": {"barrier": n}} in _exported(pipeline, "pro"),
               60, f"bob's barrier {n} in segments")


def _exported(pipeline, key: str) -> list[dict]:
    lines = pipeline.api.get(f"/v1/segments/{key}/export", params={"format": "jsonl", "traits": "barrier"}).text
    return [json.loads(line) for line in lines.splitlines()]


def alice_profile(pipeline):
    return pipeline.api.get("/v1/profiles/lookup", params={"type": "user_id", "value": ALICE["userId"]})


def erase(pipeline, type_: str = "email", value: str = ALICE_TRAITS["email"], **extra) -> dict:
    response = pipeline.api.post("/v1/privacy/deletions", json={"type": type_, "value": value, **extra})
    assert response.status_code == 202, response.text
    request_id = response.json()["id"]
    return wait_until(lambda: (s := pipeline.api.get(f"/v1/privacy/deletions/{request_id}").json())
                      ["status"] == "done" and s, 60, "the deletion request to be done")


def nothing_readable(pipeline) -> None:
    runtime = pipeline.runtime
    assert found_in_tables([runtime.engine, runtime.keys.engine], NEEDLES) == []
    assert found_on_log(runtime, NEEDLES) == []


def test_erasure_leaves_nothing_readable_and_replay_does_not_bring_them_back(pipeline):
    send_alice(pipeline)
    barrier(pipeline, 1)
    before = alice_profile(pipeline).json()
    assert before["traits"]["email"] == ALICE_TRAITS["email"] and "pro" in [
        m["segment"] for m in before["segments"]]
    assert found_in_tables([pipeline.runtime.engine], NEEDLES[:1])  # the search finds what is there
    exported = pipeline.api.get("/v1/privacy/export", params={"type": "email", "value": ALICE_TRAITS["email"]})
    assert exported.status_code == 200  # audited, with the identifier redacted (searched below)

    status = erase(pipeline)
    assert status["outcome"]["rows_deleted"]["profile_events"] == 2
    assert alice_profile(pipeline).status_code == 404
    barrier(pipeline, 2)
    nothing_readable(pipeline)

    send_alice(pipeline, 1)  # she comes back: acknowledged, and dropped
    barrier(pipeline, 3)
    assert alice_profile(pipeline).status_code == 404
    nothing_readable(pipeline)

    for consumer in ("identity", "profile", "segments"):
        rebuild(pipeline.runtime, projector_for(pipeline.runtime, consumer).handler)
    assert alice_profile(pipeline).status_code == 404
    nothing_readable(pipeline)
    bob = pipeline.api.get("/v1/profiles/lookup", params={"type": "user_id", "value": "u-bob"}).json()
    assert bob["traits"]["barrier"] == 3 and bob["event_count"] == 3  # the others are untouched


def test_erasure_while_the_persons_events_keep_arriving(pipeline):
    send_alice(pipeline)
    barrier(pipeline, 1)
    stop, sent = threading.Event(), []

    def keep_sending():
        while not stop.is_set():
            send_alice(pipeline, len(sent))
            sent.append(1)

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    try:
        wait_until(lambda: len(sent) >= 3, 30, "some of her events before the request")
        erase(pipeline, "user_id", ALICE["userId"])
        count = len(sent)
        wait_until(lambda: len(sent) >= count + 3, 30, "more of her events after erasure")
    finally:
        stop.set()
        sender.join(30)
    barrier(pipeline, 2)
    assert alice_profile(pipeline).status_code == 404
    assert pipeline.api.get("/v1/profiles/lookup", params={"type": "email", "value": ALICE_TRAITS["email"]}
                            ).status_code == 404
    nothing_readable(pipeline)


def test_suppress_only_keeps_the_profile_and_drops_new_events(pipeline):
    send_alice(pipeline)
    barrier(pipeline, 1)
    status = erase(pipeline, mode="suppress")
    assert status["mode"] == "suppress" and "rows_deleted" not in status["outcome"]
    send_alice(pipeline, 1)
    barrier(pipeline, 2)
    assert alice_profile(pipeline).json()["event_count"] == 2  # kept, and nothing new added
    rebuild(pipeline.runtime, projector_for(pipeline.runtime, "identity").handler)
    with reading(pipeline.runtime.engine) as session:  # a replayed identity links her nowhere
        assert session.scalars(select(IdentityLink).where(IdentityLink.value == ALICE["userId"])).all() == []


def test_deletion_requests_need_the_privacy_scope_and_a_real_identifier(pipeline):
    body = {"type": "email", "value": ALICE_TRAITS["email"]}
    assert pipeline.ingest.post("/v1/privacy/deletions", json=body).status_code == 401
    reader = pipeline.api.post("/v1/admin/tokens", json={"name": "r", "scopes": ["profiles:read"]}).json()["token"]
    assert pipeline.api.post("/v1/privacy/deletions", json=body,
                             headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    blank = pipeline.api.post("/v1/privacy/deletions", json={"type": "email", "value": "   "})
    assert blank.status_code == 422 and blank.json()["error"]["field"] == "value"
    assert pipeline.api.get("/v1/privacy/deletions/nope").status_code == 404


def test_the_cli_requests_an_erasure_and_audits_it_without_the_identifier(settings):
    with RunningPipeline(settings) as pipeline:
        send_alice(pipeline)
        wait_until(lambda: alice_profile(pipeline).status_code == 200, 60, "her profile")
        asked = rapport(settings, "privacy", "delete", "email", ALICE_TRAITS["email"])
        request_id = asked.split()[2].rstrip(":")
        wait_until(lambda: pipeline.api.get(f"/v1/privacy/deletions/{request_id}").json()["status"] == "done",
                   60, "the request to be done")
        assert '"done"' in rapport(settings, "privacy", "status", request_id)
        assert "blank or blocked" in rapport(settings, "privacy", "delete", "email", "   ", exit_code=2)  # said why
        assert "no deletion request 'nope'" in rapport(settings, "privacy", "status", "nope", exit_code=2)
        audit = pipeline.api.get("/v1/admin/audit").json()
        assert any(e["action"] == "rapport privacy delete email [redacted]" for e in audit["entries"]), audit
        assert found_in_tables([pipeline.runtime.engine], NEEDLES) == []


def rapport(settings, *args: str, exit_code: int = 0) -> str:
    """The `rapport` command in a child process, on these settings; its output."""
    done = subprocess.run([str(Path(sys.executable).parent / "rapport"), *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **settings_env(settings)})
    assert done.returncode == exit_code, done.stdout + done.stderr
    return done.stdout
