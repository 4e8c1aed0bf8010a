"""`pairs_in`: the pairs' rows, found through the table's index on SQLite as well."""
from hypothesis import given, settings, strategies as st
from sqlalchemy import create_engine, insert, select, text, tuple_

from services.identity.tables import IdentityLink
from services.runtime.db import pairs_in

LINKS = IdentityLink.__table__
KNOWN = [(t, f"{t}-{n}") for t in ("email", "phone", "user_id") for n in range(300)]


def _engine():
    engine = create_engine("sqlite://")
    LINKS.create(engine)
    with engine.begin() as conn:
        conn.execute(insert(LINKS), [{"type": t, "value": v, "profile_id": v, "component": v,
                                      "first_message_id": "m", "shared": False, "first_at": ""} for t, v in KNOWN])
    return engine


ENGINE = _engine()
pair = st.tuples(st.sampled_from(["email", "phone", "user_id", "anonymous_id"]),
                 st.sampled_from([v for _, v in KNOWN] + ["x", ""]))


@settings(max_examples=200, deadline=None)
@given(st.lists(pair, max_size=30))
def test_pairs_in_finds_exactly_the_rows_of_the_pairs(pairs):
    with ENGINE.connect() as conn:
        found = set(conn.execute(select(LINKS.c.type, LINKS.c.value).where(
            pairs_in(LINKS.c.type, LINKS.c.value, pairs))))
    assert found == set(pairs) & set(KNOWN)


def _plan(condition) -> str:
    statement = select(LINKS.c.component).where(condition)
    with ENGINE.connect() as conn:
        compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
        return " ".join(row[-1] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))


def test_sqlite_searches_the_index_where_a_row_value_in_scans_the_table():
    pairs = KNOWN[:3] + KNOWN[400:402]
    assert "SCAN identity_links" in _plan(tuple_(LINKS.c.type, LINKS.c.value).in_(pairs))  # why pairs_in exists
    plan = _plan(pairs_in(LINKS.c.type, LINKS.c.value, pairs))
    assert "SCAN identity_links" not in plan and "SEARCH identity_links" in plan
