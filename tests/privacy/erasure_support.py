"""Searching everything Rapport keeps (every table, every record on the log) for a string."""
from __future__ import annotations

import uuid

from sqlalchemy import MetaData, func, select
from sqlalchemy.engine import Engine

from services.runtime import topics
from services.runtime.db import reading
from services.runtime.sealing import open_records
from services.runtime.tables import ConsumerOffset
from tests.support import log_reader, wait_until


def found_in_tables(engines: list[Engine], needles: list[str]) -> list[tuple[str, str]]:
    """(table, needle) for every table of these databases holding a needle in any column."""
    hits = []
    for engine in engines:
        tables = MetaData()
        tables.reflect(engine)
        with engine.connect() as conn:
            for table in tables.sorted_tables:
                text = " ".join(_text(v) for row in conn.execute(select(table)) for v in row).lower()
                hits += [(table.name, n) for n in needles if n.lower() in text]
    return hits


def found_on_log(runtime, needles: list[str]) -> list[tuple[str, str]]:
    """(topic, needle) for every topic with a record whose key or value holds a needle, as
    stored and as opened with every key the key store still has (what somebody holding both
    the log and the database could read), up to the offsets every consumer reached."""
    hits = []
    for topic, records in _records_per_topic(runtime).items():
        opened, _erased = open_records(runtime.keys, records)
        text = " ".join(f"{r.key} {r.value.decode('latin-1')}" for r in [*records, *opened]).lower()
        hits += [(topic, n) for n in needles if n.lower() in text]
    return hits


def _records_per_topic(runtime) -> dict:
    """Every topic's records from the start, by one reader (see `log_reader`)."""
    applied = _applied_per_topic(runtime.engine)
    names = (topics.EVENTS_RAW, topics.EVENTS_RESOLVED, topics.PROFILES_CHANGED, topics.SEGMENTS_MEMBERSHIP)
    found: dict[str, list] = {name: [] for name in names}
    consumer = log_reader(runtime.log.inner, runtime.settings, names, f"search-{uuid.uuid4().hex[:8]}")

    def read_enough() -> bool:
        for record in consumer.poll(1000, 0.2):
            found[record.topic].append(record)
        return all(len(found[name]) >= applied.get(name, 0) for name in names)

    try:
        wait_until(read_enough, 30, f"the records every consumer applied: {applied}")
        read_enough()  # and whatever else is there already
    finally:
        consumer.close()
    return found


def _applied_per_topic(engine: Engine) -> dict[str, int]:
    with reading(engine) as session:
        rows = session.execute(select(ConsumerOffset.consumer, ConsumerOffset.topic,
                                      func.sum(ConsumerOffset.next_offset))
                               .group_by(ConsumerOffset.consumer, ConsumerOffset.topic)).all()
    applied: dict[str, int] = {}
    for _consumer, topic, count in rows:
        applied[topic] = max(applied.get(topic, 0), int(count))
    return applied


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    return str(value)
