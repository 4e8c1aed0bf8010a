"""A steady load of events with a known effect: every acknowledged messageId is recorded
with what it must do to its profile (one more event; an order adds its revenue).

Each batch is retried with the same messageIds until ingest acknowledges it (a killed
ingest, a broker or database restart answer 5xx or drop the connection), so at the end
every event generated is acknowledged and the ground truth is exact. A 4xx, or an item
of a batch rejected, is a failure of the test: the generator only sends valid events.
"""
from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from services.runtime.clock import format_time, now

PLANS = ("free", "pro", "team")


@dataclass
class Truth:
    events: Counter = field(default_factory=Counter)  # user -> events acknowledged
    orders: Counter = field(default_factory=Counter)
    revenue: Counter = field(default_factory=Counter)  # in cents, summed exactly
    acknowledged: dict = field(default_factory=dict)  # messageId -> (user, revenue cents | None)
    sent_at: dict = field(default_factory=dict)  # messageId -> monotonic time of its 2xx
    retries: int = 0
    answers: Counter = field(default_factory=Counter)  # HTTP status (or "no answer") -> how many
    refused: list = field(default_factory=list)  # 4xx answers or rejected items: must stay empty


class LoadGenerator:
    """`rate` events/s in batches of `batch` from one thread, on a fixed schedule."""

    def __init__(self, ingest_url: str, write_key: str, users: int = 40, rate: float = 100,
                 batch: int = 10, seed: int = 0):
        self.client = httpx.Client(base_url=ingest_url, auth=(write_key, ""), timeout=3)
        self.users, self.rate, self.batch = [f"user-{i}" for i in range(users)], rate, batch
        self.random, self.truth = random.Random(seed), Truth()
        self.stop, self.lock = threading.Event(), threading.Lock()
        self.thread = threading.Thread(target=self._run, name="load-generator", daemon=True)
        self.sequence = 0

    def start(self) -> "LoadGenerator":
        self.thread.start()
        return self

    def finish(self, timeout_s: float = 300) -> Truth:
        """Stop generating; returns once the batch in flight is acknowledged."""
        self.stop.set()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the last batch was never acknowledged"
        self.client.close()
        return self.truth

    def _run(self) -> None:
        interval, due = self.batch / self.rate, time.monotonic()
        while not self.stop.is_set():
            items = [self._event() for _ in range(self.batch)]
            self._send_until_acknowledged(items)
            due += interval
            self.stop.wait(max(0.0, due - time.monotonic()))

    def _event(self) -> dict:
        self.sequence += 1
        user = self.random.choice(self.users)
        event = {"messageId": f"m-{self.sequence}-{uuid.uuid4().hex[:8]}", "userId": user,
                 "timestamp": format_time(now())}
        if self.random.random() < 0.3:
            plan = self.random.choice(PLANS)
            return event | {"type": "identify", "traits": {"plan": plan, "email": f"{user}@example.com"}}
        cents = self.random.randint(100, 20_000)
        return event | {"type": "track", "event": "Order Completed",
                        "properties": {"revenue": cents / 100, "currency": "USD"}}

    def _send_until_acknowledged(self, items: list[dict]) -> None:
        attempt = 0
        while True:
            try:
                response = self.client.post("/v1/batch", json={"batch": items})
                self.truth.answers[response.status_code] += 1
                if response.status_code < 300:
                    self._acknowledged(items, response.json())
                    return
                if response.status_code < 500 and response.status_code != 429:
                    self.truth.refused.append((response.status_code, response.text[:500]))
                    return
            except httpx.HTTPError:
                self.truth.answers["no answer"] += 1
            attempt += 1
            self.truth.retries += 1
            time.sleep(min(1.0, 0.05 * 2 ** attempt))  # the client's backoff, as an SDK's

    def _acknowledged(self, items: list[dict], body: dict) -> None:
        if body.get("rejected"):
            self.truth.refused.append((200, body["rejected"]))
        at = time.monotonic()
        with self.lock:
            for item in items:
                user, cents = item["userId"], None
                self.truth.events[user] += 1
                if item["type"] == "track":
                    cents = round(item["properties"]["revenue"] * 100)
                    self.truth.orders[user] += 1
                    self.truth.revenue[user] += cents
                self.truth.acknowledged[item["messageId"]] = (user, cents)
                self.truth.sent_at[item["messageId"]] = at
