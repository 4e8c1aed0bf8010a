"""Statements over many rows: `insert_new_rows` and `upsert` (exactly the rows a plain
INSERT or UPDATE stores) and `each_in` (exactly the rows of the values), on SQLite and PostgreSQL; on
PostgreSQL each in one statement of one parameter (psycopg parses statements of over 50
parameters afresh every time)."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import (BigInteger, Boolean, Column, Float, Integer, LargeBinary, MetaData, String, Table, event, func,
                        insert, select, update)
from sqlalchemy.orm import Session

from services.runtime.db import (Json, UtcDateTime, each_in, insert_new_rows, insert_rows, make_engine, update_each,
                                 upsert)
from tests.support import prepared_plan

METADATA = MetaData()
ROWS = Table("rows_tried", METADATA, Column("key", String(64), primary_key=True), Column("n", Integer),
             Column("doc", Json), Column("at", UtcDateTime), Column("raw", LargeBinary))
PLAIN = Table("rows_plain", METADATA, *(Column(c.name, c.type, primary_key=c.primary_key) for c in ROWS.c))
T0 = datetime(2026, 1, 5, 8, tzinfo=timezone.utc)


class Tried:
    __table__ = ROWS


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'rows.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    engine = make_engine(url)
    METADATA.create_all(engine)
    yield engine
    METADATA.drop_all(engine)
    engine.dispose()


def rows(keys) -> list[dict]:
    return [{"key": f"k{k}", "n": k, "doc": [None, {"k": k, "é": [1.5, "x"]}, "text", k][k % 4],
             "at": None if k % 5 == 0 else T0 + timedelta(microseconds=k), "raw": bytes([k % 256, 0])}
            for k in keys]


def test_only_new_keys_are_inserted_and_answered_as_a_plain_insert_stores_them(engine):
    with Session(engine) as session, session.begin():
        assert insert_new_rows(session, Tried, rows(range(0, 300)), ["key"]) == {(f"k{k}",) for k in range(300)}
        assert insert_new_rows(session, Tried, rows(range(250, 600)), ["key"]) == {(f"k{k}",) for k in range(300, 600)}
        session.execute(insert(PLAIN), rows(range(0, 600)))
    with engine.connect() as conn:
        tried, plain = (conn.execute(select(t).order_by(t.c.key)).all() for t in (ROWS, PLAIN))
    assert tried == plain  # JSON null stays JSON null, bytes, times to the microsecond


def test_an_upsert_stores_what_a_plain_insert_and_update_store(engine):
    changed = [row | {"n": -row["n"], "doc": {"was": row["doc"]}, "at": T0} for row in rows(range(0, 600, 2))]
    with Session(engine) as session, session.begin():
        upsert(session, Tried, rows(range(400)), ["key"])
        upsert(session, Tried, rows(range(300)) + rows(range(300)), ["key"])  # nothing to update: duplicates pass
        upsert(session, Tried, changed, ["key"], update=["n", "doc", "at"])
        session.execute(insert(PLAIN), rows(range(400)) + [r for r in changed if int(r["key"][1:]) >= 400])
        for row in (r for r in changed if int(r["key"][1:]) < 400):
            session.execute(update(PLAIN).where(PLAIN.c.key == row["key"]).values(n=row["n"], doc=row["doc"], at=T0))
    with engine.connect() as conn:
        tried, plain = (conn.execute(select(t).order_by(t.c.key)).all() for t in (ROWS, PLAIN))
    assert tried == plain and len(tried) == 500


@pytest.mark.parametrize("write", [
    lambda session: insert_new_rows(session, Tried, rows(range(500)), ["key"]),
    lambda session: upsert(session, Tried, rows(range(500)), ["key"], update=["n", "doc"])])
def test_a_batch_on_postgresql_binds_one_parameter(engine, write):
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's statement")
    sent = statements_sent(engine)
    with Session(engine) as session, session.begin():
        write(session)
    assert [len(parameters) for parameters in sent] == [1]  # not 500 x 5


def statements_sent(engine) -> list:
    sent = []
    event.listen(engine, "before_cursor_execute", lambda *args: sent.append(args[3]))
    return sent


def test_each_in_finds_exactly_the_rows_of_the_values(engine):
    with Session(engine) as session, session.begin():
        insert_new_rows(session, Tried, rows(range(0, 1500, 2)), ["key"])
        sent = statements_sent(engine)
        wanted = {f"k{k}" for k in range(0, 1500, 3)} | {"absent", "k1,k2", "'"}
        found = {key for condition in each_in(session, ROWS.c.key, wanted)
                 for key in session.scalars(select(ROWS.c.key).where(condition))}
    assert found == {f"k{k}" for k in range(0, 1500, 6)}
    if engine.dialect.name == "postgresql":
        assert [len(parameters) for parameters in sent] == [1]  # one array, not 503 values
    else:
        assert len(sent) == 2  # lists of up to 500


def test_a_naive_time_is_refused_on_every_backend(engine):
    naive = rows(range(1, 3)) + [{"key": "naive", "n": 0, "doc": None, "at": datetime(2026, 1, 5), "raw": b""}]
    with Session(engine) as session, session.begin(), pytest.raises(Exception, match="naive datetime"):
        upsert(session, Tried, naive, ["key"])


def test_update_each_sets_each_keys_values_as_one_update_a_row_does(engine):
    with Session(engine) as session, session.begin():
        insert_new_rows(session, Tried, rows(range(50)), ["key"])
        session.execute(insert(PLAIN), rows(range(50)))
        changes = {f"k{k}": {"n": -k, "doc": {"k": [k]}, "at": T0} for k in range(0, 60, 3)}  # k51..k57: no row
        update_each(session, ROWS, "key", changes)
        for key, values in changes.items():
            session.execute(update(PLAIN).where(PLAIN.c.key == key).values(**values))
    with engine.connect() as conn:
        tried, plain = (conn.execute(select(t).order_by(t.c.key)).all() for t in (ROWS, PLAIN))
    assert tried == plain and len(tried) == 50


# --- rows without bytes: one JSON document on SQLite too -------------------------------------

TEXTUAL_COLUMNS = lambda: (Column("key", String(64), primary_key=True), Column("n", BigInteger),  # noqa: E731
                           Column("ok", Boolean), Column("x", Float), Column("doc", Json), Column("at", UtcDateTime),
                           Column("note", String(200)))
TEXTUAL = Table("rows_textual", METADATA, *TEXTUAL_COLUMNS())
TEXTUAL_PLAIN = Table("rows_textual_plain", METADATA, *TEXTUAL_COLUMNS())


class Textual:
    __table__ = TEXTUAL



TEXTS = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(TEXTS, min_size=1, max_size=12, unique=True), notes=st.lists(st.none() | TEXTS, min_size=12, max_size=12))
def test_any_text_is_found_and_set_as_itself_through_an_array(engine, keys, notes):
    """On PostgreSQL strings travel as one array literal (`array_literal`): quotes,
    backslashes, braces, commas, "NULL", blanks and empty strings must come back as
    themselves, and None as NULL."""
    with Session(engine) as session, session.begin():
        session.execute(TEXTUAL.delete())
        session.execute(insert(TEXTUAL), [{"key": k} for k in keys])
        found = {key for condition in each_in(session, TEXTUAL.c.key, keys + ["absent"])
                 for key in session.scalars(select(TEXTUAL.c.key).where(condition))}
        update_each(session, TEXTUAL, "key", {k: {"note": note} for k, note in zip(keys, notes)})
        stored = dict(session.execute(select(TEXTUAL.c.key, TEXTUAL.c.note)).all())
    assert found == set(keys) and stored == dict(zip(keys, notes))

def textual_rows(keys) -> list[dict]:
    floats = [1.5, 3.0, -0.0, 1e20, 1 / 3, None]
    notes = ["plain", 'a "quoted" \\ note', "é ü 🎉", "", "null", "12", None]
    return [{"key": f"k{k}", "n": [k, -k, 2 ** 62, None][k % 4], "ok": [True, False, None][k % 3],
             "x": floats[k % len(floats)], "doc": [None, {"k": k, "é": [1.5, "x", None]}, "text", k, [], True][k % 6],
             "at": None if k % 5 == 0 else T0 + timedelta(days=k, microseconds=k), "note": notes[k % len(notes)]}
            for k in keys]


def stored(conn, table) -> list:
    """Each row as the database holds it: on SQLite each value's storage class and text."""
    if conn.dialect.name != "sqlite":
        return conn.execute(select(table).order_by(table.c.key)).all()
    parts = ", ".join(f"typeof({c.name}), quote({c.name})" for c in table.c)
    return conn.exec_driver_sql(f"SELECT {parts} FROM {table.name} ORDER BY key").all()


