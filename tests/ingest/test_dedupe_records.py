"""The database half of the messageId dedupe: what one ingest replica appended, another one
(or this one after a restart) finds, on each backend."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import exc, select, text, update

from services import migrations
from services.ingest.records import IngestRecords, _seen_query
from services.ingest.tables import SeenMessage
from services.runtime.clock import now
from services.runtime.db import make_engine, reading, writing
from tests.support import prepared_plan, wait_until

WINDOW_S = 3600


def test_a_replica_finds_the_ids_another_appended_within_the_window_and_only_those(settings):
    engine = make_engine(settings.database_url)
    migrations.upgrade(engine)
    first, replica = IngestRecords(engine, WINDOW_S), IngestRecords(engine, WINDOW_S)
    try:
        first.remember("src-a", ["m1", "m2", "m3"], duplicates=0)
        first.remember("src-b", ["m1"], duplicates=0)
        wait_until(lambda: first.writes >= 1 and len(seen_rows(engine)) == 4, 10, "the writer to commit")
        assert replica.duplicates("src-a", ["m1", "m3", "m9"]) == {"m1", "m3"}
        assert replica.duplicates("src-b", ["m1", "m2"]) == {"m1"}  # per source

        with writing(engine) as session:  # m2 was seen two windows ago: it may be sent again
            session.execute(update(SeenMessage).where(SeenMessage.message_id == "m2")
                            .values(seen_at=now() - timedelta(seconds=2 * WINDOW_S)))
        assert replica.duplicates("src-a", ["m2"]) == set()
        first.remember("src-a", ["m2"], duplicates=0)  # appended again: seen now
        wait_until(lambda: seen_at(engine, "src-a", "m2") > now() - timedelta(seconds=WINDOW_S), 10,
                   "the writer to move m2's time on")
        assert replica.duplicates("src-a", ["m2"]) == {"m2"}
    finally:
        engine.dispose()


def seen_rows(engine) -> list[tuple]:
    with reading(engine) as session:
        return session.execute(select(SeenMessage.source_id, SeenMessage.message_id)).all()


def seen_at(engine, source_id: str, message_id: str):
    with reading(engine) as session:
        return session.scalar(select(SeenMessage.seen_at).where(SeenMessage.source_id == source_id,
                                                                SeenMessage.message_id == message_id))


def test_a_database_out_of_reach_raises_what_sqlalchemy_raises_so_ingest_answers_503(settings):
    """The look-up runs on the driver's cursor; its errors come out as SQLAlchemy's own
    (`answered` turns OperationalError into 503; the driver's own error was a 500)."""
    postgres = settings.database_url.startswith("postgresql")
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none" if postgres
                         else f"sqlite:///file:{settings.data_dir}/no/such/dir/x.db?mode=ro&uri=true")
    try:
        with pytest.raises(exc.OperationalError):
            IngestRecords(engine, WINDOW_S).duplicates("src-a", ["m1"])
    finally:
        engine.dispose()


def test_an_id_seen_exactly_at_the_windows_start_is_still_a_duplicate(settings, monkeypatch):
    """The window's start is compared as the column stores times (on SQLite, text): bound as
    the driver's own datetime text ("...+00:00"), a time equal to it read as earlier."""
    engine = make_engine(settings.database_url)
    migrations.upgrade(engine)
    records, at = IngestRecords(engine, WINDOW_S), now().replace(microsecond=123456)
    monkeypatch.setattr("services.ingest.records.now", lambda: at)
    try:
        with writing(engine) as session:
            session.add_all([SeenMessage(source_id="src-a", message_id="edge", seen_at=at - timedelta(seconds=WINDOW_S)),
                             SeenMessage(source_id="src-a", message_id="before",
                                         seen_at=at - timedelta(seconds=WINDOW_S, microseconds=1))])
        assert records.duplicates("src-a", ["edge", "before"]) == {"edge"}
    finally:
        engine.dispose()


def test_the_look_up_probes_the_key_for_each_id_while_the_table_is_not_analysed(settings):
    """A new deployment's seen ids, not analysed yet: PostgreSQL must still look each wanted id
    up in the primary key, not read every id of the source and hash them (21 ms a look-up at
    80,000 ids, growing with the table). Custom and generic plans both."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's planner")
    engine = make_engine(settings.database_url)
    migrations.upgrade(engine)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {SeenMessage.__tablename__} SET (autovacuum_enabled = false)"))
            conn.execute(text(f"INSERT INTO {SeenMessage.__tablename__} (source_id, message_id, seen_at) "
                              "SELECT 'src-a', 'm' || i, now() FROM generate_series(1, 50000) AS i"))
        sql, parameters = _seen_query(engine.dialect)
        values = parameters("src-a", now() - timedelta(seconds=WINDOW_S), ["m7", "m70000"])
        with engine.connect() as conn:
            plans = [prepared_plan(conn, sql, values, mode)
                     for mode in ("force_custom_plan", "force_generic_plan")]
        with reading(engine) as session:  # and the answer is still the ids seen
            assert IngestRecords(engine, WINDOW_S).duplicates("src-a", ["m7", "m70000"]) == {"m7"}
            assert session.scalar(text(f"SELECT reltuples FROM pg_class WHERE relname = '{SeenMessage.__tablename__}'")) < 0
    finally:
        engine.dispose()
    for plan in plans:
        assert "Hash" not in plan and "Index Scan using pk_ingest_seen_messages" in plan, plan
