"""The short fault trial CI runs (~60 s): the pipeline as separate processes on a private
PostgreSQL and a Tansu broker on S3, under steady load, with every worker SIGKILLed at a
random moment and right after publishing a batch (before its commit), the broker and
PostgreSQL restarted; then nothing acknowledged is lost, nothing is counted twice and
memberships equal a full recomputation. The long run: `python -m tests.faults --trials 20`."""
from __future__ import annotations

import pytest

from tests.backends import BackendUnavailable, unavailable
from tests.faults.backends import PrivatePostgres, s3_available
from tests.faults.report import table
from tests.faults.trial import run_trial

pytestmark = [pytest.mark.e2e, pytest.mark.real_backends]


def test_kills_and_restarts_lose_nothing_and_count_nothing_twice():
    if not (PrivatePostgres.available() and s3_available()):
        unavailable(BackendUnavailable("fault suite: needs PostgreSQL's initdb, moto[server] and Tansu"))
    outcome = run_trial(seed=7, seconds=15, rate=60, faults=7, kill_after_publish=1, kills_max=2,
                        check_oracle=True)
    print("\n" + table([outcome]), f"\ningest answered {outcome.answers}")
    assert outcome.kills >= 4 and outcome.broker_restarts >= 1 and outcome.postgres_restarts >= 1
    assert outcome.killed_after_publish >= 1, "no kill hit the window between publish and commit"
    assert outcome.verdict.acknowledged > 100
    assert outcome.verdict.ok, outcome.verdict
    assert outcome.oracle_checked, "the check missed a phantom loss or double count"
    assert outcome.liveness_restarts == 0, "a projector thread died on a backend restart"
    assert 500 not in outcome.answers, outcome.answers  # a backend down is a 503 with Retry-After
