"""One fault trial: the pipeline under steady load while its parts are killed and
restarted at random, then catch-up and the invariants."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import httpx

from tests.faults.cluster import SERVICES, Cluster
from tests.faults.generator import LoadGenerator
from tests.faults.invariants import Verdict, check, oracle_sees_faults, wait_caught_up

SEGMENTS = {"pro": 'traits.plan = "pro"', "big": "revenue >= 1000",
            "pro_buyer": 'in_segment("pro") and orders >= 3',
            "frequent": 'did "Order Completed" at least 5 times within 30d'}


@dataclass
class Outcome:
    kills: int = 0  # SIGKILLs sent by the harness
    killed_after_publish: int = 0  # self-kills between publishing a batch's output and its commit
    broker_restarts: int = 0
    postgres_restarts: int = 0
    liveness_restarts: int = 0  # workers restarted because /healthz answered 500 (a thread died)
    retries: int = 0  # batches the generator had to send again
    answers: dict = field(default_factory=dict)  # ingest's HTTP statuses (or "no answer") -> how many
    seconds: float = 0.0
    verdict: Verdict = field(default_factory=Verdict)
    oracle_checked: bool | None = None  # the check reported a phantom loss and a double count


class Chaos(threading.Thread):
    """Restarts any worker that died (as Kubernetes would), and at random moments SIGKILLs
    a worker or restarts the broker or PostgreSQL; every kind at least once a trial."""

    def __init__(self, cluster: Cluster, seconds: float, rng: random.Random, faults: int):
        super().__init__(name="chaos", daemon=True)
        self.cluster, self.rng, self.outcome = cluster, rng, Outcome()
        kinds = [f"kill:{s}" for s in SERVICES] + ["broker", "postgres"]
        kinds += [rng.choice(kinds) for _ in range(max(0, faults - len(kinds)))]
        rng.shuffle(kinds)
        self.plan = sorted((rng.uniform(0.1, 0.9) * seconds, kind) for kind in kinds)  # s after start
        self.schedule: list = []
        self.stop, self.faults_done = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        start = probed = time.monotonic()
        self.schedule = [(start + after, kind) for after, kind in self.plan]
        try:
            while not self.stop.wait(0.1):
                for worker in self.cluster.workers.values():
                    if worker.popen.poll() is not None:
                        worker.start()  # killed by its fault hook, or started while the broker was down
                if time.monotonic() - probed > 2:
                    self.liveness_probe()
                    probed = time.monotonic()
                while self.schedule and self.schedule[0][0] <= time.monotonic():
                    self.inject(self.schedule.pop(0)[1])
                if not self.schedule:
                    self.faults_done.set()
        except BaseException as error:  # noqa: BLE001 - reported by the trial
            self.error = error
            self.faults_done.set()

    def liveness_probe(self) -> None:
        """As the kubelet does: a worker whose /healthz answers 500 is killed and started again."""
        for worker in self.cluster.workers.values():
            try:
                dead = httpx.get(f"http://127.0.0.1:{worker.port}/healthz", timeout=2).status_code == 500
            except httpx.HTTPError:
                continue  # starting, or busy: not a verdict
            if dead:
                worker.kill()
                self.outcome.liveness_restarts += 1

    def inject(self, kind: str) -> None:
        if kind.startswith("kill:"):
            self.cluster.workers[kind[5:]].kill()
            self.outcome.kills += 1
        elif kind == "broker":
            self.cluster.restart_broker()
            self.outcome.broker_restarts += 1
        else:
            self.cluster.restart_postgres()
            self.outcome.postgres_restarts += 1


def define_segments(cluster: Cluster) -> None:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    for key, text in SEGMENTS.items():
        response = httpx.post(f"{cluster.url('segments')}/v1/segments", headers=headers, timeout=30,
                              json={"key": key, "name": key, "text": text})
        assert response.status_code == 201, response.text


def run_trial(seed: int, seconds: float, rate: float, faults: int, kill_after_publish: int, kills_max: int = 3,
              catch_up_s: float = 180, check_oracle: bool = False) -> Outcome:
    rng = random.Random(seed)
    started = time.monotonic()
    cluster = Cluster(kill_after_publish=kill_after_publish, kills_max=kills_max)
    chaos, passed = Chaos(cluster, seconds, rng, faults), False
    try:
        define_segments(cluster)
        generator = LoadGenerator(cluster.url("ingest"), cluster.write_key, rate=rate, seed=seed).start()
        chaos.start()
        generator.stop.wait(seconds)  # the load runs its time, the faults inside it
        truth = generator.finish()
        assert chaos.faults_done.wait(60) and chaos.error is None, chaos.error or chaos.schedule
        assert not truth.refused, truth.refused[:3]
        wait_caught_up(cluster.settings, catch_up_s)
        chaos.stop.set()
        chaos.join(30)
        outcome = chaos.outcome
        outcome.killed_after_publish = cluster.killed_after_publish()
        outcome.retries, outcome.answers = truth.retries, dict(truth.answers)
        outcome.verdict = check(cluster.settings, truth)
        if check_oracle:
            outcome.oracle_checked = oracle_sees_faults(cluster.settings, truth)
        outcome.seconds = time.monotonic() - started
        passed = outcome.verdict.ok
        return outcome
    finally:
        chaos.stop.set()
        cluster.close(keep_logs=not passed)
