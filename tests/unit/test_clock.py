"""The log's times: format_time and parse_time against the standard library's slow forms."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from services.runtime.clock import format_time, parse_time

FAST = settings(max_examples=500, deadline=None, database=None)
offsets = st.one_of(st.none(), st.just(timezone.utc), st.timedeltas(timedelta(hours=-23), timedelta(hours=23))
                    .map(timezone))
moments = st.builds(lambda naive, tz: naive.replace(tzinfo=tz),
                    st.datetimes(datetime(1971, 1, 1), datetime(2200, 1, 1)), offsets)


def slow_format(moment: datetime) -> str:
    """What format_time answered before its fast path: the documented form, by keyword."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@FAST
@given(moment=moments)
def test_format_time_writes_utc_with_microseconds_and_a_z(moment):
    text = format_time(moment)
    assert text == slow_format(moment)
    assert text.endswith("Z") and len(text) == len("2024-05-06T07:08:09.123456Z")


@FAST
@given(moment=moments)
def test_parse_time_reads_back_the_same_instant_in_utc(moment):
    parsed = parse_time(format_time(moment))
    assert parsed.tzinfo is timezone.utc
    assert parsed == (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))


@FAST
@given(moment=moments, spelling=st.sampled_from(["isoformat", "z", "naive"]))
def test_parse_time_reads_any_offset_z_or_none_as_utc(moment, spelling):
    aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    if spelling == "isoformat":
        text = moment.isoformat()
    elif spelling == "z":
        text = aware.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    else:
        text = aware.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    parsed = parse_time(text)
    assert parsed == aware and parsed.utcoffset() == timedelta(0)


def test_a_zero_offset_that_is_not_utc_itself_is_written_with_a_z():
    assert format_time(datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(0), "GMT"))) \
        == "2024-05-06T07:08:09.000000Z"
