"""Sustained load through the whole pipeline: end-to-end lag, memory, keep-up.

    .venv/bin/python bench/load.py --minutes 5 --rate 100

Starts the pipeline as separate processes (tests/faults/cluster.py: a private PostgreSQL,
a Tansu broker with memory storage, `rapport serve` for ingest, identity, profile and
segments), defines four segments, then sends events at a fixed --rate (batches of
--batch from one thread on a fixed schedule: tests/faults/generator.py) for --minutes.
- Lag: from the moment ingest acknowledged an event (its 2xx) to the moment it is on its
  profile's timeline in the profile service's database (polled every --poll-ms, or 2% of
  the oldest pending event's age if longer: each figure is late by up to that much). p50, p99 and max over the run, and per minute, over
  one event in --track-every (chosen by a hash of its messageId): looking every pending id
  up 20 times a second cost PostgreSQL a third of its statement time when the pipeline
  fell behind, load the bench put on what it measures. Every acknowledged event is looked
  up once at the end ("still not visible").
- Memory: RSS (/proc/PID/status VmRSS) of each process after --warmup-s and at the end
  (the service processes and the broker; PostgreSQL's is shared memory, left out).
- Keeps up: every acknowledged event became visible within --drain-s of the load's end,
  the sender held its schedule (events sent / events due >= 0.99), and the last minute's
  p99 is no more than twice the first minute's.
Asserts nothing: prints figures.
"""
from __future__ import annotations

import argparse
import itertools
import platform
import sys
import threading
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import func, select  # noqa: E402

from services.profile.tables import ProfileEvent  # noqa: E402
from services.runtime.db import each_in, make_engine, reading  # noqa: E402
from services.runtime.tables import ConsumerOffset  # noqa: E402
from tests.faults.cluster import Cluster  # noqa: E402
from tests.faults.generator import LoadGenerator  # noqa: E402
from tests.faults.invariants import CHAIN, read_topic  # noqa: E402
from tests.faults.trial import define_segments  # noqa: E402


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def memory(cluster: Cluster) -> dict[str, float | None]:
    pids = {name: w.popen.pid for name, w in cluster.workers.items()} | {"broker (tansu)": cluster.broker.process.pid}
    return {name: rss_mb(pid) for name, pid in pids.items()}


class Visibility(threading.Thread):
    """Notes when each acknowledged messageId first shows on a profile's timeline."""

    def __init__(self, database_url: str, generator: LoadGenerator, poll_s: float, track_every: int):
        super().__init__(daemon=True)
        self.engine, self.generator, self.poll_s = make_engine(database_url), generator, poll_s
        self.track_every, self.taken = track_every, 0  # how many of sent_at were looked at
        self.visible: dict[str, float] = {}
        self.waiting: set[str] = set()
        self.lock, self.stop = threading.Lock(), threading.Event()

    def tracked(self, message_id: str) -> bool:
        return zlib.crc32(message_id.encode()) % self.track_every == 0

    def pending(self) -> list[str]:
        """The tracked ids acknowledged and not seen yet on a timeline."""
        with self.lock:
            with self.generator.lock:
                fresh = list(itertools.islice(self.generator.truth.sent_at, self.taken, None))
            self.taken += len(fresh)
            self.waiting.update(m for m in fresh if self.tracked(m))
            self.waiting.difference_update(self.visible)
            return list(self.waiting)

    def run(self) -> None:
        """Each poll one statement of one array parameter (each_in): literal IN lists of the
        ~1,000 ids pending at 1,000 events/s were parsed anew each time, and before young
        tables were analysed (runtime/statistics.py) PostgreSQL scanned the timeline for them,
        2.7 s of statement time a minute beside the pipeline it measures; now ~0.45 s."""
        wait_s = self.poll_s
        while not self.stop.wait(wait_s):
            pending = self.pending()
            found = on_timelines(self.engine, pending)
            at = time.monotonic()
            self.visible.update((m, at) for m in found)
            still = [m for m in pending if m not in self.visible]
            wait_s = max(self.poll_s, 0.02 * self.oldest_age(still, at))

    def oldest_age(self, pending: list[str], at: float) -> float:
        """Seconds since the oldest of pending was acknowledged: the poll waits 2% of it (a
        lag of 10 s is timed to 0.2 s), so the look-ups don't grow with the backlog."""
        with self.generator.lock:
            sent_at = self.generator.truth.sent_at
            return at - min((sent_at[m] for m in pending), default=at)


