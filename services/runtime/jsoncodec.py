"""JSON to and from bytes by orjson, with the standard library's codec where orjson can't.

orjson is several times faster, and every projector decodes each record it reads and
encodes each message and JSON column it writes. It refuses what the standard library
takes: integers past 64 bits and keys that aren't strings when writing, NaN and Infinity
when reading; those fall back. It reads an integer past 64 bits as a float, so a document
with a run of 19 digits or more is read by the standard library. Other objects (datetimes included) are written as their
str(), as `json.dumps(default=str)` did, so the bytes mean what they meant before; NaN and
Infinity are written as null, as ingest has always written them into events.raw.

orjson (3.12 on) answers bytes that keep the whole buffer it wrote into, 4 KB or more
however short the JSON: a replay batch of 100,000 messages held 8 KB each, ten times their
length. `dumps` answers a right-sized copy (0.2 us).
"""
from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any) -> bytes:
    return _right_sized(_encoded(value))


def dumps_text(value: Any) -> str:
    """For SQLAlchemy's JSON columns, whose serializer answers text (decoding copies anyway)."""
    return _encoded(value).decode()


def dumps_sorted(value: Any) -> bytes:
    """`dumps` with every object's keys sorted: equal values, equal bytes."""
    return _right_sized(_encoded(value, sort=True))


def _encoded(value: Any, sort: bool = False) -> bytes:
    try:
        return orjson.dumps(value, default=str, option=(_OPTIONS | orjson.OPT_SORT_KEYS) if sort else _OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, separators=(",", ":"), default=str, sort_keys=sort).encode()


def _right_sized(encoded: bytes) -> bytes:
    return b"".join((encoded, b""))  # a new bytes of the exact length (bytes(x) would answer x)


_DIGITS_AS_ZERO = bytes(48 if 48 <= b <= 57 else b for b in range(256))
_LONG_RUN = b"0" * 19  # 19 digits or more could be an integer past 64 bits


def loads(data: bytes | str) -> Any:
    """orjson reads an integer past 64 bits as the nearest float (3.13): such a document, rare,
    goes to the standard library, which keeps it exact."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if _may_hold_a_long_integer(raw):
        return json.loads(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


_INSIDE_TEXT = frozenset(b'"/.')  # a run after these is text (a profile's exact sums, "n/d") or a fraction's digits


def _may_hold_a_long_integer(raw: bytes) -> bool:
    """Whether a run of 19 digits or more in `raw` may be an integer: one not just after a
    quote, a slash or a point (a minus before it looked through). Digits mapped to one and a
    find: a regular expression cost five times orjson's parse. A profile's summary holds exact
    sums as fraction text ("5627348440294277/281474976710656"), which alone had sent every
    summary to the standard library's parser, a tenth of the profile projector's time."""
    digits = raw.translate(_DIGITS_AS_ZERO)
    at = digits.find(_LONG_RUN)
    while at != -1:
        start = at
        while start and digits[start - 1] == 48:  # back to the run's first digit
            start -= 1
        before = start - 2 if start >= 2 and raw[start - 1] == 45 else start - 1  # 45: "-"
        if before < 0 or raw[before] not in _INSIDE_TEXT:
            return True
        at = digits.find(_LONG_RUN, at + len(_LONG_RUN))
    return False
