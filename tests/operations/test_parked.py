"""Poison events: the record a handler fails on is parked, the rest are applied once each,
and the parked one can be listed and retried (CLI and admin API)."""
from __future__ import annotations

from collections import Counter

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from services import migrations
from services.cli import app as cli
from services.runtime import parked, topics
from services.runtime.access import create_token
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.db import writing
from services.runtime.log import Message
from services.runtime.metrics import CONSUMER_PARKED
from services.runtime.runner import bootstrap_services, build_app
from tests.contract.counting import INPUT, KEYS, counts
from tests.operations.poison import PoisonAwareHandler, counting_runtime
from tests.support import caught_up, settings_env, wait_until

TOTAL = 120
POISON_AT = 37  # inside the second batch of 25


@pytest.fixture
def runtime(settings):
    runtime = counting_runtime(settings, [Message.of(KEYS[i % len(KEYS)], {"n": i, "poison": i == POISON_AT})
                                          for i in range(TOTAL)], batch_size=25)
    yield runtime
    runtime.close()


def run_until_caught_up(runtime, handler):
    projector = runtime.projector(handler)
    thread = projector.start()
    try:
        wait_until(lambda: caught_up(runtime, "counting", TOTAL), 60, "the consumer to move past the poison")
    finally:
        projector.stop.set()
        thread.join(30)
    return projector


def test_a_poison_record_is_parked_and_the_rest_applied_once(runtime):
    parked_before = CONSUMER_PARKED.labels("counting")._value.get()
    handler = PoisonAwareHandler()
    projector = run_until_caught_up(runtime, handler)

    good = Counter(KEYS[i % len(KEYS)] for i in range(TOTAL) if i != POISON_AT)
    assert counts(runtime.engine) == dict(good) | {k: good.get(k, 0) for k in KEYS}
    [row] = parked.list_parked(runtime.engine, "counting")
    assert (row.topic, row.key, row.attempts) == (INPUT, KEYS[POISON_AT % len(KEYS)], 1)
    assert row.error.startswith("PoisonError: cannot apply")
    assert CONSUMER_PARKED.labels("counting")._value.get() == parked_before + 1

    with pytest.raises(parked.RetryRefused, match="PoisonError"):
        parked.retry(projector, row.id)  # still poison: kept, attempt counted
    assert parked.list_parked(runtime.engine)[0].attempts == 2
    assert sum(counts(runtime.engine).values()) == TOTAL - 1  # the failed retry rolled back

    handler.poisoned = False  # the bug is fixed
    parked.retry(projector, row.id)
    assert sum(counts(runtime.engine).values()) == TOTAL
    assert parked.list_parked(runtime.engine) == []
    assert parked.list_parked(runtime.engine, resolved=True)[0].resolved_at is not None
    with pytest.raises(parked.RetryRefused, match="resolved"):
        parked.retry(projector, row.id)


def test_a_restarted_consumer_does_not_apply_a_parked_record(runtime):
    run_until_caught_up(runtime, PoisonAwareHandler())
    runtime.log.append(INPUT, [Message.of(KEYS[0], {"n": "late"})])
    restarted = runtime.projector(PoisonAwareHandler())
    thread = restarted.start()
    try:
        wait_until(lambda: caught_up(runtime, "counting", TOTAL + 1), 60, "the late record")
    finally:
        restarted.stop.set()
        thread.join(30)
    assert sum(counts(runtime.engine).values()) == TOTAL  # TOTAL - 1 good, + 1 late
    assert len(parked.list_parked(runtime.engine)) == 1


def park_a_malformed_resolved_event(runtime) -> None:
    """events.resolved with a message the profile handler can't read: a real poison."""
    runtime.log.append(topics.EVENTS_RESOLVED, [Message.of("p-1", {"kind": "event"})])
    app = build_app(runtime, bootstrap_services(runtime, ["profile"]))
    with TestClient(app):
        wait_until(lambda: parked.list_parked(runtime.engine, "profile"), 60, "the profile consumer to park it")


def test_parked_events_over_the_admin_api(settings):
    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    try:
        park_a_malformed_resolved_event(runtime)
        with writing(runtime.engine) as session:
            admin = create_token(session, "ops", ["admin"])
            reader = create_token(session, "reader", ["profiles:read"])
        client = TestClient(build_app(runtime, bootstrap_services(runtime), run_projectors=False))
        as_admin = {"Authorization": f"Bearer {admin}"}

        assert client.get("/v1/admin/parked", headers={"Authorization": f"Bearer {reader}"}).status_code == 403
        [event] = client.get("/v1/admin/parked", headers=as_admin).json()["parked"]
        assert (event["consumer"], event["topic"], event["value"]) == ("profile", topics.EVENTS_RESOLVED,
                                                                        {"kind": "event"})
        assert event["error"].startswith("KeyError")

        retried = client.post(f"/v1/admin/parked/{event['id']}/retry", headers=as_admin)
        assert retried.status_code == 409 and "KeyError" in retried.json()["error"]["message"]
        assert client.get("/v1/admin/parked", headers=as_admin).json()["parked"][0]["attempts"] == 2
        assert client.post("/v1/admin/parked/999999/retry", headers=as_admin).status_code == 404
    finally:
        runtime.close()


def test_parked_events_from_the_cli(settings, monkeypatch):
    runtime = bootstrap_runtime(settings)
    migrations.upgrade(runtime.engine)
    try:
        park_a_malformed_resolved_event(runtime)
        [row] = parked.list_parked(runtime.engine)
        for name, value in settings_env(settings).items():
            monkeypatch.setenv(name, value)
        runner = CliRunner()
        listed = runner.invoke(cli, ["parked", "list"], terminal_width=300)
        assert listed.exit_code == 0 and "profile" in listed.output and "KeyError" in listed.output
        retried = runner.invoke(cli, ["parked", "retry", str(row.id)])
        assert retried.exit_code == 1 and "failed again" in retried.output
        assert runner.invoke(cli, ["parked", "retry", "999999"]).exit_code == 1
        assert parked.list_parked(runtime.engine)[0].attempts == 2
    finally:
        runtime.close()
