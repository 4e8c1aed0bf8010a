"""Matching forms of identifier values: equal people must produce equal strings.

Email and phone are ingest's own functions (services/ingest/domain/normalise.py), so
identity matches exactly what ingest normalised.
"""
from __future__ import annotations

import math
from typing import Any

from services.ingest.domain.normalise import normal_email, normal_phone


def as_text(value: Any) -> str | None:
    """A scalar as trimmed text; objects, lists, booleans and NaN are never identifiers."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value).strip()


def email(text: str) -> str | None:
    return normal_email(text)


def phone(text: str, default_region: str | None = None) -> str | None:
    """E.164 (+4915112345678); a number without a country code needs `default_region`."""
    return normal_phone(text, default_region)


def handle(text: str) -> str | None:
    """A social handle: case-insensitive on every major platform, '@' optional."""
    return text.lstrip("@").lower() or None


def plain(text: str) -> str | None:
    """Ids keep their case: 'User-ABC' and 'user-abc' may be different accounts."""
    return text or None


NORMALISERS = {"email": email, "handle": handle, "id": plain}
