"""The fault suite's table."""
from __future__ import annotations

from tests.faults.trial import Outcome

COLUMNS = ("trials", "kills", "killed after publish", "broker restarts", "postgres restarts", "liveness restarts",
           "events acknowledged", "lost", "double counted", "memberships wrong", "seconds")


def _figures(outcomes: list[Outcome]) -> list:
    return [len(outcomes), sum(o.kills for o in outcomes), sum(o.killed_after_publish for o in outcomes),
            sum(o.broker_restarts for o in outcomes), sum(o.postgres_restarts for o in outcomes),
            sum(o.liveness_restarts for o in outcomes),
            sum(o.verdict.acknowledged for o in outcomes),
            sum(o.verdict.lost + o.verdict.missing_from_log for o in outcomes),
            sum(o.verdict.double_counted + len(o.verdict.revenue_wrong) for o in outcomes),
            sum(len(o.verdict.membership_wrong) + o.verdict.stale_snapshots for o in outcomes),
            round(sum(o.seconds for o in outcomes))]


def row(number: int, outcome: Outcome) -> str:
    figures = _figures([outcome])
    return (f"trial {number}: " + ", ".join(f"{c} {v}" for c, v in zip(COLUMNS[1:], figures[1:]))
            + f"; ingest answered {outcome.answers}")


def table(outcomes: list[Outcome]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS),
             "| " + " | ".join(str(v) for v in _figures(outcomes)) + " |"]
    return "\n".join(lines)
