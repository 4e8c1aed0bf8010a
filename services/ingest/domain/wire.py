"""Segment's wire format around the messages: paths, batches, limits, clock skew."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import orjson

MAX_EVENT_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024

CALLS = ("track", "identify", "page", "screen", "group", "alias")
# the browser SDK's short paths: /v1/t is /v1/track, ...
SHORT_PATHS = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias",
               "b": "batch"}


def write_key_in(body: Any) -> str | None:
    """The `writeKey` a browser SDK puts in the body (it can't set Basic auth without a preflight)."""
    key = body.get("writeKey") if isinstance(body, dict) else None
    return key if isinstance(key, str) and key else None


def batch_items(body: dict) -> list[Any]:
    """Each item of a batch envelope with the envelope's context, integrations and sentAt merged in.

    An item's own values win over the envelope's, key by key.
    """
    items = body.get("batch")
    if not isinstance(items, list):
        return []
    shared = {name: body[name] for name in ("context", "integrations") if isinstance(body.get(name), dict)}
    return [_merged(item, shared, body.get("sentAt")) for item in items]


def _merged(item: Any, shared: dict, sent_at: Any) -> Any:
    if not isinstance(item, dict):
        return item
    merged = dict(item)
    for name, values in shared.items():
        own = item.get(name)
        merged[name] = {**values, **own} if isinstance(own, dict) else (own if name in item else values)
    if sent_at is not None and "sentAt" not in item:
        merged["sentAt"] = sent_at
    return merged


def call_of(item: Any) -> str | None:
    """The call type an item of a batch names, if it is one Rapport takes."""
    kind = item.get("type") if isinstance(item, dict) else None
    return kind if kind in CALLS else None


# what orjson writes as JSON without help: anything else (a datetime, a subclass, nesting past
# its limit of 254 levels) makes it raise
_PLAIN_ONLY = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def size_of(item: Any) -> tuple[int, bool]:
    """Bytes of the item as compact JSON (the standard library's, ASCII with escapes), and
    whether it is plain JSON: JSON's own types only, nested less than 254 levels deep
    (what a body parsed from JSON holds, unless it nests deeper)."""
    try:
        encoded, plain = orjson.dumps(item, option=_PLAIN_ONLY), True
    except TypeError:
        encoded, plain = b"", False
    if encoded and encoded.isascii():
        return len(encoded), plain  # the same bytes json.dumps writes, but for float spelling
    return len(json.dumps(item, separators=(",", ":"), default=str).encode()), plain


def corrected_timestamp(timestamp: datetime | None, sent_at: datetime | None,
                        received_at: datetime) -> datetime:
    """When the event happened by the server's clock.

    The client's clock may be off: the time between its timestamp and its sentAt is
    real, so timestamp = receivedAt - (sentAt - timestamp). Without sentAt the
    timestamp is taken as sent; without a timestamp it is receivedAt.
    """
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    return received_at - (_utc(sent_at) - _utc(timestamp))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
