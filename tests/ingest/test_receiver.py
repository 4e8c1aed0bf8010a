"""Ingest's Receiver: requests arriving together go to the log together, one group at a time."""
from __future__ import annotations

import asyncio
import threading

from services.ingest.routes import Receiver
from services.ingest.service import Outcome


class GatedIngest:
    """An Ingest whose receive_many records each group and waits for the test to let it go."""

    def __init__(self):
        self.groups: list[list[str]] = []
        self.in_flight, self.most_in_flight = 0, 0
        self.lock, self.gate = threading.Lock(), threading.Event()

    def receive_many(self, requests, received):
        with self.lock:
            self.groups.append([items[0][1] for _source, items in requests])
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.gate.wait(10)
        with self.lock:
            self.in_flight -= 1
        return [Outcome(1, 0, []) for _ in requests]


async def wait_until_async(condition, what: str, timeout_s: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


def test_one_group_is_in_flight_and_the_requests_arriving_meanwhile_make_the_next():
    ingest = GatedIngest()

    async def scenario():
        receiver = Receiver(ingest)
        first = asyncio.create_task(receiver.receive("source", [("track", "r1")]))
        await wait_until_async(lambda: ingest.groups == [["r1"]], "r1's group to be received")
        later = [asyncio.create_task(receiver.receive("source", [("track", f"r{n}")])) for n in (2, 3, 4)]
        for _ in later:
            await asyncio.sleep(0)  # each new request's first step: queued, and no second drain
        assert receiver.running == 1 and [items[0][1] for _s, items, *_ in receiver.waiting] == ["r2", "r3", "r4"]
        ingest.gate.set()
        return await asyncio.wait_for(asyncio.gather(first, *later), 10)

    outcomes = asyncio.run(scenario())
    assert [o.accepted for o in outcomes] == [1, 1, 1, 1]
    assert ingest.groups == [["r1"], ["r2", "r3", "r4"]] and ingest.most_in_flight == 1
