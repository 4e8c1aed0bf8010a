"""Planner statistics kept fresh while tables grow fast (PostgreSQL).

PostgreSQL's autovacuum analyses a table at most once a minute. A young table (a new
deployment, a benchmark, a replay's copies) grows several times over in that minute, and
plans made from its old statistics scan it whole for a few ids: with 25,000 rows the profile
service's look-up of 100 messageIds hash-joined every row, its statistics saying 3,240.
The projector loop calls `refresh_if_due` after its commits: tables of its schema that grew
by half since they were last analysed (and by `MIN_CHANGES` rows) are analysed now. Rows
updated in place don't count: a table of profiles updated every batch keeps its size and its
spread of keys, and analysing it every few seconds cost more than a tenth of PostgreSQL's
statement time under load (autovacuum still analyses it as it always did).
"""
from __future__ import annotations

import logging
import time

from sqlalchemy import text
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

EVERY_S = 5.0  # how often a process looks
GROWTH = 0.5  # rows gained since the last ANALYZE, as a share of the rows it counted
MIN_CHANGES = 1000

GROWN = text("""
    SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.schemaname = coalesce(:schema, current_schema())
      AND s.n_live_tup > (1 + :growth) * greatest(c.reltuples, 0) + :least
    ORDER BY s.relname""")


class TableStatistics:
    def __init__(self, engine: Engine, every_s: float = EVERY_S):
        self.engine, self.every_s = engine, every_s
        self.enabled = engine.dialect.name == "postgresql"
        # a replay's projector writes a copy schema through the map (runtime/replay.py)
        self.schema = (engine.get_execution_options().get("schema_translate_map") or {}).get(None)
        self.looked_at = 0.0

    def refresh_if_due(self) -> list[str]:
        """Analyse the tables that grew; answers their names. Never raises: fresher plans
        are an optimisation, and autovacuum gets there within a minute anyway."""
        if not self.enabled or time.monotonic() - self.looked_at < self.every_s:
            return []
        self.looked_at = time.monotonic()
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                grown = list(conn.execute(GROWN, {"schema": self.schema, "growth": GROWTH,
                                                  "least": MIN_CHANGES}).scalars())
                schema = f'"{self.schema}".' if self.schema else ""
                for table in grown:  # SKIP_LOCKED: autovacuum or another process is at it
                    conn.exec_driver_sql(f'ANALYZE (SKIP_LOCKED) {schema}"{table}"')
            return grown
        except Exception:
            logger.warning("analysing grown tables failed", exc_info=True)
            return []
