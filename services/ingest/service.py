"""Ingest's edge: find the source, check each message, append to events.raw or events.rejected."""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from services.identity.domain.identifiers import sealing_identifiers
from services.identity.domain.rules import load_rules
from services.ingest.catalogue import tracking_plan, webhook_mappings
from services.ingest.domain.messages import Rejection, canonical, partition_key
from services.ingest.domain.normalise import normalised_identifiers
from services.ingest.domain.plan import TrackingPlan, Violation, blocks, checked, describe, with_violations
from services.ingest.domain.ratelimit import TokenBucket
from services.ingest.records import IngestRecords
from services.ingest.sources import SourceView
from services.ingest.tables import Source
from services.runtime import jsoncodec, metrics, topics
from services.runtime.clock import format_time, now
from services.runtime.db import reading
from services.runtime.http import ApiError
from services.runtime.log import Log, Message
from services.runtime.sealing import identifier_subject, seal_messages
from services.runtime.settings import Settings


class Blocked(Rejection):
    """An event its source's tracking plan blocks."""

    def __init__(self, violations: list[Violation]):
        super().__init__(violations[0].field, "plan_violation", describe(violations))
        self.message = describe(violations)
        self.violations = violations


@dataclass
class Outcome:
    """What became of the messages of one request."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)  # {"index", "error": {code, message, field}}


@dataclass
class _Checked:
    events: list[dict] = field(default_factory=list)
    rejected: list[tuple[int, str | None, Any, Rejection]] = field(default_factory=list)
    violations: list[dict] = field(default_factory=list)


class Ingest:
    def __init__(self, engine: Engine, log: Log, settings: Settings, plan: TrackingPlan | None = None):
        self.engine, self.log, self.settings = engine, log, settings
        self.plan = plan or tracking_plan()
        self.mappings = webhook_mappings(settings.ingest_webhook_mappings_dir)
        self.records = IngestRecords(engine, settings.ingest_dedupe_window_s)
        self.keys = getattr(log, "keystore", None)  # seals events under their identifiers' keys
        self.rules = load_rules(settings.identity_rules_path)
        self._keys: dict[str, tuple[SourceView | None, float]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    # --- who is sending ---------------------------------------------------------------

    def source(self, write_key: str) -> SourceView | None:
        """The source of a write key, cached for `ingest_key_cache_s` (unknown keys too)."""
        cached = self._keys.get(write_key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        with reading(self.engine) as session:
            row = session.scalars(select(Source).where(Source.write_key == write_key)).first()
            view = SourceView.of(row) if row is not None else None
        if len(self._keys) > 10_000:
            self._keys.clear()  # bounds memory against random keys; a miss costs one query
        self._keys[write_key] = (view, time.monotonic() + self.settings.ingest_key_cache_s)
        return view

    def cached(self, write_key: str | None) -> SourceView | None:
        """The enabled source of a write key if the cache knows it now (no query), else None."""
        cached = self._keys.get(write_key) if write_key else None
        if cached is not None and cached[0] is not None and cached[0].enabled and cached[1] > time.monotonic():
            return cached[0]
        return None

    def forget_keys(self) -> None:
        """Drop cached keys, so an admin change in this process applies at once."""
        self._keys.clear()

    def authenticated(self, write_key: str | None) -> SourceView:
        if not write_key:
            raise ApiError(401, "unauthorized", "a write key is required: the HTTP Basic username, "
                           "or writeKey in the body", "Authorization",
                           {"WWW-Authenticate": 'Basic realm="rapport"'})
        source = self.source(write_key)
        if source is None or not source.enabled:
            raise ApiError(401, "unauthorized", "unknown or disabled write key", "Authorization")
        return source

    def admit(self, source: SourceView, count: int) -> None:
        """Raise 429 with Retry-After past the per-key rate."""
        at = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(source.id)
            if bucket is None:
                bucket = self._buckets[source.id] = TokenBucket.full(
                    self.settings.ingest_rate_per_key, self.settings.ingest_burst_per_key, at)
            wait = bucket.take(count, at)
        if wait > 0:
            raise ApiError(429, "rate_limited", f"this write key is over {self.settings.ingest_rate_per_key:g} "
                           "events a second; retry later", "Authorization",
                           {"Retry-After": str(max(1, math.ceil(wait)))})

    # --- taking messages in -----------------------------------------------------------

    def receive(self, source: SourceView, items: list[tuple[str | None, Any]]) -> Outcome:
        """Append the valid messages to events.raw, the rest to events.rejected.

        Returns only once the log has them durably; raises LogUnavailable if it can't.
        A messageId this source sent within the dedupe window is acknowledged, counted
        and not appended again.
        """
        return self.receive_many([(source, items)])[0]

    def receive_many(self, requests: list[tuple[SourceView, list[tuple[str | None, Any]]]],
                     received: list[datetime] | None = None) -> list[Outcome]:
        """`receive` for several requests at once (each with the time it arrived), in order:
        one dedupe lookup per source, one append to events.raw and one to events.rejected
        for all of them. Either every request's messages are durably in the log, or
        LogUnavailable is raised for all."""
        received = received or [now()] * len(requests)
        checks = [self._check(source, items, at) for (source, items), at in zip(requests, received)]
        fresh_of = self._fresh_many([(source, c.events) for (source, _), c in zip(requests, checks)])
        self.log.append(topics.EVENTS_RAW, self._sealed(
            [(e, Message(partition_key(e), jsoncodec.dumps(e))) for fresh, _dupes in fresh_of for e in fresh]))
        self.log.append(topics.EVENTS_REJECTED, self._sealed([
            (body, _rejected_message(source, kind, body, rejection, at))
            for (source, _), c, at in zip(requests, checks, received)
            for _i, kind, body, rejection in c.rejected], keyed_by_person=False))
        outcomes = []
        for (source, _), checked_, (fresh, duplicates) in zip(requests, checks, fresh_of):
            self.records.remember(source.id, [e["messageId"] for e in fresh], duplicates)
            self.records.violations(checked_.violations)
            _count(source.id, len(fresh), duplicates, [r for *_, r in checked_.rejected])
            outcomes.append(Outcome(len(fresh), duplicates, [{"index": i, "error": r.as_error()}
                                                             for i, _k, _b, r in checked_.rejected]))
        return outcomes

    def _sealed(self, items: list[tuple[Any, Message]], keyed_by_person: bool = True) -> list[Message]:
        """Each message sealed under the keys of the identifiers its event carries, its key
        an HMAC of the person's partition key (no identifier in clear on the log). A message
        naming an erased identifier is dropped: it is acknowledged, and never stored."""
        if self.keys is None or not items:
            return [message for _, message in items]
        subjects = [[identifier_subject(i.type, i.value) for i in sealing_identifiers(event, self.rules)]
                    if isinstance(event, dict) else [] for event, _ in items]
        keyed = [Message(self.keys.kid(m.key) if m.key and keyed_by_person else m.key, m.value)
                 for _, m in items]
        sealed = seal_messages(self.keys, list(zip(subjects, keyed)))
        if dropped := sealed.count(None):
            metrics.EVENTS_SUPPRESSED.inc(dropped)
        return [m for m in sealed if m is not None]

    def _check(self, source: SourceView, items, received_at: datetime) -> _Checked:
        result = _Checked()
        for index, (kind, body) in enumerate(items):
            try:
                result.events.append(self._event(source, kind, body, received_at, result.violations))
            except Rejection as rejection:
                result.rejected.append((index, kind, body, rejection))
        return result

    def _event(self, source: SourceView, kind: str | None, body: Any, received_at: datetime,
               violations: list[dict]) -> dict:
        if kind is None:
            raise Rejection("type", "unknown_type", "must be one of track, identify, page, screen, group, alias")
        event = canonical(kind, body, source.id, received_at)
        if identifiers := normalised_identifiers(event):
            event["normalised"] = identifiers
        if not checked(source.plan_mode):
            return event
        found = self.plan.violations(event)
        violations += [_violation_row(source, event, v, blocks(source.plan_mode, found), received_at)
                       for v in found]
        if blocks(source.plan_mode, found):
            raise Blocked(found)
        return with_violations(event, found) if found else event

    def _fresh_many(self, requests: list[tuple[SourceView, list[dict]]]) -> list[tuple[list[dict], int]]:
        """Each request's events whose messageId is new: not seen within the window, nor
        earlier in this request or in an earlier request of the group; and how many weren't."""
        ids: dict[str, set[str]] = {}
        for source, events in requests:
            ids.setdefault(source.id, set()).update(e["messageId"] for e in events)
        seen = {source_id: self.records.duplicates(source_id, wanted) for source_id, wanted in ids.items()}
        result = []
        for source, events in requests:
            known, fresh = seen[source.id], []
            for event in events:
                if event["messageId"] not in known:
                    known.add(event["messageId"])
                    fresh.append(event)
            result.append((fresh, len(events) - len(fresh)))
        return result


