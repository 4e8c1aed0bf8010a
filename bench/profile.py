"""Profile projector throughput on PostgreSQL (or SQLite) against a bare batched upsert.

    .venv/bin/python bench/profile.py --events 20000 [--database-url postgresql://...]

(a) baseline: the same timeline rows and profile rows written with plain batched
    INSERT ... ON CONFLICT, one transaction per batch;
(b) the profile handler applying the same resolved events, batch by batch, as the
    projector does (traits by last write wins, timeline, computed traits, CRM metrics).
Prints events/s for both and the ratio. Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from datetime import datetime, timedelta, timezone

from scratch_db import drop_database, fresh_database
from services import migrations
from services.profile.computation import Computation
from services.profile.handler import ProfileHandler
from services.profile.tables import Profile, ProfileEvent
from services.runtime.db import make_engine, upsert, writing
from services.runtime.log import Record
from services.runtime.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NAMES = ["Page Viewed", "Product Viewed", "Order Completed", "Ticket Opened", "Survey Responded"]


def resolved_events(count: int, people: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for i in range(count):
        person = rng.randrange(people)
        at = (T0 + timedelta(minutes=i)).isoformat()
        name = rng.choice(NAMES)
        events.append({"kind": "event", "profile_id": f"p-{person}",
                       "identifiers": [{"type": "user_id", "value": f"u{person}"}],
                       "event": {"type": "track", "event": name, "messageId": f"m-{i}", "userId": f"u{person}",
                                 "timestamp": at, "receivedAt": at, "sourceId": "bench",
                                 "properties": {"revenue": rng.randrange(5, 200), "currency": "USD",
                                                "ticket_id": f"t{i % 7}", "nps": rng.randrange(11)},
                                 "context": {"traits": {"plan": rng.choice(["free", "pro"])}}}})
    return events


def baseline(engine, events: list[dict], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(events), batch):
        chunk = events[start:start + batch]
        with writing(engine) as session:
            upsert(session, ProfileEvent, [{
                "profile_id": e["profile_id"], "message_id": e["event"]["messageId"], "type": "track",
                "name": e["event"]["event"], "timestamp": datetime.fromisoformat(e["event"]["timestamp"]),
                "properties": e["event"]["properties"], "source": "bench", "channel": None} for e in chunk],
                keys=["profile_id", "message_id"])
            latest = {e["profile_id"]: datetime.fromisoformat(e["event"]["timestamp"]) for e in chunk}
            upsert(session, Profile, [{"profile_id": p, "first_seen": at, "last_seen": at, "event_count": 1,
                                       "version": 1, "computed": {}} for p, at in latest.items()],
                   keys=["profile_id"], update=["last_seen", "event_count", "version"])
    return time.perf_counter() - started


def through_handler(engine, settings, events: list[dict], batch: int) -> float:
    handler = ProfileHandler(Computation.from_settings(settings))
    records = [Record("events.resolved", 0, i, e["profile_id"], json.dumps(e).encode(), 0)
               for i, e in enumerate(events)]
    started = time.perf_counter()
    for start in range(0, len(records), batch):
        with writing(engine) as session:
            handler.apply(session, records[start:start + batch])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--people", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="a server URL: a fresh database is created on it and dropped after")
    args = parser.parse_args()
    events = resolved_events(args.events, args.people, seed=7)
    figures = {}
    for label, run in (("(a) bare batched upsert", baseline), ("(b) profile handler", through_handler)):
        url = fresh_database(args.database_url)
        engine = make_engine(url)
        try:
            migrations.upgrade(engine)
            settings = Settings(database_url=url)
            seconds = run(engine, events, args.batch) if run is baseline else run(engine, settings, events, args.batch)
            figures[label] = args.events / seconds
        finally:
            engine.dispose()
            drop_database(url)
    print(f"{args.events} events over {args.people} profiles, batches of {args.batch}, on {args.database_url}")
    for label, rate in figures.items():
        print(f"  {label:<28} {rate:>10,.0f} events/s")
    ratio = figures["(b) profile handler"] / figures["(a) bare batched upsert"]
    print(f"  ratio (b)/(a)                {ratio:>10.2f}")


if __name__ == "__main__":
    main()