@pytest.mark.parametrize("write", [
    lambda session, rows: insert_new_rows(session, Textual, rows, ["key"]),
    lambda session, rows: upsert(session, Textual, rows, ["key"]),
    lambda session, rows: (upsert(session, Textual, rows[:50], ["key"]),
                           upsert(session, Textual, rows, ["key"], update=["n", "ok", "x", "doc", "at", "note"])),
    lambda session, rows: insert_rows(session, Textual, rows)])
def test_rows_without_bytes_are_stored_as_an_executemany_stores_them_from_one_parameter(engine, write):
    with Session(engine) as session, session.begin():
        sent = statements_sent(engine)
        write(session, textual_rows(range(300)))
        plain = len(sent)
        session.execute(insert(TEXTUAL_PLAIN), textual_rows(range(300)))
    assert plain and all(len(parameters) == 1 for parameters in sent[:plain])  # each statement one JSON document
    with engine.connect() as conn:
        assert stored(conn, TEXTUAL) == stored(conn, TEXTUAL_PLAIN)
        assert len(stored(conn, TEXTUAL)) == 300


def test_core_rows_reads_what_the_session_holds_unflushed(tmp_path):
    from services.identity.tables import IdentityLink
    from services.runtime.db import Base, core_rows

    engine = make_engine(f"sqlite:///{tmp_path / 'orm.db'}")
    Base.metadata.create_all(engine, tables=[IdentityLink.__table__])
    with Session(engine) as session, session.begin():
        session.add(IdentityLink(type="email", value="a@x.io", profile_id="p", first_message_id="m", component="c"))
        rows = core_rows(session, select(IdentityLink.type, IdentityLink.value, IdentityLink.shared)).all()
    assert [tuple(r) for r in rows] == [("email", "a@x.io", False)]  # flushed first, as Session.execute does
    engine.dispose()


