"""Counting handlers for operations tests: one that fails on records whose value says
{"poison": true} (while `poisoned`), and a runtime prepared for them."""
from __future__ import annotations

from tests.contract.counting import CountingHandler


class PoisonError(ValueError):
    pass


class PoisonAwareHandler(CountingHandler):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.poisoned = True

    def apply(self, session, batch):
        for record in batch:
            if self.poisoned and record.json().get("poison"):
                raise PoisonError(f"cannot apply {record.key} at offset {record.offset}")
        return super().apply(session, batch)


def counting_runtime(settings, messages, batch_size: int | None = None):
    """A migrated runtime with the counting tables and `messages` on the counting input topic."""
    from services import migrations
    from services.runtime.bootstrap import bootstrap_runtime
    from tests.contract.counting import INPUT, OUTPUT, prepare

    if batch_size:
        settings.batch_size = batch_size
    runtime = bootstrap_runtime(settings)
    runtime.log.ensure_topics([INPUT, OUTPUT])
    migrations.upgrade(runtime.engine)
    prepare(runtime.engine)
    runtime.log.append(INPUT, messages)
    return runtime
