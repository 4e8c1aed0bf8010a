"""Ingest throughput: the raw log versus the HTTP API, on the embedded log and on Kafka.

(a) baseline: N events appended straight to the embedded log, in batches;
(b) `rapport up` (every service in one process) and/or `rapport serve ingest` alone
    (after `rapport migrate` and `rapport source create`), embedded log, in a subprocess
    with the access log off (--no-quiet keeps it): single events POSTed to /v1/track by
    wrk (a C client: one process, --connections connections, --seconds long; the
    default when `wrk` is installed) or by --threads httpx threads in this process
    (--client httpx). Each request answers only once the event is durable;
(c) the same server, POST /v1/batch with 100 events a request, --threads connections;
(d) with --kafka (or a Tansu broker found): a bare kafka-python producer (acks=all; the
    brief's baseline) and a bare librdkafka producer (KafkaLog's client and settings) send
    the events to the broker, then the server on that broker takes the same events through
    POST /v1/batch, in the same run; the ratios (d2)/(d1) and (d2)/(d1b) are printed.

Prints figures; asserts nothing about speed.

    .venv/bin/python bench/ingest.py --events 5000
    .venv/bin/python bench/ingest.py --server serve --events 40000 --batch-events 400000 --no-kafka
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
sys.path.insert(0, str(REPO / "bench"))

from services.runtime import topics  # noqa: E402
from services.runtime.log import Message  # noqa: E402
from services.runtime.log.embedded import EmbeddedLog  # noqa: E402
from services.runtime.settings import Settings  # noqa: E402
from brokers import kafka_broker  # noqa: E402
from scratch_db import drop_database, fresh_database  # noqa: E402

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
    fixed: tuple[float, float] | None = None  # (p50, p99) ms when a tool measured them
    repeats: int = 0  # requests past the unique bodies: acknowledged duplicates, not appended

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else float("nan")

    def percentile(self, p: float) -> float:
        if self.fixed and p in (50, 99):
            return self.fixed[0 if p == 50 else 1]
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


UNLIMITED = 10 ** 9  # events/s and burst a write key may send to the benchmarked server


def rapport_command() -> list[str]:
    script = Path(sys.executable).parent / "rapport"
    return [str(script)] if script.exists() else [sys.executable, "-m", "services.cli"]


class RapportUp:
    """`rapport up` on a temporary data dir and a free port; killed on exit.

    Its server logs go to a file; `quiet` sets RAPPORT_LOG_LEVEL=WARNING and text format,
    which turns off the per-request access log line.
    """

    label = "rapport up"

    def __init__(self, data_dir: Path, startup_timeout_s: float, env: dict | None = None, quiet: bool = False):
        self.data_dir, self.timeout, self.extra_env = data_dir, startup_timeout_s, dict(env or {})
        if quiet:
            self.extra_env.setdefault("RAPPORT_LOG_LEVEL", "WARNING")
            self.extra_env.setdefault("RAPPORT_LOG_FORMAT", "text")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = data_dir.parent / f"{data_dir.name}.log"
        self.process: subprocess.Popen | None = None
        self.key: str | None = None

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
        env.update(RAPPORT_DATA_DIR=str(self.data_dir), RAPPORT_LOG_BACKEND="embedded", RAPPORT_DEMO="false",
                   # capacity is measured, not the per-key limit (20,000 events/s by default)
                   RAPPORT_INGEST_RATE_PER_KEY=str(UNLIMITED), RAPPORT_INGEST_BURST_PER_KEY=str(UNLIMITED),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        return rapport_command() + ["up", "--host", "127.0.0.1", "--port", str(self.port)]

    def prepare(self, env: dict) -> None:
        """What must happen before the server starts."""

    def __enter__(self) -> "RapportUp":
        env = self.env()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.prepare(env)
        with open(self.output, "wb") as out:
            # cwd: the temp dir, so no stray .env in the working directory applies
            self.process = subprocess.Popen(self.command(), cwd=self.data_dir.parent, env=env,
                                            stdout=out, stderr=subprocess.STDOUT)
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
        if self.key is None:
            self.key = json.loads((self.data_dir / "credentials.json").read_text())["write_key"]
        return self.key

    def __exit__(self, *_exc) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class RapportServeIngest(RapportUp):
    """`rapport serve ingest` alone, as a deployment runs it: `rapport migrate`, then
    `rapport source create bench` for a write key, then the ingest service by itself."""

    label = "rapport serve ingest"
    workers = 1

    def command(self) -> list[str]:
        return rapport_command() + ["serve", "ingest", "--host", "127.0.0.1", "--port", str(self.port),
                                    "--workers", str(self.workers)]

    def prepare(self, env: dict) -> None:
        run = dict(cwd=self.data_dir.parent, env=env, capture_output=True, text=True, check=True)
        subprocess.run(rapport_command() + ["migrate"], **run)
        created = subprocess.run(rapport_command() + ["source", "create", "bench"], **run).stdout
        self.key = created.split("write key:")[1].split()[0]


def server_for(kind: str, data_dir: Path, args, env: dict | None = None) -> RapportUp:
    if kind != "serve":
        return RapportUp(data_dir, args.startup_timeout, env, quiet=args.quiet)
    server = RapportServeIngest(data_dir, args.startup_timeout, env, quiet=args.quiet)
    server.workers = args.ingest_workers
    if server.workers > 1:
        server.label = f"rapport serve ingest --workers {server.workers}"
    return server


# --- the client: wrk (C, one process, N connections) or httpx threads ------------

WRK_SCRIPT = r"""
local bodies, n, i = {}, 0, 0
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  local threads, file = tonumber(args[1]), args[2]
  local k = 0
  for line in io.lines(file) do
    if k % threads == id then n = n + 1; bodies[n] = line end
    k = k + 1
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = args[3]
end
function request()
  i = i % n + 1
  return wrk.format(nil, wrk.path, nil, bodies[i])
