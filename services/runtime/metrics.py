"""Prometheus metrics of every service, and small helpers to record them.

Metrics live in prometheus-client's default registry: one process serves one
deployment, and its /metrics shows what that process did. Services call the
helpers below rather than the metric objects, so names and labels stay in one place.
"""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

# --- HTTP (every route, recorded by the middleware in runtime/http.py) -----------------
HTTP_REQUESTS = Counter("rapport_http_requests_total", "HTTP requests answered",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("rapport_http_request_duration_seconds", "HTTP request latency",
                         ["method", "route"],
                         buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))

# --- ingest ---------------------------------------------------------------------------
INGEST_ACCEPTED = Counter("rapport_ingest_events_accepted_total", "events on the log", ["source"])
INGEST_REJECTED = Counter("rapport_ingest_events_rejected_total", "events rejected",
                          ["source", "reason"])
INGEST_DEDUPLICATED = Counter("rapport_ingest_events_deduplicated_total",
                              "events dropped as duplicates of an earlier messageId", ["source"])

# --- consumers (recorded by the projector loop) ---------------------------------------
CONSUMER_APPLIED = Counter("rapport_consumer_events_applied_total",
                           "records applied to the projection", ["consumer"])
CONSUMER_BATCH_SECONDS = Histogram("rapport_consumer_batch_apply_seconds",
                                   "time to apply and commit one batch", ["consumer"],
                                   buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
CONSUMER_LAG = Gauge("rapport_consumer_lag_records", "records on the log not yet applied",
                     ["consumer", "topic", "partition"])
CONSUMER_ERRORS = Counter("rapport_consumer_errors_total", "failed batches and parked records",
                          ["consumer", "kind"])
CONSUMER_PARKED = Counter("rapport_consumer_events_parked_total",
                          "poison records set aside in parked_events", ["consumer"])
EVENTS_SUPPRESSED = Counter("rapport_events_suppressed_total",
                            "events acknowledged and dropped: they name an erased identifier")
CONSUMER_ERASED = Counter("rapport_consumer_events_erased_total",
                          "records skipped because their subject's key was destroyed (erasure)",
                          ["consumer"])

# --- domain ---------------------------------------------------------------------------
SEGMENT_CHANGES = Counter("rapport_segment_membership_changes_total",
                          "segment entries and exits", ["segment", "change"])
IDENTITY_MERGES = Counter("rapport_identity_merges_total", "profiles merged")
IDENTITY_MERGES_REFUSED = Counter("rapport_identity_merges_refused_total",
                                  "merges refused by merge protection", ["reason"])


def event_accepted(source: str, count: int = 1) -> None:
    INGEST_ACCEPTED.labels(source).inc(count)


def event_rejected(source: str, reason: str) -> None:
    """`reason` should be a rule name (bounded), not a free-text message."""
    INGEST_REJECTED.labels(source, reason).inc()


def event_deduplicated(source: str, count: int = 1) -> None:
    INGEST_DEDUPLICATED.labels(source).inc(count)


def segment_changed(segment: str, entered: bool) -> None:
    SEGMENT_CHANGES.labels(segment, "entered" if entered else "exited").inc()


def identity_merged(count: int = 1) -> None:
    IDENTITY_MERGES.inc(count)


def identity_merge_refused(reason: str) -> None:
    IDENTITY_MERGES_REFUSED.labels(reason).inc()


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
