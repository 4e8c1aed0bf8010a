"""`pairs_in`: exactly the pairs' rows, found through the table's index, on SQLite and
PostgreSQL; on PostgreSQL one statement text whatever the number of pairs."""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import event, insert, select, text, tuple_
from sqlalchemy.orm import Session

from services.identity.tables import IdentityLink
from services.runtime.db import make_engine, pairs_in

LINKS = IdentityLink.__table__
KNOWN = [(t, f"{t}-{n}") for t in ("email", "phone", "user_id") for n in range(300)]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def engine(request):
    url = "sqlite://" if request.param == "sqlite" else request.getfixturevalue("module_postgres_url")
    engine = make_engine(url)
    LINKS.create(engine, checkfirst=True)
    with engine.begin() as conn:
        conn.execute(LINKS.delete())
        conn.execute(insert(LINKS), [{"type": t, "value": v, "profile_id": v, "component": v,
                                      "first_message_id": "m", "shared": False, "first_at": ""} for t, v in KNOWN])
        if request.param == "postgres":
            conn.execute(text("ANALYZE identity_links"))
    yield engine
    engine.dispose()


pair = st.tuples(st.sampled_from(["email", "phone", "user_id", "anonymous_id"]),
                 st.sampled_from([v for _, v in KNOWN] + ["x", ""]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(pair, max_size=30))
def test_pairs_in_finds_exactly_the_rows_of_the_pairs(engine, pairs):
    with Session(engine) as session:
        found = set(session.execute(select(LINKS.c.type, LINKS.c.value).where(
            pairs_in(session, LINKS.c.type, LINKS.c.value, pairs))))
    assert found == set(pairs) & set(KNOWN)


def _plan(engine, condition) -> str:
    with Session(engine) as session:
        statement = select(LINKS.c.component).where(condition(session))
        if engine.dialect.name == "sqlite":
            compiled = statement.compile(session.connection(), compile_kwargs={"literal_binds": True})
            return " ".join(row[-1] for row in session.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
        session.execute(text("SET LOCAL enable_seqscan = off"))  # a few rows: can the index answer?
        compiled = statement.compile(session.connection())
        return " ".join(row[0] for row in session.connection().exec_driver_sql(
            f"EXPLAIN {compiled.string}", compiled.params))


def test_the_index_is_searched_where_a_row_value_in_scans_the_table_on_sqlite(engine):
    pairs = KNOWN[:3] + KNOWN[400:402]
    plan = _plan(engine, lambda session: pairs_in(session, LINKS.c.type, LINKS.c.value, pairs))
    if engine.dialect.name == "sqlite":
        assert "SCAN identity_links" in _plan(engine, lambda _: tuple_(LINKS.c.type, LINKS.c.value).in_(pairs))
        assert "SCAN identity_links" not in plan and "SEARCH identity_links" in plan
    else:
        assert "Seq Scan on identity_links" not in plan and "pk_identity_links" in plan


def test_one_statement_text_whatever_the_number_of_pairs_on_postgresql(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's statement")
    sent = []
    event.listen(engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    with Session(engine) as session:
        for size in (1, 7, 400):
            session.execute(select(LINKS.c.component).where(
                pairs_in(session, LINKS.c.type, LINKS.c.value, KNOWN[:size]))).all()
    assert len(sent) == 3 and len(set(sent)) == 1
