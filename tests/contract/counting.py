"""A deliberately non-idempotent handler: it adds one per record, so a record applied
twice, or never, shows up in the counts. Only the projector loop can keep them exact."""
from __future__ import annotations

import os
import signal
import threading

from sqlalchemy import Column, Integer, MetaData, String, Table, select, update
from sqlalchemy.orm import Session

from services.runtime.log import Message, Record

INPUT, OUTPUT = "counting.input", "counting.output"
KEYS = [f"person-{i}" for i in range(10)]

schema = MetaData()
applied = Table("test_applied_counts", schema, Column("key", String(50), primary_key=True),
                Column("count", Integer, nullable=False))


class InjectedFault(RuntimeError):
    pass


class CountingHandler:
    name = "counting"
    topics = (INPUT,)

    def __init__(self, fail_after: int | None = None, kill_after: int | None = None):
        self.fail_after, self.kill_after = fail_after, kill_after
        self.seen = self.failures = 0
        self.threads: set[int] = set()  # where it ran

    def apply(self, session: Session, batch: list[Record]):
        self.threads.add(threading.get_ident())
        for record in batch:
            session.execute(update(applied).where(applied.c.key == record.key)
                            .values(count=applied.c.count + 1))
            self.seen += 1
            if self.seen == self.fail_after:
                self.failures += 1
                raise InjectedFault(f"injected after {self.seen} records")
        if self.kill_after is not None and self.seen >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # applied, not yet committed
        return [(OUTPUT, Message(r.key, r.value)) for r in batch]


def prepare(engine) -> None:
    schema.create_all(engine)
    with engine.begin() as conn:
        if not conn.execute(select(applied.c.key)).first():
            conn.execute(applied.insert(), [{"key": k, "count": 0} for k in KEYS])


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(applied.c.key, applied.c.count)).all())
