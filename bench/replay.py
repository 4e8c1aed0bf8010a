"""Replay: rebuilding every projection from the log (`rapport replay all`) against a raw read of it.

    .venv/bin/python bench/replay.py --events 20000 [--backend embedded|postgres]

Setup (untimed): N realistic Segment-format events (identify, page, track, as ingest
writes them: validated by ingest's `canonical`, with `normalised`) are appended to the
embedded log's events.raw in batches of 1000, and the live identity, profile and segments
projectors (with three segments defined; taking turns in one thread, as `rapport up` runs
them) run until they have applied everything, so
events.resolved and profiles.changed hold what the pipeline made of them. Then, timed:
(a) baseline: a fresh consumer reads every record of events.raw, events.resolved and
    profiles.changed (the replayed topics) from the log;
(b) every projection rebuilt and swapped in by the function behind `rapport replay all`
    (services/runtime/replay.py `rebuild_all`: at once, a process each, on both backends,
    forked from a server that imported the services once), live projectors stopped.
Prints events/s of both (N input events over the seconds), the ratio, and a linear
extrapolation to 1M events. Asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pydantic import TypeAdapter
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scratch_db import drop_database, fresh_database  # noqa: E402
from services import migrations  # noqa: E402
from services.ingest.domain.messages import canonical, partition_key  # noqa: E402
from services.ingest.domain.normalise import normalised_identifiers  # noqa: E402
from services.runtime import replay, topics  # noqa: E402
from services.runtime.bootstrap import bootstrap_runtime, tune_gc  # noqa: E402
from services.runtime.db import reading, writing  # noqa: E402
from services.runtime.log import Message, TopicPartition  # noqa: E402
from services.runtime.projector import ProjectorTurns  # noqa: E402
from services.runtime.runner import bootstrap_services  # noqa: E402
from services.runtime.settings import Settings  # noqa: E402
from services.runtime.tables import ConsumerOffset  # noqa: E402
from services.segments.definitions import SegmentIn, save  # noqa: E402

SPREAD = timedelta(hours=6)  # the events' timestamps lie within this, at most a second apart
REPLAYED_TOPICS = (topics.EVENTS_RAW, topics.EVENTS_RESOLVED, topics.PROFILES_CHANGED)
SEGMENTS = [("pro", 'traits.plan = "pro"'), ("de", 'traits.country = "DE"'),
            ("pro-outside-de", 'traits.plan = "pro" and not traits.country = "DE"')]
PAGES = ["/", "/pricing", "/docs", "/blog/launch", "/shop/shoes", "/shop/jackets"]
PRODUCTS = [("sku-1042", "Trail Runner 2", 89.90), ("sku-2210", "Merino Base Layer", 64.00),
            ("sku-3307", "Ultralight Tent 2P", 329.00), ("sku-5123", "Rain Shell Jacket", 149.00)]


# --- events -------------------------------------------------------------------

def first_timestamp() -> datetime:
    """2026-01-05, at six hours of the day after now: no event's time of day comes round while
    the bench runs, so a `days_since_last_order` never moves on with the day between the live
    computation and the rebuilt one (the replay then reported those profiles as differing)."""
    later = datetime.now(timezone.utc) + timedelta(hours=6)
    return datetime(2026, 1, 5, later.hour, later.minute, tzinfo=timezone.utc)


def segment_call(i: int, person: int, rng: random.Random, at: datetime) -> tuple[str, dict]:
    """What an SDK sends for the i-th event, at `at`: a quarter of people never log in (anonymousId only)."""
    ids = {"anonymousId": str(uuid.UUID(int=person + 1)), "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
           "timestamp": at.isoformat().replace("+00:00", "Z"),
           "context": {"library": {"name": "analytics.js", "version": "next-1.70.0"}, "locale": "en-GB",
                       "ip": f"203.0.113.{person % 250 + 1}", "page": {"path": rng.choice(PAGES)}}}
    known = person % 4 != 0
    if known:
        ids["userId"] = f"user-{person:06d}"
    roll = rng.random()
    if known and roll < 0.1:
        return "identify", {**ids, "traits": {
            "email": f"User.{person}@Example.com", "name": f"Person {person}",
            "plan": rng.choice(["free", "free", "pro"]), "country": rng.choice(["DE", "FR", "GB", "US"])}}
    if roll < 0.4:
        return "page", {**ids, "name": "Page", "properties": {"path": rng.choice(PAGES)}}
    sku, name, price = rng.choice(PRODUCTS)
    event = "Order Completed" if roll > 0.95 else rng.choice(["Product Viewed", "Product Added"])
    properties = {"product_id": sku, "name": name, "price": price, "currency": "EUR"}
    if event == "Order Completed":
        properties |= {"order_id": f"o-{i}", "revenue": price, "products": [{"product_id": sku, "quantity": 1}]}
    return "track", {**ids, "event": event, "properties": properties}


def raw_events(count: int, people: int, seed: int) -> list[dict]:
    """The events as ingest puts them on events.raw (canonical form plus `normalised`)."""
    rng, start, step = random.Random(seed), first_timestamp(), min(timedelta(seconds=1), SPREAD / max(count, 1))
    events = []
    for i in range(count):
        at = start + i * step
        kind, body = segment_call(i, rng.randrange(people), rng, at)
        event = canonical(kind, body, "src-bench", at + timedelta(milliseconds=40))
        if identifiers := normalised_identifiers(event):
            event["normalised"] = identifiers
        events.append(event)
    return events


def append_raw(log, events: list[dict], batch: int = 1000) -> None:
    for start in range(0, len(events), batch):
        log.append(topics.EVENTS_RAW, [Message.of(partition_key(e), e) for e in events[start:start + batch]])


# --- the live pipeline, run to the end of the log --------------------------------

def define_segments(runtime) -> None:
    for key, text in SEGMENTS:
        with writing(runtime.engine) as session:
            save(session, SegmentIn(key=key, name=key, text=text), existing=None)


def end_of(log, topic_names) -> int:
    partitions = [TopicPartition(t, p) for t in topic_names for p in range(log.partitions(t))]
    return sum(log.end_offsets(partitions).values())


def applied(runtime, consumer: str) -> int:
    with reading(runtime.engine) as session:
        return session.scalar(select(func.coalesce(func.sum(ConsumerOffset.next_offset), 0))
                              .where(ConsumerOffset.consumer == consumer))


def run_pipeline(runtime, timeout_s: float) -> float:
    """Start the live projectors as `rapport up` does (taking turns in one thread), wait until
    each has applied its topics to the end, stop them."""
    projectors = [s.projector for s in bootstrap_services(runtime) if s.projector is not None]
    turns = ProjectorTurns(projectors)
    thread = turns.start()
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < timeout_s:
            # in data-flow order: once identity is done, nothing more lands on events.resolved, etc.
            if all(applied(runtime, p.handler.name) >= end_of(runtime.log, p.handler.topics) for p in projectors):
                return time.perf_counter() - started
            time.sleep(0.5)
        raise RuntimeError(f"the pipeline did not catch up within {timeout_s:.0f}s")
    finally:
        turns.stop.set()
        thread.join(timeout=60)


# --- the two timed measurements --------------------------------------------------

def raw_read(log) -> tuple[int, float]:
    """(a) Read every record of the replayed topics with a fresh consumer."""
    total = end_of(log, REPLAYED_TOPICS)
    consumer = log.consumer(f"bench-read-{uuid.uuid4().hex[:6]}", REPLAYED_TOPICS, lambda _tps: {})
    started, read = time.perf_counter(), 0
    try:
        while read < total:
            read += len(consumer.poll(500, 1.0))
    finally:
        consumer.close()
    return read, time.perf_counter() - started


def replay_all(runtime) -> tuple[list[replay.Report], dict[str, tuple[float, float]], float]:
    """(b) What `rapport replay all` does (`rebuild_all`): rebuild and swap in every
    projection, at once in processes of their own on PostgreSQL, in turn on SQLite. Answers
    the reports, each projection's (seconds until its copy caught up, seconds until its last
    progress report, the swap's) and the total seconds."""
    started, caught_up, last = time.perf_counter(), {}, {}

    def progress(name: str, done: int, total: int) -> None:
        last[name] = time.perf_counter() - started
        if done >= total:
            caught_up.setdefault(name, last[name])

    reports = replay.rebuild_all(runtime, list(replay.replayable(runtime)), swap=True, progress=progress)
    seconds = {name: (caught_up.get(name, last[name]), last[name]) for name in last}
    return reports, seconds, time.perf_counter() - started


