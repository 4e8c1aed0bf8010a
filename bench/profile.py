"""Profile projector throughput on PostgreSQL against a bare batched upsert.

    .venv/bin/python bench/profile.py --events 20000 [--database-url postgresql://...]

(a) baseline: the same timeline rows and profile rows written with hand-written batched
    INSERT ... ON CONFLICT on the driver's connection, one transaction per batch;
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

from psycopg.types.json import Jsonb
from scratch_db import drop_database, fresh_database
from services import migrations
from services.profile.computation import Computation
from services.profile.handler import ProfileHandler
from services.runtime.bootstrap import tune_gc
from services.runtime.db import make_engine, writing
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


TIMELINE_UPSERT = """INSERT INTO profile_events (profile_id, message_id, type, name, timestamp, properties, source,
                            channel, traits, consent, version)
VALUES (%s, %s, 'track', %s, %s, %s, 'bench', NULL, '{}', '{}', 0)
ON CONFLICT (profile_id, message_id) DO NOTHING"""
PROFILE_UPSERT = """INSERT INTO profiles (profile_id, first_seen, last_seen, event_count, version, computed)
VALUES (%s, %s, %s, 1, 1, '{}')
ON CONFLICT (profile_id) DO UPDATE SET last_seen = excluded.last_seen,
    event_count = profiles.event_count + 1, version = profiles.version + 1"""


def baseline(engine, events: list[dict], batch: int) -> float:
    """Hand-written SQL on psycopg's own connection (its pipelined executemany): nothing of
    Rapport's runtime, so a change there can't move the baseline."""
    raw = engine.raw_connection()
    try:
        started = time.perf_counter()
        for start in range(0, len(events), batch):
            chunk = events[start:start + batch]
            cursor = raw.cursor()
            cursor.executemany(TIMELINE_UPSERT, [
                (e["profile_id"], e["event"]["messageId"], e["event"]["event"],
                 datetime.fromisoformat(e["event"]["timestamp"]), Jsonb(e["event"]["properties"])) for e in chunk])
            latest = {e["profile_id"]: datetime.fromisoformat(e["event"]["timestamp"]) for e in chunk}
            cursor.executemany(PROFILE_UPSERT, [(p, at, at) for p, at in latest.items()])
            raw.commit()
        return time.perf_counter() - started
    finally:
        raw.close()


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
    tune_gc()  # as a service's process runs (services/runtime/bootstrap.py)
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
