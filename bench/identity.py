"""Identity: events/s through the identity worker, and time to merge over HTTP.

    .venv/bin/python bench/identity.py                       # both parts, every backend
    .venv/bin/python bench/identity.py --part throughput --events 10000
    .venv/bin/python bench/identity.py --part merge --merges 200
    .venv/bin/python bench/identity.py --part identifiers --events 20000

(0) identifiers: microseconds an event for identifiers_of alone, on (a)'s events.
(a) throughput: `--events` realistic Segment events (bench/replay.py's generator: identify,
    page and track calls, a quarter of people never logging in; the form ingest writes) are
    appended to events.raw untimed; then identity projectors (IdentityHandler only, one
    consumer group) run until they have applied the topic to its end. Events/s = events /
    seconds from start to caught up. Backends: SQLite + the embedded log (1 worker), and
    PostgreSQL + Kafka (a Tansu broker started here; tests/backends.py) with 1 and 2
    workers: two projectors in one group share events.raw's partitions.
(b) time to merge: `rapport up` (SQLite, embedded log) on a free port. Its maximum rate is
    measured first: `--burst` events sent through POST /v1/batch (100 a request, 4 threads,
    as fast as answered), timed until identity has resolved all of them (its consumer offsets
    in the database), then until the pipeline has applied the burst. Then, under a steady
    background of batches at half that rate (`--rate` to choose), every
    `--every` seconds a probe: a track from a new anonymous id, wait until its profile reads
    over HTTP, then an identify joining it to a new user id; latency = from the identify's 2xx
    to GET /v1/profiles/{the anonymous profile's id} answering the user's profile (polled
    every 5 ms). Reports p50/p99/max; probing stops after `--deadline` seconds, as a
    background above the pipeline's capacity never lets it catch up. The bench asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ingest import RapportUp  # noqa: E402
from replay import append_raw, applied, raw_events, segment_call  # noqa: E402
from scratch_db import drop_database, fresh_database  # noqa: E402

from services import migrations  # noqa: E402
from services.identity.domain.identifiers import Identifier, identifiers_of  # noqa: E402
from services.identity.domain.resolution import new_profile_id  # noqa: E402
from services.identity.handler import IdentityHandler  # noqa: E402
from services.runtime.bootstrap import bootstrap_runtime  # noqa: E402
from services.runtime.settings import Settings  # noqa: E402
from tests.backends import Tansu, local_postgres_url, tansu_binary  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] if ordered else math.nan


# --- (a) throughput ---------------------------------------------------------------------

def throughput(settings: Settings, events: list[dict], workers: int, timeout_s: float) -> tuple[float, float, int]:
    """Seconds for `workers` identity projectors to resolve `events` from a fresh log and
    database; and the seconds and events from the first batch committed to the end, which
    leave out joining the consumer group (3-5 s on Tansu) and the first poll."""
    runtime = bootstrap_runtime(settings)
    try:
        migrations.upgrade(runtime.engine)
        append_raw(runtime.log, events)
        total = len(events)  # a fresh topic: offsets start at 0 on every partition
        projectors = [runtime.projector(IdentityHandler(log=runtime.log)) for _ in range(workers)]
        started, first = time.perf_counter(), None
        threads = [p.start() for p in projectors]
        try:
            while (done := applied(runtime, "identity")) < total:
                if time.perf_counter() - started > timeout_s:
                    raise RuntimeError(f"identity did not catch up within {timeout_s:.0f}s")
                if done and first is None:
                    first = (time.perf_counter(), done)
                time.sleep(0.05)
            ended = time.perf_counter()
            first = first or (ended, total)
            return ended - started, ended - first[0], int(total - first[1])
        finally:
            for p in projectors:
                p.stop.set()
            for t in threads:
                t.join(timeout=60)
    finally:
        runtime.close()


def run_identifiers(args) -> None:
    """Microseconds a call of identifiers_of (every rule's sources read and normalised) on
    the same events, against copying each event's top level (a floor, measured alongside)."""
    events = raw_events(args.events, max(1, args.events // 20), args.seed)
    started = time.perf_counter()
    for event in events:
        dict(event)
    floor = time.perf_counter() - started
    started = time.perf_counter()
    for event in events:
        identifiers_of(event)
    seconds = time.perf_counter() - started
    print(f"\n(0) identifiers_of: {seconds / len(events) * 1e6:.1f} us an event "
          f"({len(events)} events; a dict copy of each: {floor / len(events) * 1e6:.2f} us)")


def run_throughput(args, workdir: Path) -> None:
    people = max(1, args.events // 20)
    events = raw_events(args.events, people, args.seed)
    print(f"\n(a) identity throughput, {args.events} events of {people} people, {os.cpu_count()} CPUs")
    print("| backend | workers | seconds | events/s | events/s after the first batch |\n| --- | --- | --- | --- | --- |")
    row("SQLite + embedded log", 1, throughput(Settings(data_dir=workdir / "a-embedded"), events, 1,
                                                args.timeout), args.events)
    if args.no_postgres or tansu_binary() is None:
        print("PostgreSQL + Kafka skipped (--no-postgres, or no Tansu binary)")
    else:
        for workers in (1, 2):
            with ExitStack() as stack:
                broker = Tansu()
                broker.start()
                stack.callback(broker.stop)
                database = fresh_database(args.database_url)
                stack.callback(drop_database, database)
                settings = Settings(data_dir=workdir / f"a-pg-{workers}", database_url=database,
                                    log_backend="kafka", kafka_bootstrap_servers=broker.bootstrap)
                row("PostgreSQL + Kafka (Tansu)", workers, throughput(settings, events, workers, args.timeout),
                    args.events)


def row(backend: str, workers: int, timed: tuple[float, float, int], events: int) -> None:
    seconds, steady_seconds, steady_events = timed
    steady = f"{steady_events / steady_seconds:,.0f}" if steady_seconds > 0 else "-"
    print(f"| {backend} | {workers} | {seconds:.1f} | {events / seconds:,.0f} | {steady} |", flush=True)


# --- (b) time to merge --------------------------------------------------------------------

class Background:
    """POST /v1/batch of 100 realistic events at `rate` events/s, open loop, until stopped."""

    def __init__(self, server: RapportUp, rate: float, threads: int = 2):
        self.server, self.rate, self.threads = server, rate, threads
        self.stop, self.sent, self.failed, self.lock = threading.Event(), 0, 0, threading.Lock()
        self.workers = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(threads)]

    def __enter__(self) -> "Background":
        self.started = time.monotonic()
        for w in self.workers:
            w.start()
        return self

    def _run(self, k: int) -> None:
        import random
        rng, batch = random.Random(k), 100
        interval = batch * self.threads / self.rate
        with httpx.Client(base_url=self.server.url, auth=(self.server.write_key(), ""), timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                time.sleep(max(0.0, self.started + (n + k / self.threads) * interval - time.monotonic()))
                response = client.post("/v1/batch", json={"batch": background_batch(rng, batch)})
                with self.lock:
                    self.sent += batch if response.is_success else 0
                    self.failed += 0 if response.is_success else 1
                n += 1

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        for w in self.workers:
            w.join(timeout=30)


def background_batch(rng, size: int) -> list[dict]:
    """Calls from a large population (mostly known people, so little merging in the background)."""
    now, calls = datetime.now(timezone.utc), []
    for _ in range(size):
        kind, body = segment_call(rng.randrange(10**6), rng.randrange(100_000), rng, now)
        calls.append({**body, "type": kind})
    return calls


def resolved_offset(data_dir: Path) -> int:
    """Events identity has applied, from rapport up's database (its consumer offsets)."""
    with sqlite3.connect(f"file:{data_dir / 'rapport.db'}?mode=ro", uri=True, timeout=30) as conn:
        row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets "
                           "WHERE consumer = 'identity'").fetchone()
    return row[0]


CONSUMED = {"events.raw": "identity", "events.resolved": "profile", "profiles.changed": "segments"}


def backlog(data_dir: Path) -> int:
    """Records on the embedded log that their projector (identity, profile, segments) has not applied."""
    return sum(backlogs(data_dir).values())


def backlogs(data_dir: Path) -> dict[str, int]:
    """Each projector's records not yet applied (which one falls behind)."""
    with sqlite3.connect(f"file:{data_dir / 'log.db'}?mode=ro", uri=True, timeout=30) as log, \
            sqlite3.connect(f"file:{data_dir / 'rapport.db'}?mode=ro", uri=True, timeout=30) as db:
        ends = {(t, p): end for t, p, end in log.execute(
            "SELECT topic, partition, max(\"offset\") + 1 FROM log_records GROUP BY topic, partition")}
        applied = {(t, p): o for t, p, o in db.execute(
            "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer IN "
            "('identity', 'profile', 'segments')")}
    behind = dict.fromkeys(CONSUMED.values(), 0)
    for (topic, partition), end in ends.items():
        if topic in CONSUMED:
            behind[CONSUMED[topic]] += end - applied.get((topic, partition), 0)
    return behind


def max_rate(server: RapportUp, events: int) -> tuple[float, float]:
    """(accepted events/s, resolved events/s) for `events` sent as fast as they are answered."""
    import random
    base = resolved_offset(server.data_dir)
    started = time.perf_counter()

    def send(k: int) -> None:
        rng = random.Random(100 + k)
        with httpx.Client(base_url=server.url, auth=(server.write_key(), ""), timeout=60) as client:
            for _ in range(events // 400):
                client.post("/v1/batch", json={"batch": background_batch(rng, 100)}).raise_for_status()

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = time.perf_counter() - started
    sent = events // 400 * 400
    while resolved_offset(server.data_dir) < base + sent:
        time.sleep(0.1)
    return sent / accepted, sent / (time.perf_counter() - started)


def probe(server: RapportUp, api: httpx.Client, timeout_s: float = 120, every_s: float = 0.02) -> float | None:
    """Seconds from an identify's 2xx to the anonymous profile's id reading as the user's."""
    anon, user = f"probe-{uuid.uuid4().hex[:12]}", f"probe-user-{uuid.uuid4().hex[:12]}"
    absorbed, survivor = (new_profile_id(Identifier("anonymous_id", anon)),
                          new_profile_id(Identifier("user_id", user)))
    with httpx.Client(base_url=server.url, auth=(server.write_key(), ""), timeout=30) as ingest:
        ingest.post("/v1/track", json={"anonymousId": anon, "event": "Probe Viewed"}).raise_for_status()
        if not poll(lambda: api.get(f"/v1/profiles/{absorbed}").status_code == 200, timeout_s, every_s):
            return None
        ingest.post("/v1/identify", json={"anonymousId": anon, "userId": user}).raise_for_status()
        answered = time.perf_counter()
    if not poll(lambda: profile_of(api, absorbed) == survivor, timeout_s, every_s):
        return None
    return time.perf_counter() - answered


def profile_of(api: httpx.Client, profile_id: str) -> str | None:
    response = api.get(f"/v1/profiles/{profile_id}")
    return response.json().get("profile_id") if response.status_code == 200 else None


def poll(condition, timeout_s: float, every_s: float) -> bool:
    """Ask until `condition` holds. The probe's readings go to the server it measures, in the
    same process as the pipeline, so it asks every --poll-ms (a reading every 5 ms was 200
    requests/s competing with the projectors for the GIL)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return False


def run_merge(args, workdir: Path) -> None:
    with RapportUp(workdir / "up", 120, quiet=True) as server:
        token = json.loads((server.data_dir / "credentials.json").read_text())["admin_token"]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            probe(server, api)  # imports and caches
            accepted, resolved = max_rate(server, args.burst)
            rate = args.rate or resolved / 2
            print(f"\n(b) rapport up, SQLite + embedded log: max {accepted:,.0f} events/s accepted, "
                  f"{resolved:,.0f} events/s resolved by identity ({args.burst} events); background at {rate:,.0f}/s")
            drained = poll(lambda: backlog(server.data_dir) == 0, 300, every_s=0.2)  # the burst's, first
            print(f"pipeline drained the burst: {'yes' if drained else 'no, after 300 s'}")
            latencies, lost = [], 0
            deadline = time.monotonic() + args.deadline
            with Background(server, rate) as background:
                for _ in range(args.merges):
                    if time.monotonic() > deadline:
                        print(f"stopped probing after {args.deadline:.0f} s (--deadline); "
                              f"records not yet applied: {backlogs(server.data_dir)}")
                        break
                    began = time.monotonic()
                    latency = probe(server, api, min(120, max(1, deadline - time.monotonic())), args.poll_ms / 1000)
                    lost += latency is None
                    latencies += [latency] if latency is not None else []
                    time.sleep(max(0.0, began + args.every - time.monotonic()))
                seconds = time.monotonic() - background.started
            print(f"background: {background.sent / seconds:,.0f} events/s sent ({background.failed} failed requests)")
    ms = [x * 1000 for x in latencies]
    print(f"time to merge, {len(ms)} merges ({lost} not seen within 120 s or by the deadline): p50 {percentile(ms, 50):.0f} ms, "
          f"p99 {percentile(ms, 99):.0f} ms, max {max(ms, default=math.nan):.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "throughput", "merge", "identifiers"], default="all")
    parser.add_argument("--events", type=int, default=10_000, help="(a) raw events")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1800, help="(a) seconds a run may take")
    parser.add_argument("--no-postgres", action="store_true", help="(a) SQLite only")
    parser.add_argument("--database-url", default=local_postgres_url(), help="(a) a PostgreSQL server URL")
    parser.add_argument("--burst", type=int, default=4000, help="(b) events sent to measure the max rate")
    parser.add_argument("--rate", type=float, default=0, help="(b) background events/s (default: half the max)")
    parser.add_argument("--merges", type=int, default=100, help="(b) merges timed")
    parser.add_argument("--poll-ms", type=float, default=20,
                        help="(b) how often a probe reads its profile (the latency's resolution)")
    parser.add_argument("--every", type=float, default=0.5, help="(b) seconds between merge probes")
    parser.add_argument("--deadline", type=float, default=300,
                        help="(b) stop probing after this many seconds (a background above capacity never ends)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rapport-bench-identity-"))
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, in {workdir}")
    if args.part in ("all", "identifiers"):
        run_identifiers(args)
    if args.part in ("all", "throughput"):
        run_throughput(args, workdir)
    if args.part in ("all", "merge"):
        run_merge(args, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
