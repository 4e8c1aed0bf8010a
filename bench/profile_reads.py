"""Profile reads at scale: GET /v1/profiles/{id} and the lookup by email, p50/p99.

    .venv/bin/python bench/profile_reads.py --profiles 1000000

Seeds a fresh PostgreSQL database with generate_series (written as the profile, segments
and lifecycle projectors write them): per profile a row in profiles with computed traits,
five traits, two identities, two consent purposes, one segment membership, a lifecycle
stage; one profile in ten absorbed another (an alias), so some reads follow a merge. Then
ANALYZE, and --requests reads of random profiles through the app in-process (TestClient,
a profiles:read token: no network, no uvicorn). The baseline, in the same run, is the
same profile's rows read with hand-written SQL on a bare connection (the queries the view
needs, at their least). Prints p50/p99/max of both and the ratio; asserts nothing.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch_db import drop_database, fresh_database  # noqa: E402
from services import migrations  # noqa: E402
from services.runtime.access import create_token  # noqa: E402
from services.runtime.db import make_engine, writing  # noqa: E402

SEED = [
    """INSERT INTO profiles (profile_id, first_seen, last_seen, event_count, version, computed)
       SELECT 'p-' || i, now() - interval '300 days', now() - (i % 90) * interval '1 day', 10 + i % 40, 1,
              json_build_object('orders', i % 7, 'revenue', (i % 7) * 42.5, 'visits', i % 30,
                                'last_nps_score', i % 11, 'churn_risk', (i % 100) / 100.0)
       FROM generate_series(1, :n) AS i""",
    """INSERT INTO profile_traits (profile_id, name, value, at, message_id, source)
       SELECT 'p-' || i, t.name, to_json(t.name || '-' || i), now(), 'm-' || i, 'src'
       FROM generate_series(1, :n) AS i,
            (VALUES ('email'), ('name'), ('plan'), ('country'), ('phone')) AS t(name)""",
    """INSERT INTO profile_identities (type, value, profile_id)
       SELECT t.type, t.type || '-' || i || CASE WHEN t.type = 'email' THEN '@example.com' ELSE '' END,
              'p-' || i
       FROM generate_series(1, :n) AS i, (VALUES ('user_id'), ('email')) AS t(type)""",
    """INSERT INTO profile_consent (profile_id, name, value, at, message_id, source)
       SELECT 'p-' || i, c.name, 'true'::json, now(), 'm-' || i, 'src'
       FROM generate_series(1, :n) AS i, (VALUES ('analytics'), ('email')) AS c(name)""",
    """INSERT INTO profile_aliases (absorbed, survivor)
       SELECT 'a-' || i, 'p-' || i FROM generate_series(1, :n, 10) AS i""",
    """INSERT INTO segment_members (segment_key, profile_id, entered_at)
       SELECT CASE WHEN i % 4 = 0 THEN 'pro' ELSE 'active' END, 'p-' || i, now()
       FROM generate_series(1, :n) AS i""",
    """INSERT INTO lifecycle_stages (profile_id, stage, since, why)
       SELECT 'p-' || i, (ARRAY['visitor','lead','customer','repeat','loyal'])[1 + i % 5], now(), 'seeded'
       FROM generate_series(1, :n) AS i""",
]

BASELINE = [
    "SELECT * FROM profile_aliases WHERE absorbed = :id",
    "SELECT * FROM profiles WHERE profile_id = :id",
    "SELECT * FROM profile_identities WHERE profile_id = :id",
    "SELECT * FROM profile_traits WHERE profile_id = :id",
    "SELECT * FROM profile_consent WHERE profile_id = :id",
    "SELECT * FROM segment_members WHERE profile_id = :id",
    "SELECT * FROM lifecycle_stages WHERE profile_id = :id",
]


def seed(engine, profiles: int) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        for statement in SEED:
            conn.execute(text(statement), {"n": profiles})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def timed(calls) -> list[float]:
    times = []
    for call in calls:
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def summary(name: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return (f"{name:<46} p50 {statistics.median(ms):6.2f} ms   p99 {ms[int(len(ms) * 0.99) - 1]:6.2f} ms"
            f"   max {ms[-1]:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--server-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from services.runtime.bootstrap import bootstrap_runtime
    from services.runtime.runner import bootstrap_services, build_app
    from services.runtime.settings import Settings

    url = fresh_database(args.server_url)
    try:
        engine = make_engine(url)
        migrations.upgrade(engine)
        print(f"seeded {args.profiles:,} profiles in {seed(engine, args.profiles):.1f} s")
        with writing(engine) as session:
            token = create_token(session, "bench", ["profiles:read"])
        runtime = bootstrap_runtime(Settings(database_url=url, data_dir=Path("/tmp/rapport-bench-reads")))
        app = build_app(runtime, bootstrap_services(runtime, ["profile"]), run_projectors=False)
        rng = random.Random(7)
        ids = [f"p-{rng.randrange(1, args.profiles + 1)}" if rng.random() < 0.9
               else f"a-{1 + 10 * rng.randrange(args.profiles // 10)}" for _ in range(args.requests)]
        emails = [f"email-{rng.randrange(1, args.profiles + 1)}@example.com" for _ in range(args.requests)]
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(app) as client, engine.connect() as conn:
            for warm in ids[:50]:
                assert client.get(f"/v1/profiles/{warm}", headers=headers).status_code == 200
            by_sql = timed([lambda i=i: [conn.execute(text(q), {"id": i}).all() for q in BASELINE] for i in ids])
            by_id = timed([lambda i=i: client.get(f"/v1/profiles/{i}", headers=headers) for i in ids])
            by_email = timed([lambda e=e: client.get("/v1/profiles/lookup", params={"type": "email", "value": e},
                                                     headers=headers) for e in emails])
        runtime.close()
        print(summary("baseline: the view's rows by hand-written SQL", by_sql))
        print(summary("GET /v1/profiles/{id} (10% absorbed ids)", by_id))
        print(summary("GET /v1/profiles/lookup?type=email", by_email))
        p99 = lambda t: sorted(t)[int(len(t) * 0.99) - 1]  # noqa: E731
        print(f"ratio p99 GET by id / SQL: {p99(by_id) / p99(by_sql):.1f}x")
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