def on_timelines(engine, message_ids: list[str]) -> list[str]:
    """Those of message_ids on a profile's timeline: one statement, one array parameter."""
    with reading(engine) as session:
        return [m for condition in each_in(session, ProfileEvent.message_id, message_ids)
                for m in session.scalars(select(ProfileEvent.message_id).where(condition))]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def figures(lags: list[float]) -> str:
    return (f"p50 {percentile(lags, 0.5) * 1000:,.0f} ms, p99 {percentile(lags, 0.99) * 1000:,.0f} ms, "
            f"max {max(lags, default=float('nan')) * 1000:,.0f} ms ({len(lags):,} events)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--rate", type=float, default=100, help="events/s")
    parser.add_argument("--batch", type=int, default=10, help="events a request")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--poll-ms", type=float, default=50)
    parser.add_argument("--track-every", type=int, default=10, help="time the lag of one event in N")
    parser.add_argument("--warmup-s", type=float, default=15)
    parser.add_argument("--drain-s", type=float, default=30)
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (path printed)")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; "
          f"{args.rate:g} events/s in batches of {args.batch} for {args.minutes:g} min, {args.users} users")
    cluster = Cluster(durable_broker=False)
    try:
        define_segments(cluster)
        generator = LoadGenerator(cluster.url("ingest"), cluster.write_key, users=args.users,
                                  rate=args.rate, batch=args.batch)
        watcher = Visibility(cluster.settings.database_url, generator, args.poll_ms / 1000, args.track_every)
        began = time.monotonic()
        generator.start()
        watcher.start()
        generator.stop.wait(args.warmup_s)
        at_start = memory(cluster)
        generator.stop.wait(max(0.0, args.minutes * 60 - args.warmup_s))
        at_end = memory(cluster)
        truth = generator.finish()
        ended = time.monotonic()
        backlog = consumer_backlog(cluster)
        drained = watcher.stop.wait(0) or wait_drained(watcher, args.drain_s)
        watcher.stop.set()
        unseen = len(truth.sent_at) - len(on_timelines(watcher.engine, list(truth.sent_at)))
        report(args, truth, watcher, began, ended, drained, unseen, at_start, at_end)
        print("\nwhen the load stopped: " + "; ".join(backlog))
    finally:
        cluster.close(keep_logs=args.keep_logs)


def consumer_backlog(cluster: Cluster) -> list[str]:
    """Per consumer: records it had applied (stored offsets) of those on its input topic."""
    engine = make_engine(cluster.settings.database_url)
    try:
        with reading(engine) as session:
            applied = dict(session.execute(select(ConsumerOffset.consumer, func.sum(ConsumerOffset.next_offset))
                                           .group_by(ConsumerOffset.consumer)).all())
    finally:
        engine.dispose()
    return [f"{consumer} had applied {applied.get(consumer) or 0:,} of {len(read_topic(cluster.settings, topic)):,} "
            f"records of {topic}" for consumer, topic in CHAIN]


def wait_drained(watcher: Visibility, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while watcher.pending():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)  # polling a condition, with a deadline
    return True


def report(args, truth, watcher, began, ended, drained, unseen, at_start, at_end) -> None:
    lags = {m: watcher.visible[m] - sent for m, sent in truth.sent_at.items() if m in watcher.visible}
    due = args.rate * (ended - began)
    print(f"\nacknowledged {len(truth.sent_at):,} events in {ended - began:,.0f} s "
          f"({len(truth.sent_at) / (ended - began):,.1f}/s; {len(truth.sent_at) / due:.1%} of the schedule), "
          f"{truth.retries} retries, {len(truth.refused)} refused")
    print(f"end-to-end lag (2xx -> on the profile's timeline), one event in {args.track_every}: "
          f"{figures(list(lags.values()))}")
    minutes: dict[int, list[float]] = {}
    for m, lag in lags.items():
        minutes.setdefault(int((truth.sent_at[m] - began) // 60), []).append(lag)
    for minute, values in sorted(minutes.items()):
        print(f"  minute {minute + 1}: {figures(values)}")
    print("\n| process | RSS after warm-up | RSS at the end | change |\n| --- | --- | --- | --- |")
    for name in at_start:
        a, b = at_start[name], at_end[name]
        print(f"| {name} | {a:,.0f} MB | {b:,.0f} MB | {b - a:+,.0f} MB |" if a and b else f"| {name} | {a} | {b} | |")
    first, last = minutes.get(0, []), minutes.get(max(minutes, default=0), [])
    steady = percentile(last, 0.99) <= 2 * max(percentile(first, 0.99), 0.1) if first and last else False
    on_time = len(truth.sent_at) / due >= 0.99
    print(f"\nkeeps up: {'yes' if drained and steady and on_time and not unseen else 'NO'} "
          f"(all visible within {args.drain_s:g} s of the end: {drained}; last minute's p99 <= 2x the first's: "
          f"{steady}; sender on schedule: {on_time}; acknowledged and still not visible: {unseen:,})")


if __name__ == "__main__":
    main()