def test_each_in_is_no_per_row_list_search_in_postgresqls_generic_plan(engine):
    """Once psycopg prepares a statement PostgreSQL may plan it for any parameter: a
    `key = ANY(:array)` filter over a table it scans (small, or not analysed yet) then
    compares every row with every value in turn (28 ms for 2,000 rows and 500 values)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's generic plan")
    with Session(engine) as session, session.begin():
        insert_new_rows(session, Tried, rows(range(2000)), ["key"])
        wanted = [f"k{k}" for k in range(0, 2000, 4)]
        [condition] = each_in(session, ROWS.c.key, wanted)
        compiled = select(ROWS.c.n).where(condition).compile(session.connection())
        [name] = compiled.params  # the one array parameter
        plan = prepared_plan(session.connection(), compiled.string, {name: "{" + ",".join(wanted) + "}"})
    assert "ANY" not in plan and ("Hash" in plan or "Index" in plan), plan


GROUPED = Table("rows_grouped", METADATA, Column("id", Integer, primary_key=True),
                Column("grp", String(64), index=True), Column("n", Integer))


def test_update_each_probes_the_keys_index_for_a_few_keys_of_a_large_table(engine):
    """identity relabels a few components of identity_events at a time (~10 rows each): joined
    to a JSON document PostgreSQL guessed 100 changes, so ~1,000 rows, and scanned the table."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's plan")
    with engine.begin() as conn:
        conn.execute(insert(GROUPED), [{"id": i, "grp": f"g{i // 10}", "n": i} for i in range(60_000)])
        conn.exec_driver_sql("ANALYZE rows_grouped")
    statements = []
    listen = lambda conn, cursor, sql, parameters, *_: statements.append((sql, parameters))  # noqa: E731
    event.listen(engine, "before_cursor_execute", listen)
    with Session(engine) as session, session.begin():
        update_each(session, GROUPED, "grp", {f"g{g}": {"n": -g} for g in range(0, 6000, 500)})
        event.remove(engine, "before_cursor_execute", listen)
        [(sql, parameters)] = statements
        literal = {name: values if isinstance(values, str) else "{" + ",".join(map(str, values)) + "}"
                   for name, values in parameters.items()}  # strings are sent as an array literal already
        plans = [prepared_plan(session.connection(), sql, literal, mode)
                 for mode in ("force_generic_plan", "force_custom_plan")]
        assert session.scalar(select(func.count()).where(GROUPED.c.n < 0)) == 110  # eleven groups of ten; g0 is set to -0
    assert all("Seq Scan on rows_grouped" not in plan and "rows_grouped" in plan for plan in plans), plans


def test_postgresql_plans_each_run_of_a_prepared_statement_for_the_tables_size_now(postgres_url):
    """A generic plan made while a table was small scans it as it grows (docs: db.py)."""
    engine = make_engine(postgres_url)
    METADATA.create_all(engine)
    try:
        with engine.connect() as conn:
            sql = "SELECT n FROM rows_tried WHERE key = %(key)s"
            for k in range(12):  # psycopg prepares the statement at its fifth run
                conn.exec_driver_sql(sql, {"key": f"k{k}"}).all()
            generic, custom = conn.exec_driver_sql(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE "
                "'SELECT n FROM rows_tried WHERE key = $1%%'").one()
        assert generic == 0 and custom >= 7  # the runs after its preparation: the default plans 2 of 7 generic
    finally:
        METADATA.drop_all(engine)
        engine.dispose()
