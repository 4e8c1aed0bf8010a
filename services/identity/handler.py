"""Resolves each raw event to a profile and writes events.resolved: the event, and the
merges, splits and refused merges its evidence caused."""
from __future__ import annotations

from sqlalchemy.orm import Session

from services.identity.batch import BatchResolver
from services.identity.domain.identifiers import identifiers_of
from services.identity.domain.resolution import Evidence
from services.identity.domain.rules import DEFAULT_RULES, Rules
from services.identity.store import GraphStore, operator_rules
from services.identity.suppression import suppressed
from services.runtime import topics
from services.runtime.clock import format_time, parse_time
from services.runtime.log import Log, Record
from services.runtime.projector import Output


class IdentityHandler:
    name = "identity"
    topics = (topics.EVENTS_RAW,)

    def __init__(self, rules: Rules = DEFAULT_RULES, log: Log | None = None,
                 resolver: type[BatchResolver] = BatchResolver):
        self.rules, self.log = rules, log  # the log: to re-read events when a profile splits
        self.resolver = resolver

    def apply(self, session: Session, batch: list[Record]) -> list[Output]:
        rules = operator_rules(session, self.rules)
        store = GraphStore(session, rules, self.log)
        read = [(record, event, evidence_of(event, rules)) for record in batch for event in [record.json()]]
        erased = suppressed(session, getattr(self.log, "keystore", None),
                            [e.identifiers for _, _, e in read])
        # ingest guarantees an identifier; blocked values may still leave none
        return self.resolver(store).resolve([
            (event, evidence, (record.topic, record.partition, record.offset))
            for (record, event, evidence), drop in zip(read, erased) if evidence.identifiers and not drop])


def evidence_of(event: dict, rules: Rules) -> Evidence:
    return Evidence(event["messageId"], format_time(parse_time(event["timestamp"])),
                    tuple(identifiers_of(event, rules)))
