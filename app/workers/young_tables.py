"""Statistics for tables while they are young: ANALYZE run by the worker that watches
them grow, instead of waiting for autovacuum.

PostgreSQL plans from a table's statistics, and a table that was never analyzed plans
as if it were tiny. Autovacuum analyzes at most once a naptime (1 min by default); on a
new database its first pass came ~40 s into a load. Until then two kinds of plan went
wrong here, and both cost more with every row:

- retrieval (turn_embeddings): the vector plan chosen by a size it did not know, and
  every common word's postings searched (8.5 ms instead of 0.5 for a 2,400-turn session);
- the appends' projection (events, sessions, turn_rows): `cg_project_session` keeps
  generic plans, made at a connection's first append. Made on empty tables, they read
  the new events through the (tenant_id, event_id) key, every event of the tenant
  filtered by stream, and found the session's row by a skip scan of sessions_by_created:
  two scans that grow with the tenant. With a stateless load on a new database that was
  41% of PostgreSQL's CPU (perf, 20,000 calls in), until autovacuum's first ANALYZE
  made the plans index lookups again. ANALYZE invalidates the cached plans that read a
  table, so the next append plans again from the statistics.

So the worker analyzes a young table once ANALYZE_MIN_ROWS rows and a share of its size
(`growth`) arrived since the last time, while it holds fewer than YOUNG_TABLE_ROWS; past
that size, autovacuum's own 10% rule comes often enough. An ANALYZE samples at most 30,000
rows a table: ~25 ms at 6,000 rows, ~0.1 s at most. Retrieval reads turn_embeddings'
size and common terms, so that table is analyzed every 25% of growth; the log's tables
need statistics only to make the appends' plans index lookups, which the first ANALYZE
does, so they are analyzed every 5x (at 200, 1,000, 5,000, 25,000 events): each ANALYZE
of the three took ~30-80 ms of PostgreSQL's CPU, which a 25% rule spent ~20 times over
a stateless benchmark's first 40,000 events.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("contextgate.statistics")

ANALYZE_MIN_ROWS = 200
ANALYZE_GROWTH = 0.25  # turn_embeddings: what retrieval reads of it follows its size
LOG_GROWTH = 4.0  # the log's tables: their first statistics are what the plans need
YOUNG_TABLE_ROWS = 100_000


class YoungTable:
    """One ANALYZE statement (of one table or several that grow together) and the table
    whose size (`pg_class.reltuples`, -1 before the first ANALYZE) measures their growth.
    `grew(n)` counts the rows that arrived since; `maybe_analyze(conn)` runs the statement
    when due. A role that may not analyze (neither the owner nor, from PostgreSQL 17,
    granted MAINTAIN by the migrations) gets a warning and no statistics: autovacuum's
    job, then."""

    def __init__(self, tables: tuple[str, ...], growth: float | None = None) -> None:
        self.tables = tables
        self.growth = growth  # None: ANALYZE_GROWTH (read when due, so tests may set it)
        self.statement = "ANALYZE " + ", ".join(tables)
        self.rows_query = f"SELECT reltuples FROM pg_class WHERE oid = '{tables[0]}'::regclass"
        self.since = 0  # rows that arrived since the last ANALYZE (or the start)
        self.rows: float | None = None  # the table's rows as of then (None: unread)
        self.runs = 0  # ANALYZEs run (for metrics and tests)

    def grew(self, rows: int) -> None:
        self.since += rows

    async def maybe_analyze(self, conn: Any) -> bool:
        if self.since < ANALYZE_MIN_ROWS:
            return False
        if self.rows is None:
            self.rows = max(0.0, float(await conn.fetchval(self.rows_query) or 0))
        growth = ANALYZE_GROWTH if self.growth is None else self.growth
        if self.rows >= YOUNG_TABLE_ROWS or self.since < growth * self.rows:
            return False
        started = time.perf_counter()
        await conn.execute(self.statement)
        self.rows = max(0.0, float(await conn.fetchval(self.rows_query) or 0))
        self.since = 0
        self.runs += 1
        log.debug(
            "analyzed %s (%.0f rows) in %.0f ms",
            ", ".join(self.tables), self.rows, (time.perf_counter() - started) * 1000,
        )  # fmt: skip
        return True