def _count(source_id: str, accepted: int, duplicates: int, rejections: list[Rejection]) -> None:
    """Prometheus counters, once the log has everything durably."""
    if accepted:
        metrics.event_accepted(source_id, accepted)
    if duplicates:
        metrics.event_deduplicated(source_id, duplicates)
    for rejection in rejections:
        metrics.event_rejected(source_id, rejection.rule)


def _violation_row(source: SourceView, event: dict, violation: Violation, blocked: bool,
                   at: datetime) -> dict:
    return {"source_id": source.id, "message_id": event["messageId"], "event": event.get("event"),
            "type": violation.type, "field": violation.field[:200],
            "description": violation.description[:1000], "blocked": blocked, "at": at}


def _rejected_message(source: SourceView, kind: str | None, body: Any, rejection: Rejection,
                      received_at: datetime) -> Message:
    value = {"sourceId": source.id, "kind": kind, "receivedAt": format_time(received_at),
             "reason": rejection.as_error(), "payload": _printable(body)}
    if isinstance(rejection, Blocked):
        value["violations"] = [v.as_dict() for v in rejection.violations]
    return Message.of(source.id, value)


def _printable(body: Any) -> Any:
    try:
        json.dumps(body)
        return body
    except (TypeError, ValueError):
        return repr(body)
