"""Planner statistics kept fresh while tables grow (services/runtime/statistics.py), on
PostgreSQL: a table that grew by half since it was last analysed is analysed now, in the
schema the projector's engine writes (a replay's copy schema through its map); one whose
rows were only updated, however often, is not."""
import pytest
from sqlalchemy import text

from services.runtime.db import make_engine
from services.runtime.statistics import TableStatistics
from tests.support import wait_until


def analysed_rows(conn, schema: str, table: str) -> float:
    return conn.execute(text("SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname = :schema AND c.relname = :table"),
                        {"schema": schema, "table": table}).scalar()


def writes_counted(engine, schema: str) -> int:
    """The rows inserted and updated in the test's tables that the server's counters hold
    (flushed a moment after each commit)."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT sum(n_tup_ins + n_tup_upd) FROM pg_stat_user_tables "
                                 "WHERE schemaname = :schema AND relname IN ('grows', 'stays', 'churns')"),
                            {"schema": schema}).scalar()


@pytest.mark.parametrize("schema", [None, "replay_stats"])
def test_a_table_that_grew_by_half_is_analysed_and_one_that_did_not_is_left(postgres_url, schema):
    engine = make_engine(postgres_url)
    where = schema or "public"
    with engine.begin() as conn:
        if schema:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        for table in ("grows", "stays", "churns"):
            conn.execute(text(f'CREATE TABLE "{where}"."{table}" (id integer primary key, n integer default 0)'))
            conn.execute(text(f'INSERT INTO "{where}"."{table}" SELECT generate_series(1, 3000)'))
    # the inserts reached the server's counters, then ANALYZE zeroes them
    wait_until(lambda: writes_counted(engine, where) == 9000, timeout_s=15, what="9,000 inserts counted")
    with engine.connect() as conn:
        conn.execute(text(f'ANALYZE "{where}"."grows"; ANALYZE "{where}"."stays"; ANALYZE "{where}"."churns"'))
    with engine.begin() as conn:
        conn.execute(text(f'INSERT INTO "{where}"."grows" SELECT generate_series(3001, 9000)'))
        conn.execute(text(f'INSERT INTO "{where}"."stays" SELECT generate_series(3001, 3500)'))
    for _ in range(3):  # 9,000 rows changed in place: three times the table, no row more
        with engine.begin() as conn:
            conn.execute(text(f'UPDATE "{where}"."churns" SET n = n + 1'))
    wait_until(lambda: writes_counted(engine, where) == 9000 + 6500 + 9000, timeout_s=15,
               what="the new inserts and updates counted")
    mapped = engine.execution_options(schema_translate_map={None: schema}) if schema else engine
    statistics = TableStatistics(mapped, every_s=0)
    analysed = wait_until(lambda: (found := statistics.refresh_if_due()) and "grows" in found and found,
                          timeout_s=15, what="grows analysed")
    assert "stays" not in analysed and "churns" not in analysed
    with engine.connect() as conn:
        assert analysed_rows(conn, where, "grows") == 9000 and analysed_rows(conn, where, "stays") == 3000
    statistics.every_s = 60
    with engine.begin() as conn:
        conn.execute(text(f'INSERT INTO "{where}"."stays" SELECT generate_series(3501, 9000)'))
    assert statistics.refresh_if_due() == []  # looked less than a minute ago
    engine.dispose()


def test_sqlite_has_nothing_to_analyse(tmp_path):
    assert TableStatistics(make_engine(f"sqlite:///{tmp_path / 'x.db'}"), every_s=0).refresh_if_due() == []
