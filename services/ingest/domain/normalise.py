"""Normal forms of identifiers, so the same person matches however they typed it.

Pure functions (no I/O): ingest adds them to each event before the log; identity can
use the same ones for matching. Traits stay as the person sent them.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from services.runtime.envelope import as_object, stated_traits


def normal_email(text: Any) -> str | None:
    """Trimmed, lower-cased and valid (syntax only, no DNS), or None."""
    if not isinstance(text, str) or not text.strip():
        return None
    text = text.strip()
    return _email(text) if len(text) <= CACHED_LENGTH else _email.__wrapped__(text)


# People come back: the same address or number is normalised again on each of their
# events, by ingest and by identity; the validators cost tens of microseconds a value.
# Longer texts (never a valid address or number) aren't kept, so the caches stay small.
CACHED_LENGTH = 320


@lru_cache(maxsize=1 << 16)
def _email(text: str) -> str | None:
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def normal_phone(text: Any, region: str | None = None) -> str | None:
    """E.164 ("+447700900123"), or None when it isn't a valid number.

    A number without a country code is read in `region` (ISO 3166 alpha-2).
    """
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str) or not text.strip():
        return None
    region = region.upper() if region else None
    return _phone(text, region) if len(text) <= CACHED_LENGTH else _phone.__wrapped__(text, region)


@lru_cache(maxsize=1 << 16)
def _phone(text: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def region_of(event: dict) -> str | None:
    """The country a local phone number is read in: the address's, else the locale's."""
    traits = stated_traits(event)
    country = as_object(traits.get("address")).get("country")
    if isinstance(country, str) and len(country.strip()) == 2:
        return country.strip().upper()
    locale = as_object(event.get("context")).get("locale")
    if isinstance(locale, str):
        _, _, region = locale.replace("_", "-").partition("-")
        return region.upper() if len(region) == 2 else None
    return None


def normalised_identifiers(event: dict) -> dict[str, str]:
    """The event's email and phone in normal form (only those that are valid)."""
    traits = stated_traits(event)
    if not traits:
        return {}  # most events (track, page) state no traits: nothing to normalise
    phone = traits.get("phone")
    found = {"email": normal_email(traits.get("email")),
             # the region only matters, and is only worked out, for a phone number
             "phone": normal_phone(phone, region_of(event)) if phone is not None else None}
    return {name: value for name, value in found.items() if value}