def print_reports(reports: list[replay.Report], per_projection: dict[str, tuple[float, float]]) -> None:
    for report in reports:
        same = "rebuilt tables equal the live ones" if report.equal else f"differences {report.differences}"
        rebuild_s, whole_s = per_projection[report.consumer]
        print(f"      {report.consumer:<9} {report.records:>8} records: copy caught up at {rebuild_s:.2f}s, "
              f"swapped at {whole_s:.2f}s from the start  {same}"
              + (f"; {report.superseded} superseded, not applied" if report.superseded else "")
              + f"; peak memory {report.peak_memory_mb:,.0f} MB")


def compare(runtime, pairs: int, vary: str) -> None:
    """--ab: on the one setup, `pairs` rounds of replays with the setting `vary` ("NAME=A,B[,C...]")
    at each value, in reverse order every other round (RAPPORT_REPLAY_LATEST_ONLY off and on by
    default)."""
    name, values = vary.split("=", 1)
    field = Settings.model_fields[name]  # a KeyError names a setting that doesn't exist
    typed = [TypeAdapter(field.annotation).validate_python(v) for v in values.split(",")]
    settings = runtime.settings
    for pair in range(pairs):
        for value in (typed if pair % 2 == 0 else typed[::-1]):
            runtime.settings = settings.model_copy(update={name: value})
            reports, per_projection, replay_s = replay_all(runtime)
            print(f"\n(b) replay all, {name}={value}: {replay_s:.2f}s")
            print_reports(reports, per_projection)
    runtime.settings = settings


