"""The projector contract, run on each backend: a crash anywhere neither loses nor
double-applies a record (offsets are stored in the transaction that applies the batch)."""
from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter

import pytest

from services import migrations
from services.runtime.bootstrap import bootstrap_runtime
from services.runtime.log import Message
from services.runtime.projector import ProjectorTurns
from tests.contract.counting import INPUT, KEYS, OUTPUT, CountingHandler, counts, prepare
from tests.support import caught_up, log_reader, settings_env, wait_until

TOTAL = 300


class ProjectorContract:
    @pytest.fixture
    def runtime(self, settings):
        settings.batch_size = 25
        runtime = bootstrap_runtime(settings)
        runtime.log.ensure_topics([INPUT, OUTPUT])
        migrations.upgrade(runtime.engine)
        prepare(runtime.engine)
        for start in range(0, TOTAL, 50):
            runtime.log.append(INPUT, [Message.of(KEYS[i % len(KEYS)], {"n": i})
                                       for i in range(start, start + 50)])
        yield runtime
        runtime.close()

    def expected(self) -> dict[str, int]:
        return dict(Counter(KEYS[i % len(KEYS)] for i in range(TOTAL)))

    def run_until_caught_up(self, runtime, *projectors, records=TOTAL) -> None:
        threads = [p.start() for p in projectors]
        try:
            wait_until(lambda: caught_up(runtime, "counting", records), 60, "the projector to catch up")
        finally:
            for projector, thread in zip(projectors, threads):
                projector.stop.set()
                thread.join(30)

    def test_an_exception_after_n_records_rolls_the_batch_back_and_replays_it(self, runtime):
        handler = CountingHandler(fail_after=57)
        self.run_until_caught_up(runtime, runtime.projector(handler))
        assert handler.failures == 1
        assert counts(runtime.engine) == self.expected()

    def test_a_restart_resumes_from_the_stored_offsets(self, runtime):
        self.run_until_caught_up(runtime, runtime.projector(CountingHandler()))
        runtime.log.append(INPUT, [Message.of(KEYS[0], {"n": "late"})])
        self.run_until_caught_up(runtime, runtime.projector(CountingHandler()), records=TOTAL + 1)
        assert counts(runtime.engine) == self.expected() | {KEYS[0]: self.expected()[KEYS[0]] + 1}

    def test_two_workers_in_one_group_never_apply_a_record_twice(self, runtime):
        self.run_until_caught_up(runtime, runtime.projector(CountingHandler()),
                                 runtime.projector(CountingHandler()))
        assert counts(runtime.engine) == self.expected()

    def test_a_process_killed_between_apply_and_commit_loses_and_repeats_nothing(self, runtime):
        env = {**settings_env(runtime.settings), "PYTHONPATH": "."}
        killed = subprocess.run([sys.executable, "-m", "tests.contract.counting_worker",
                                 "--kill-after", "130"], env=env, timeout=120)
        assert killed.returncode == -9
        partial = sum(counts(runtime.engine).values())
        assert 0 < partial < TOTAL  # some batches committed, the killed one did not

        worker = subprocess.Popen([sys.executable, "-m", "tests.contract.counting_worker"], env=env)
        try:
            wait_until(lambda: caught_up(runtime, "counting", TOTAL), 60, "the restarted worker")
        finally:
            worker.terminate()
            worker.wait(30)
        assert counts(runtime.engine) == self.expected()
        published = self.published_keys(runtime)
        assert set(published) == set(KEYS) and sum(published.values()) >= TOTAL  # at least once

    def test_projectors_taking_turns_in_one_thread_carry_a_chain_through_a_failing_batch(self, runtime):
        upstream, downstream = CountingHandler(fail_after=57), Downstream()
        turns = ProjectorTurns([runtime.projector(upstream), runtime.projector(downstream)])
        thread = turns.start()
        try:
            wait_until(lambda: caught_up(runtime, "counting", TOTAL) and len(downstream.seen) == TOTAL,
                       60, "both projectors to catch up")
        finally:
            turns.stop.set()
            thread.join(30)
        assert upstream.failures == 1 and counts(runtime.engine) == self.expected()
        assert downstream.seen == set(range(TOTAL))  # every output of upstream, through the failure
        assert upstream.threads | downstream.threads == {thread.ident}

    @staticmethod
    def published_keys(runtime) -> Counter:
        consumer = log_reader(runtime.log, runtime.settings, [OUTPUT], "reader")
        seen: Counter = Counter()
        try:
            def read_all():
                for record in consumer.poll(1000, 0.5):
                    seen[record.key] += 1
                return sum(seen.values()) >= TOTAL
            wait_until(read_all, 60, "every output message")
        finally:
            consumer.close()
        return seen


class Downstream:
    """Reads what CountingHandler publishes; notes each input number and the thread it ran on."""

    name, topics = "counting-downstream", (OUTPUT,)

    def __init__(self):
        self.seen: set[int] = set()
        self.threads: set[int] = set()

    def apply(self, session, batch):
        self.threads.add(threading.get_ident())
        self.seen.update(record.json()["n"] for record in batch)
        return []


class TestEmbeddedProjector(ProjectorContract):
    @pytest.fixture
    def backend(self):
        return "embedded"


@pytest.mark.real_backends
class TestPostgresKafkaProjector(ProjectorContract):
    @pytest.fixture
    def backend(self):
        return "postgres+kafka"
