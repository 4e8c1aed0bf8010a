"""Throwaway PostgreSQL databases for one benchmark run."""
from __future__ import annotations

import uuid

import sqlalchemy


def fresh_database(server_url: str) -> str:
    """A new empty database on the server; answers its URL."""
    name = f"rapport_bench_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return sqlalchemy.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    parsed = sqlalchemy.make_url(url)
    admin = sqlalchemy.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    admin.dispose()