# --- main ----------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="raw events on the log")
    parser.add_argument("--people", type=int, default=None, help="distinct people (default: events / 20)")
    parser.add_argument("--backend", choices=["embedded", "postgres"], default="embedded",
                        help="the projections' database: SQLite in the temp dir, or PostgreSQL (the log stays embedded)")
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="with --backend postgres: a server URL; a fresh database is created on it and dropped after")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds the live pipeline may take")
    parser.add_argument("--ab", type=int, default=0, metavar="PAIRS",
                        help="instead of (a) and (b): PAIRS rounds of replays on the one setup, comparing --vary")
    parser.add_argument("--vary", default="replay_latest_only=false,true", metavar="SETTING=A,B[,C...]",
                        help="with --ab: the setting the rounds compare, and its values")
    args = parser.parse_args()
    people = args.people or max(1, args.events // 20)

    workdir = Path(tempfile.mkdtemp(prefix="rapport-bench-replay-"))
    database_url = fresh_database(args.database_url) if args.backend == "postgres" else ""
    runtime = None
    try:
        runtime = bootstrap_runtime(Settings(data_dir=workdir, database_url=database_url))
        migrations.upgrade(runtime.engine)
        tune_gc()  # as `rapport replay` does
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs; database: "
              f"{'PostgreSQL' if database_url else 'SQLite'}, log: embedded, in {workdir}")
        events = raw_events(args.events, people, args.seed)
        append_raw(runtime.log, events)
        define_segments(runtime)
        print(f"{args.events} raw events ({people} people) appended; running the live pipeline ...")
        live = run_pipeline(runtime, args.timeout)
        records = {t: end_of(runtime.log, [t]) for t in REPLAYED_TOPICS}
        print(f"live pipeline caught up in {live:.1f}s ({args.events / live:,.0f} events/s); records: "
              + ", ".join(f"{t} {n}" for t, n in records.items()))

        if args.ab:
            compare(runtime, args.ab, args.vary)
            return 0
        read, read_s = raw_read(runtime.log)
        reports, per_projection, replay_s = replay_all(runtime)

        print()
        print(f"(a) raw read of {read} records of {', '.join(REPLAYED_TOPICS)}: {read_s:.2f}s, "
              f"{args.events / read_s:,.0f} events/s ({read / read_s:,.0f} records/s)")
        print(f"(b) replay all (rebuild + swap of every projection): {replay_s:.2f}s, "
              f"{args.events / replay_s:,.0f} events/s")
        print_reports(reports, per_projection)
        print(f"ratio (b)/(a) events/s: {read_s / replay_s:.4f} (replay runs at {100 * read_s / replay_s:.2f}% "
              f"of the raw read)")
        print(f"EXTRAPOLATED, linearly from {args.events} events (not measured): replay of 1,000,000 events "
              f"~ {replay_s * 1_000_000 / args.events:,.0f}s (goal: <= 30s); raw read ~ "
              f"{read_s * 1_000_000 / args.events:,.0f}s")
    finally:
        if runtime is not None:
            runtime.close()
        if database_url:
            drop_database(database_url)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
