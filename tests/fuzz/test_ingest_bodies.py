"""Hypothesis fuzzer of ingest bodies: random JSON, deep nesting, huge strings, invalid
UTF-8, gzip'd garbage and wrong types. Every answer is a 2xx, or a 4xx with a reason
naming the field; and in a batch mixing good and bad items no good item is lost: each
good item's messageId is on events.raw (read back from the log)."""
from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings, strategies as st

from services import migrations
from services.first_start import ensure_credentials
from services.runtime import topics
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.runner import bootstrap_services, build_app
from services.runtime.sealing import open_records
from services.runtime.settings import Settings
from tests.support import wait_until

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
PATHS = ("/v1/track", "/v1/identify", "/v1/page", "/v1/batch", "/v1/t", "/v1/b")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
wrong_types = st.fixed_dictionaries({}, optional={
    "type": json_values, "event": json_values, "userId": json_values, "anonymousId": json_values,
    "messageId": json_values, "timestamp": json_values, "properties": json_values,
    "traits": json_values, "context": json_values, "sentAt": json_values, "integrations": json_values})


@st.composite
def deeply_nested(draw) -> bytes:
    depth = draw(st.integers(50, 20_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    inner = opener * depth + "1" + closer * depth
    return draw(st.sampled_from([inner, json.dumps({"userId": "u", "event": "e", "properties": "X"})
                                 .replace('"X"', inner), inner[: depth // 2]])).encode()


huge_strings = st.integers(10_000, 700_000).map(
    lambda n: json.dumps({"userId": "u", "event": "e", "properties": {"blob": "x" * n}}).encode())
invalid_utf8 = st.binary(min_size=1, max_size=200).map(lambda b: b'{"userId": "' + b + b'\xff\xfe", "event": "e"}')
raw_bodies = (json_values.map(lambda v: json.dumps(v).encode()) | wrong_types.map(lambda v: json.dumps(v).encode())
              | deeply_nested() | huge_strings | invalid_utf8 | st.binary(max_size=300))

DATA_DIR = Path(tempfile.mkdtemp(prefix="rapport-fuzz-bodies-")) / "data"


@pytest.fixture(scope="module")
def ingest():
    runtime = bootstrap_runtime(Settings(data_dir=DATA_DIR))
    migrations.upgrade(runtime.engine)
    write_key = ensure_credentials(runtime.engine, DATA_DIR)["write_key"]
    app = build_app(runtime, bootstrap_services(runtime, ["ingest"]), run_projectors=False)
    log = LogReader(runtime)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.auth = (write_key, "")
        yield client, log
    log.consumer.close()
    runtime.close()
    shutil.rmtree(DATA_DIR.parent, ignore_errors=True)


def assert_answered_with_reason(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"], error


DEEP_PROPERTIES = json.dumps({"userId": "u", "event": "e", "properties": "X"}).replace(
    '"X"', '{"a":' * 300 + "1" + "}" * 300).encode()


@FUZZ
@given(path=st.sampled_from(PATHS), body=raw_bodies, gzipped=st.sampled_from([None, "gzip", "garbage"]))
@example(path="/v1/track", body=b"[" * 5000, gzipped=None)  # was a 500: RecursionError
@example(path="/v1/track", body=DEEP_PROPERTIES, gzipped="gzip")  # was a 500: pydantic's depth limit
def test_any_body_gets_a_2xx_or_a_4xx_with_its_reason(ingest, path, body, gzipped):
    client, _ = ingest
    headers = {"content-type": "application/json"}
    if gzipped:
        headers["content-encoding"] = "gzip"
        body = gzip.compress(body) if gzipped == "gzip" else body
    assert_answered_with_reason(client.post(path, content=body, headers=headers))


def good_item() -> dict:
    return {"type": "track", "userId": f"u-{uuid.uuid4().hex[:6]}", "event": "Signed Up",
            "messageId": f"good-{uuid.uuid4()}", "properties": {"plan": "pro"}}


@FUZZ
@given(bad=st.lists(wrong_types | json_values, min_size=1, max_size=5), goods=st.integers(1, 5), data=st.data())
def test_a_batch_mixing_good_and_bad_items_loses_no_good_one(ingest, bad, goods, data):
    client, log = ingest
    items = [good_item() for _ in range(goods)] + bad
    order = data.draw(st.permutations(range(len(items))))
    items = [items[i] for i in order]
    good_at = {i for i, item in enumerate(items) if isinstance(item, dict) and item.get("event") == "Signed Up"
               and str(item.get("messageId", "")).startswith("good-")}
    response = client.post("/v1/batch", content=json.dumps({"batch": items}).encode())
    assert_answered_with_reason(response)
    assert response.status_code == 200, response.text
    rejected = {r["index"] for r in response.json().get("rejected", [])}
    assert not rejected & good_at, response.json()
    wanted = {items[i]["messageId"] for i in good_at}
    wait_until(lambda: wanted <= log.message_ids(), 10, "every good item on events.raw")


class LogReader:
    """The messageIds on events.raw (opened: ingest seals what it appends). One consumer
    for the module reads each record once, from the start of the topic: each example adds
    only its own records (a new consumer per example read them all again, and the reading
    time grew with every example)."""

    def __init__(self, runtime):
        self.runtime, self.seen = runtime, set()
        self.consumer = runtime.log.consumer(f"fuzz-{uuid.uuid4().hex[:6]}", [topics.EVENTS_RAW], lambda tps: {})

    def message_ids(self) -> set[str]:
        records = []
        while batch := self.consumer.poll(10_000, 0.01):  # to the end: an empty poll; wait_until asks again
            records += batch
        opened, _ = open_records(self.runtime.keys, records)
        self.seen |= {json.loads(r.value).get("messageId") for r in opened}
        return self.seen
