"""Order-independent pieces the running aggregates are made of (pure, JSON-ready).

A summary folded batch by batch must equal one folded from the whole timeline in any
order, and be stored the same whatever the order (replay compares tables): sums are kept
exact (a fraction as text), times as integer microseconds, firsts and lasts chosen by
(time, messageId), sets and counts keyed by each value's JSON text.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    return (at - EPOCH) // MICROSECOND


def moment(us: int) -> datetime:
    return EPOCH + us * MICROSECOND


def is_number(value: Any) -> bool:
    """A finite number (JSON read by the standard library may hold Infinity)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)


def add_exact(total: str, value: float) -> str:
    """`total` (a fraction as text) plus `value`, exactly: float sums depend on their order."""
    return str(_fraction(total) + Fraction(*value.as_integer_ratio()))


def exact_sum(numbers: Sequence[float | int]) -> Fraction:
    """The exact sum of finite numbers, as `add_exact` one by one makes it: each is a
    fraction over a power of two, so all are summed as integers over the largest."""
    ratios = [number.as_integer_ratio() for number in numbers]
    denominator = max((d for _, d in ratios), default=1)
    return Fraction(sum(n * (denominator // d) for n, d in ratios), denominator)


def exact_value(total: str, divide_by: int = 1) -> float:
    """Correctly rounded, whatever the order added: a quotient of integers is (as
    float(Fraction) is, which divides them)."""
    fraction = _fraction(total)
    return fraction.numerator / (fraction.denominator * divide_by)


def _fraction(text: str) -> Fraction:
    """A total as `add_exact` writes it ("n/d" or "n"), without Fraction's regular expression
    (2.5 us a parse, and a profile's metrics parse several each time it changes)."""
    numerator, _, denominator = text.partition("/")
    try:
        return Fraction(int(numerator), int(denominator) if denominator else 1)
    except ValueError:  # any other form Fraction reads
        return Fraction(text)


def key_of(value: Any) -> str:
    """A value's identity in a set or a count: its JSON text (1, 1.0 and true differ)."""
    return json.dumps(value, sort_keys=True)


def earliest(chosen: list | None, candidate: list) -> list:
    """Of two [at_us, message_id, ...] entries, the earlier by (time, messageId)."""
    return candidate if chosen is None or candidate[:2] < chosen[:2] else chosen


def latest(chosen: list | None, candidate: list) -> list:
    return candidate if chosen is None or candidate[:2] > chosen[:2] else chosen


def count_in(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def most_frequent(counts: dict[str, int], tie_break=str) -> str | None:
    """The key counted most; ties to the least by `tie_break`."""
    if not counts:
        return None
    top = max(counts.values())
    return min((k for k, n in counts.items() if n == top), key=tie_break)
