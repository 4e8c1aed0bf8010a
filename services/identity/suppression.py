"""The suppression list: identifiers of erased people, which never link again (not even
when the log is replayed), so events carrying any of them are dropped."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.identity.domain.identifiers import Identifier
from services.privacy.tables import SuppressedIdentifier
from services.runtime import metrics
from services.runtime.db import each_in
from services.runtime.sealing import KeyStore, identifier_subject


def suppressed(session: Session, keys: KeyStore | None,
               events: Sequence[Sequence[Identifier]]) -> list[bool]:
    """For each event's identifiers, whether one of them is suppressed (one query a batch)."""
    if keys is None or not events:
        return [False] * len(events)
    kids = [[keys.kid(identifier_subject(i.type, i.value)) for i in ids] for ids in events]
    found: set[str] = set()
    for condition in each_in(session, SuppressedIdentifier.kid, {k for ks in kids for k in ks}):
        found.update(session.scalars(select(SuppressedIdentifier.kid).where(condition)))
    dropped = [bool(found.intersection(ks)) for ks in kids]
    if any(dropped):
        metrics.EVENTS_SUPPRESSED.inc(sum(dropped))
    return dropped
