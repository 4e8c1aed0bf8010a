"""Timestamps on the log are ISO 8601 strings in UTC; these convert them."""
from datetime import datetime, timedelta, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def parse_time(text: str) -> datetime:
    """An aware UTC datetime from ISO 8601 ('Z' accepted; naive means UTC)."""
    moment = datetime.fromisoformat(text)  # reads "Z" since Python 3.11
    if moment.tzinfo is timezone.utc:  # nearly always: the log's own times
        return moment
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds; a naive datetime is taken as UTC, never local time."""
    if moment.utcoffset() != _ZERO:  # None when naive
        moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    # isoformat() without arguments ends in "+00:00" here, and is a third faster than the
    # keyword form plus replace(): every event's times are formatted, on ingest and after
    text = moment.isoformat()
    return text[:-6] + ("Z" if moment.microsecond else ".000000Z")


_ZERO = timedelta(0)