end
function done(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"seconds\": %f, \"non2xx\": %d, \"errors\": %d, " ..
    "\"p50\": %f, \"p99\": %f}\n", summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
"""


def bench_wrk(name: str, path: str, bodies: list[bytes], per_body: int, server: RapportUp,
              connections: int, seconds: float, threads: int = 1) -> Figures:
    """wrk -t`threads` -c`connections` for `seconds`, each request the next of `bodies`
    (cycled if it runs out: repeats are then acknowledged duplicates, so give enough)."""
    import base64
    work = server.data_dir.parent
    (work / "wrk.lua").write_text(WRK_SCRIPT)
    (work / "bodies.txt").write_bytes(b"\n".join(bodies) + b"\n")
    auth = "Basic " + base64.b64encode(f"{server.write_key()}:".encode()).decode()
    with httpx.Client(base_url=server.url, timeout=30) as client:  # warm up
        client.post(path, content=bodies[-1], headers={"Authorization": auth}).raise_for_status()
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
                          "--timeout", "10s", "-s", str(work / "wrk.lua"), server.url + path,
                          "--", str(threads), str(work / "bodies.txt"), auth],
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
    ok = result["requests"] - result["non2xx"]
    if result["non2xx"] or result["errors"]:
        print(f"warning: {result['non2xx']} non-2xx answers, {result['errors']} socket errors", file=sys.stderr)
    # wrk keeps its own histogram: synthesise the two percentiles it reports
    figures = Figures(name, ok * per_body, result["seconds"], [], "per request",
                      errors=result["non2xx"] + result["errors"], repeats=max(0, ok - len(bodies)))
    figures.fixed = (result["p50"], result["p99"])
    if figures.repeats:
        print(f"warning: {ok} requests but {len(bodies)} bodies: some were duplicates", file=sys.stderr)
    return figures


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

# The brief's baseline: kafka-python, tuned as KafkaLog's producer was before it moved to
# librdkafka (acks=all, 2 ms linger, 512 KB batches, no compression, one request in flight).
KAFKA_PYTHON_TUNING = {"acks": "all", "linger_ms": 2, "batch_size": 512 * 1024, "compression_type": None,
                       "max_in_flight_requests_per_connection": 1}


def create_topic(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 4, 1)])
    admin.close()


def keyed_bodies(events: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(e["userId"].encode(), json.dumps(e, separators=(",", ":")).encode()) for e in events]


def bench_producer(events: list[dict], bootstrap: str, topic: str) -> Figures:
    """(d1) The same events through a bare kafka-python producer, acks=all."""
    from kafka import KafkaProducer

    create_topic(bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, **KAFKA_PYTHON_TUNING)
    bodies = keyed_bodies(events)
    started = time.perf_counter()
    futures = [producer.send(topic, key=key, value=value) for key, value in bodies]
    for future in futures:
        future.get(timeout=30)
    elapsed = time.perf_counter() - started
    producer.close()
    return Figures("(d1) bare kafka-python producer, acks=all", len(events), elapsed, [elapsed],
                   "of the whole run")


def bench_librdkafka(events: list[dict], bootstrap: str, topic: str) -> Figures:
    """(d1b) The same events through a bare librdkafka producer with KafkaLog's settings."""
    from confluent_kafka import Producer

    from services.runtime.log.producer import producer_config

    create_topic(bootstrap, topic)
    producer, failed = Producer(producer_config([bootstrap], 30_000)), []
    bodies = keyed_bodies(events)
    started = time.perf_counter()
    for key, value in bodies:
        producer.produce(topic, value, key, on_delivery=lambda error, _m: error and failed.append(error))
        producer.poll(0)
    left = producer.flush(30)
    elapsed = time.perf_counter() - started
    if left or failed:
        raise RuntimeError(f"bare librdkafka producer: {left} not sent, {len(failed)} failed: {failed[:3]}")
    return Figures("(d1b) bare librdkafka producer, acks=all", len(events), elapsed, [elapsed],
                   "of the whole run")


def fastest(bench, events: list[dict], bootstrap: str, runs: int) -> Figures:
    """The fastest of `runs` runs of a bare producer, each to a fresh topic."""
    best = max((bench(events, bootstrap, f"bench{uuid.uuid4().hex[:6]}.bare") for _ in range(runs)),
               key=lambda figures: figures.rate)
    best.name += f", fastest of {runs}" if runs > 1 else ""
    return best


def bench_kafka(events: list[dict], args, workdir: Path) -> list[Figures]:
    with kafka_broker(args.kafka) as bootstrap:
        if bootstrap is None:
            print("(d) skipped: no --kafka and no Tansu binary", file=sys.stderr)
            return []
        # the fastest of --bare-runs runs: the baseline is the producer at its best
        bare = fastest(bench_producer, events, bootstrap, args.bare_runs)
        print(f"(d1) done: {bare.rate:.0f} events/s")
        same_client = fastest(bench_librdkafka, events, bootstrap, args.bare_runs)
        print(f"(d1b) done: {same_client.rate:.0f} events/s")
        env = {"RAPPORT_LOG_BACKEND": "kafka", "RAPPORT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
               "RAPPORT_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}."}
        database = fresh_database(args.kafka_database) if args.kafka_database else None
        if database:
            env["RAPPORT_DATABASE_URL"] = database
        try:
            ingest = _ingest_on_kafka(events, args, workdir, env)
        finally:
            if database:
                drop_database(database)
        print(f"(d2) done: {ingest.rate:.0f} events/s")
        return [bare, same_client, ingest]


def _ingest_on_kafka(events: list[dict], args, workdir: Path, env: dict) -> Figures:
    """(d2): the server on the broker takes the events through POST /v1/batch."""
    with server_for("up" if args.server == "up" else "serve", workdir / "data-kafka", args, env) as server:
        name = f"(d2) /v1/batch x{args.per_request} on Kafka, {server.label}"
        if args.kafka_database:
            name += ", PostgreSQL"
        if args.client == "wrk":
            return bench_wrk(name + f", wrk -c{args.threads}", "/v1/batch", batch_bodies(args),
                             args.per_request, server, args.threads, args.seconds)
        return bench_batches(name, events, args.per_request, [], args.threads, server)


_BODIES: list[bytes] = []


def batch_bodies(args) -> list[bytes]:
    """/v1/batch bodies of events with new messageIds (every server has its own dedupe state,
    so each may be sent the same bodies), made once."""
    if not _BODIES:
        fresh = make_events(args.batch_events or args.events, args.seed + 1, args.users)
        _BODIES.extend(json.dumps({"batch": [{**e, "type": "track"} for e in fresh[i:i + args.per_request]]},
                                  separators=(",", ":")).encode()
                       for i in range(0, len(fresh), args.per_request))
    return _BODIES


def bench_server(kind: str, events: list[dict], args, workdir: Path, http_events: int) -> list[Figures]:
    """(b) single events, then (c) batches, against `rapport up` or `rapport serve ingest`."""
    rows = []
    with server_for(kind, workdir / f"data-{kind}", args) as server:
        where = server.label + (", access log off" if args.quiet else "")
        if args.client == "wrk":
            singles = [json.dumps(e, separators=(",", ":")).encode() for e in events[args.warmup:]]
            rows.append(bench_wrk(f"(b) /v1/track, wrk -c{args.connections}, {where}", "/v1/track", singles,
                                  1, server, args.connections, args.seconds))
            print(f"(b) done: {rows[-1].rate:.0f} req/s")
            rows.append(bench_wrk(f"(c) /v1/batch x{args.per_request}, wrk -c{args.threads}, {where}", "/v1/batch",
                                  batch_bodies(args), args.per_request, server, args.threads, args.seconds))
        else:
            rows.append(bench_http(events[args.warmup:args.warmup + http_events], events[:args.warmup],
                                   args.threads, server))
            rows[-1].name = f"(b) /v1/track, {args.threads} threads, {where}"
            print(f"(b) done: {rows[-1].rate:.0f} req/s")
            fresh = make_events(args.batch_events or args.events, args.seed + 1, args.users)
            rows.append(bench_batches(f"(c) /v1/batch x{args.per_request}, {args.threads} thr, {where}",
                                      fresh, args.per_request, [], args.threads, server))
        print(f"(c) done: {rows[-1].rate:.0f} events/s")
    return rows


# --- main -----------------------------------------------------------------

def table(rows: list[Figures]) -> str:
    head = f"{'measurement':<66} {'events':>7} {'seconds':>8} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8}  latency of"
    lines = [head, "-" * len(head)]
    for f in rows:
        lines.append(f"{f.name:<66} {f.events:>7} {f.seconds:>8.2f} {f.rate:>9.0f} "
                     f"{f.percentile(50):>8.2f} {f.percentile(99):>8.2f}  {f.latency_unit}"
                     + (f"  *{f.repeats} repeated requests" if f.repeats else ""))
    if any(f.repeats for f in rows):
        lines.append("* more requests than unique bodies: repeats are acknowledged duplicates, cheaper than "
                     "new events, so that rate overstates; give more --events / --batch-events")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000,
                        help="events appended to the log in (a), and sent over HTTP in (b) unless --http-events")
    parser.add_argument("--http-events", type=int, default=None, help="events sent over HTTP in (b)")
    parser.add_argument("--batch-size", type=int, default=100, help="events per log append in (a)")
    parser.add_argument("--threads", type=int, default=4, help="httpx threads in (b), (c), (d2); wrk connections in (c), (d2)")
    parser.add_argument("--users", type=int, default=1_000, help="distinct userIds in the events")
    parser.add_argument("--warmup", type=int, default=20, help="untimed HTTP requests before (b)")
    parser.add_argument("--per-request", type=int, default=100, help="events per POST /v1/batch in (c), (d)")
    parser.add_argument("--kafka", default=None, help="bootstrap servers for (d); default: start Tansu")
    parser.add_argument("--no-kafka", action="store_true", help="skip (d)")
    parser.add_argument("--bare-runs", type=int, default=3, help="(d1), (d1b): runs of each bare producer; "
                        "the fastest is the baseline")
    parser.add_argument("--parts", choices=["abcd", "a", "bc", "d", "abc", "ad"], default="abcd",
                        help="which parts to run: (a) the log, (b) and (c) on the servers, (d) on Kafka")
    parser.add_argument("--kafka-database", default=None, metavar="SERVER_URL",
                        help="(d2) on a fresh database on this PostgreSQL server, as deployed with Kafka "
                             "(default: SQLite in the data dir)")
    parser.add_argument("--server", choices=["up", "serve", "both"], default="both",
                        help="`rapport up` (every service in one process), `rapport serve ingest` alone, or both")
    parser.add_argument("--client", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx",
                        help="wrk (C; default when installed) or httpx threads in this process")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections for (b)")
    parser.add_argument("--seconds", type=float, default=10, help="wrk duration of (b) and (c)")
    parser.add_argument("--quiet", action=argparse.BooleanOptionalAction, default=True,
                        help="the server with RAPPORT_LOG_LEVEL=WARNING, text logs: no access log line a request")
    parser.add_argument("--batch-events", type=int, default=None,
                        help="distinct events for (c) (default --events); with wrk give more than it sends")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ingest-workers", type=int, default=1,
                        help="processes of `rapport serve ingest` sharing the port (--workers)")
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
        rows = [bench_log(events[:args.events], args.batch_size, workdir)] if "a" in args.parts else []
        if rows:
            print(f"(a) done: {rows[0].rate:.0f} events/s")
        for kind in (["up", "serve"] if args.server == "both" else [args.server]) if "bc" in args.parts else []:
            rows += bench_server(kind, events, args, workdir, http_events)
        kafka = bench_kafka(events[:args.events], args, workdir) if "d" in args.parts and not args.no_kafka else []
        rows += kafka
        print()
        print(table(rows))
        for row in rows[1:] if "a" in args.parts else []:
            if row.name.startswith("(c)"):
                print(f"ratio {row.name[:3]}/(a) events/s: {row.rate / rows[0].rate:.3f} ({row.name[4:]})")
        if kafka:
            bare, same_client, ingest = kafka
            print(f"ratio (d2)/(d1) events/s: {ingest.rate / bare.rate:.3f} (ingest on Kafka reaches "
                  f"{100 * ingest.rate / bare.rate:.1f}% of the bare kafka-python producer, same broker, same run)")
            print(f"ratio (d2)/(d1b) events/s: {ingest.rate / same_client.rate:.3f} (against a bare producer of "
                  f"the client ingest uses, librdkafka)")
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
