"""Sends a demo population through the ingest HTTP API, as the sources' SDKs would, and
defines example segments through the segments API: the same doors a real user's data takes."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx

from services.demo.population import Outgoing, in_time_order, population

logger = logging.getLogger("rapport.demo")
BATCH = 200  # messages per request: far under the 500 KB limit (a demo message is < 1 KB)
# where each kind of message comes from: a source of that name and kind is found or created
SOURCES = {"website": ("default", "website"), "mobile": ("iOS app", "mobile"), "shop": ("Shop", "shop"),
           "helpdesk": ("Help desk", "helpdesk"), "social": ("Social listening", "social")}
EXAMPLE_SEGMENTS = (
    ("high-value", "High-value customers", 'clv_historic >= 300 and orders >= 3'),
    ("recent-buyers", "Bought in the last 30 days", 'did "Order Completed" within 30d'),
    ("win-back", "Lapsing or churned, reachable by email", '(stage = "at_risk" or stage = "churned") and consent.email'),
    ("detractors", "NPS detractors", 'nps_category = "detractor"'),
    ("social-fans", "Mentioned us on social media", 'did "Mention Posted"'),
)


@dataclass
class Outcome:
    people: int = 0
    sent: int = 0
    rejected: int = 0
    segments: tuple[str, ...] = ()


def source_keys(api: httpx.Client) -> dict[str, str]:
    """The write key of each kind's source (the first-start `default` one takes the website's)."""
    found = {s["name"]: s for s in _ok(api.get("/v1/sources")).json()["sources"]}
    keys = {}
    for kind, (name, source_kind) in SOURCES.items():
        source = found.get(name) or _ok(api.post("/v1/sources", json={"name": name, "kind": source_kind})).json()
        keys[kind] = source["write_key"]
    return keys


def send(ingest: httpx.Client, messages: list[Outgoing], keys: dict[str, str],
         progress: Callable[[int], None] = lambda n: None) -> int:
    """POST the messages in time order as /v1/batch calls; answers how many were rejected."""
    rejected = 0
    for start in range(0, len(messages), BATCH):
        chunk = messages[start:start + BATCH]
        for source in dict.fromkeys(m.source for m in chunk):  # one write key a request
            batch = [m.body for m in chunk if m.source == source]
            sent_at = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
            answer = _post(ingest, {"batch": batch, "sentAt": sent_at}, keys[source])
            rejected += len(answer.get("rejected", []))
        progress(len(chunk))
    return rejected


def define_segments(api: httpx.Client) -> tuple[str, ...]:
    """The example segments, by their text form; one that exists already is left as it is."""
    for key, name, text in EXAMPLE_SEGMENTS:
        response = api.post("/v1/segments", json={"key": key, "name": name, "text": text})
        if response.status_code != 409:
            _ok(response)
    return tuple(key for key, *_ in EXAMPLE_SEGMENTS)


def seed(url: str, token: str, people: int, seed_: int, *,
         progress: Callable[[int, int], None] = lambda done, total: None) -> Outcome:
    """Generate `people` people from `seed_` and send them to the Rapport at `url`."""
    messages = in_time_order(population(people, seed_, datetime.now(timezone.utc)))
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as api, \
            httpx.Client(base_url=url, timeout=60) as ingest:
        keys = source_keys(api)
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            progress(done[0], len(messages))
        rejected = send(ingest, messages, keys, advance)
        segments = define_segments(api)
    return Outcome(people, len(messages), rejected, segments)


def seed_in_background(url: str, token: str, people: int, seed_: int, timeout_s: float = 120) -> threading.Thread:
    """`rapport up`'s first start: once the server answers, seed it, without holding up the start."""

    def run() -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a log line per batch
        try:
            _wait_until_up(url, timeout_s)
            logger.info("demo data: sending %d people (seed %d)", people, seed_)
            outcome = seed(url, token, people, seed_)
            logger.info("demo data: %d events sent (%d rejected on purpose), segments %s", outcome.sent,
                        outcome.rejected, ", ".join(outcome.segments))
        except (httpx.HTTPError, TimeoutError, RuntimeError) as error:
            logger.warning("demo data not loaded: %s (run `rapport demo` to try again)", error)

    thread = threading.Thread(target=run, name="demo-data", daemon=True)
    thread.start()
    return thread


def _wait_until_up(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")
        time.sleep(0.1)  # the server is starting in this process; nothing to wait on but its port


def _post(ingest: httpx.Client, body: dict, write_key: str, attempts: int = 20) -> dict:
    """One batch, retried as an SDK does on 429 and 503 (after their Retry-After)."""
    for _ in range(attempts):
        response = ingest.post("/v1/batch", json=body, auth=(write_key, ""))
        if response.status_code not in (429, 503):
            return _ok(response).json()
        time.sleep(float(response.headers.get("Retry-After", "1")))  # the server's own backoff
    raise RuntimeError(f"ingest kept answering {response.status_code}")


def _ok(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise RuntimeError(f"{response.request.method} {response.request.url.path} answered "
                           f"{response.status_code}: {response.text[:300]}")
    return response
