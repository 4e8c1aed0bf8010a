"""The JSON codec every log message and JSON column goes through: orjson's speed, the
standard library's meaning (its fallback covers what orjson refuses)."""
import json
import sys
import tracemalloc
from datetime import datetime, timezone

from hypothesis import given, strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, insert, select

from services.runtime import jsoncodec
from services.runtime.db import Json, make_engine

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@given(documents)
def test_a_document_reads_back_as_the_standard_library_reads_its_own(value):
    assert jsoncodec.loads(jsoncodec.dumps(value)) == json.loads(json.dumps(value))


def test_what_orjson_refuses_falls_back_to_the_standard_library():
    for big in (2**70 + 1, -2**63 - 1, 2**64):  # past 64 bits, each one off the nearest float
        assert jsoncodec.loads(jsoncodec.dumps({"n": big})) == {"n": big}
        assert jsoncodec.loads(jsoncodec.dumps_text([big])) == [big]
    assert jsoncodec.loads(jsoncodec.dumps({1: "a"})) == {"1": "a"}  # a key that isn't a string
    assert jsoncodec.loads(b'{"x": NaN}')["x"] != jsoncodec.loads(b'{"x": NaN}')["x"]  # NaN read


long_digits = st.integers(10**18, 10**40).map(str)
# long runs of digits as integers, fractions' digits, exact sums' text ("n/d"), and in plain text
digit_runs = (st.integers(-10**40, 10**40) | st.builds(lambda d: float("0." + d), long_digits)
              | st.builds(lambda n, d, sign: f"{sign}{n}/{d}", long_digits, long_digits, st.sampled_from(["", "-"]))
              | st.builds(lambda a, d, b: a + d + b, st.text(max_size=3), long_digits, st.text(max_size=3)))


@given(st.recursive(scalars | digit_runs, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10))
def test_long_runs_of_digits_read_back_exactly_wherever_they_are(value):
    assert jsoncodec.loads(jsoncodec.dumps(value)) == json.loads(json.dumps(value))


def test_exact_sums_as_text_are_read_by_orjson_and_long_integers_by_the_standard_library():
    """A profile's summary holds exact sums as fraction text: orjson reads it (the standard
    library parses several times slower); a number of 19 digits or more goes to the library."""
    summary = {"revenue": "-5627348440294277123456/281474976710656", "orders": 3, "avg": 0.1234567890123456789012}
    assert not jsoncodec._may_hold_a_long_integer(jsoncodec.dumps(summary))
    for number in (12345678901234567890123, -12345678901234567890123):
        assert jsoncodec._may_hold_a_long_integer(jsoncodec.dumps({"total": number}))
        assert jsoncodec._may_hold_a_long_integer(jsoncodec.dumps([number]))
    assert jsoncodec._may_hold_a_long_integer(b"12345678901234567890123")


def test_objects_are_written_as_their_text_as_before():
    at = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
    assert jsoncodec.dumps({"at": at}) == json.dumps({"at": at}, separators=(",", ":"), default=str).encode()


def test_json_columns_use_the_codec(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'codec.db'}")
    table = Table("docs", MetaData(), Column("id", Integer, primary_key=True), Column("doc", Json))
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), [{"id": 1, "doc": {"big": 2**70, "at": datetime(2026, 1, 5, tzinfo=timezone.utc)}}])
        stored = conn.exec_driver_sql("SELECT doc FROM docs").scalar()
        assert conn.execute(select(table.c.doc)).scalar() == {"big": 2**70, "at": "2026-01-05 00:00:00+00:00"}
    assert stored == '{"big":%d,"at":"2026-01-05 00:00:00+00:00"}' % 2**70  # the codec's compact form


def test_sorted_dumps_sort_every_objects_keys_on_both_paths():
    value = {"b": {"z": 1, "a": [{"y": 2, "x": 3}]}, "a": None}
    assert jsoncodec.dumps_sorted(value) == b'{"a":null,"b":{"a":[{"x":3,"y":2}],"z":1}}'
    past_64_bits = {"b": 2 ** 70, "a": 1}  # the standard library's path
    assert jsoncodec.dumps_sorted(past_64_bits) == b'{"a":1,"b":1180591620717411303424}'


def test_encoded_messages_hold_no_more_memory_than_their_length():
    """A batch keeps its messages until they are on the log: each must cost its length, not
    the buffer orjson wrote it into (4-8 KB for these, before it was copied right-sized)."""
    event = {"type": "track", "event": "Order Completed", "properties": {"revenue": 89.9, "currency": "EUR"}}
    tracemalloc.start()
    try:
        kept = [encode(event) for encode in (jsoncodec.dumps, jsoncodec.dumps_sorted) for _ in range(100)]
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < sum(sys.getsizeof(b) for b in kept) + 4096  # the list and the odd interned object
