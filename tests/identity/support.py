"""Identity on a real log and database: send raw events, run identity workers, read what they wrote."""
from __future__ import annotations

import itertools
import uuid
from collections import defaultdict

from sqlalchemy import select

from services import migrations
from services.identity.batch import BatchResolver
from services.identity.domain.identifiers import Identifier
from services.identity.domain.rules import DEFAULT_RULES
from services.identity.handler import IdentityHandler
from services.identity.tables import IdentityEvent, IdentityLink, IdentityRefusal
from services.runtime import topics
from services.runtime.bootstrap import Runtime, bootstrap_runtime
from services.runtime.db import reading
from services.runtime.log import Message, TopicPartition
from services.runtime.sealing import read_json
from services.runtime.settings import Settings
from tests.support import caught_up, log_reader, wait_until

_ids = itertools.count()


def raw(timestamp: str, message_id: str | None = None, **fields) -> dict:
    """A canonical event as ingest writes it to events.raw."""
    message_id = message_id or f"m-{next(_ids)}"
    return {"type": "track", "event": "Seen", "messageId": message_id, "timestamp": timestamp,
            "receivedAt": timestamp, "sourceId": "test", **fields}


class IdentityWorld:
    """A migrated database and a log; identity workers run in threads until caught up."""

    def __init__(self, settings: Settings, rules=DEFAULT_RULES):
        self.runtime: Runtime = bootstrap_runtime(settings)
        migrations.upgrade(self.runtime.engine)
        self.rules, self.sent = rules, 0

    def send(self, events: list[dict], key: str | None = "one-partition") -> None:
        """In this order on one partition; with key=None each event's own key picks its
        partition, as ingest does, so workers may see them in any order."""
        for event in events:
            self.runtime.log.append(topics.EVENTS_RAW, [Message.of(
                key or event.get("userId") or event.get("anonymousId"), event)])
        self.sent += len(events)

    def resolve(self, workers: int = 1, resolver: type[BatchResolver] = BatchResolver) -> None:
        projectors = [self.runtime.projector(IdentityHandler(self.rules, self.runtime.log, resolver))
                      for _ in range(workers)]
        threads = [p.start() for p in projectors]
        try:
            wait_until(lambda: caught_up(self.runtime, "identity", self.sent), 60, "identity to catch up")
        finally:
            for projector in projectors:
                projector.stop.set()
            for thread in threads:
                thread.join(30)

    def resolved(self, count: int) -> list[dict]:
        """Every record of events.resolved (at least `count`), partition by partition. The
        workers have stopped, so the topic's end offsets are where reading ends."""
        log = self.runtime.log
        ends = log.end_offsets([TopicPartition(topics.EVENTS_RESOLVED, p)
                                for p in range(self.runtime.settings.partitions_for(topics.EVENTS_RESOLVED))])
        found: list[dict] = []
        consumer = log_reader(log, self.runtime.settings, [topics.EVENTS_RESOLVED], f"reader-{uuid.uuid4().hex[:6]}")
        try:
            def more():
                found.extend(read_json(log, consumer.poll(500, 0.2)))
                return len(found) >= max(count, sum(ends.values()))
            try:
                wait_until(more, 20, f"{count} records on events.resolved")
            except AssertionError as error:
                raise AssertionError(f"{error}: {[(r['kind'], r.get('profile_id')) for r in found]}") from None
        finally:
            consumer.close()
        return found

    def owners(self) -> dict[Identifier, str]:
        with reading(self.runtime.engine) as session:
            return {Identifier(r.type, r.value): r.profile_id for r in session.scalars(select(IdentityLink))}

    def link_facts(self) -> tuple[set[Identifier], dict[Identifier, str]]:
        """The identifiers marked shared, and when each was first seen, as stored."""
        with reading(self.runtime.engine) as session:
            rows = session.scalars(select(IdentityLink)).all()
        return ({Identifier(r.type, r.value) for r in rows if r.shared},
                {Identifier(r.type, r.value): r.first_at for r in rows})

    def event_profiles(self) -> dict[str, str]:
        with reading(self.runtime.engine) as session:
            return dict(session.execute(select(IdentityEvent.message_id, IdentityEvent.profile_id)).all())

    def refusals(self) -> set[tuple[str, str, str]]:
        with reading(self.runtime.engine) as session:
            return set(session.execute(select(IdentityRefusal.message_id, IdentityRefusal.dropped_type,
                                              IdentityRefusal.dropped_value)).all())

    def close(self) -> None:
        self.runtime.close()


def partition_of(owners: dict) -> set[frozenset]:
    groups = defaultdict(set)
    for identifier, profile_id in owners.items():
        groups[profile_id].add(identifier)
    return {frozenset(g) for g in groups.values()}
