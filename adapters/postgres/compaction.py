"""Queries the compaction jobs run: which sessions need a summary or are idle, and the
turns and summaries a summary is made from. All bounded by LIMITs and indexes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.postgres.database import Connection

# A sequential scan of `sessions` (not of events); an index on version would cost every
# append its HOT update. LIMIT bounds each run; the next run takes the rest.
NEEDS_SUMMARY = """SELECT tenant_id, session_id, version, summarized_to_version
    FROM sessions
    WHERE status = 'open' AND version - summarized_to_version > $1
    ORDER BY last_activity_at LIMIT $2"""
IDLE = """SELECT tenant_id, session_id, version, summarized_to_version
    FROM sessions
    WHERE status = 'open' AND last_activity_at < $1
      AND (compacted_at IS NULL OR compacted_at < last_activity_at)
    ORDER BY last_activity_at LIMIT $2"""
# The stream version of the `keep`-th newest turn: turns from it on stay verbatim (the
# recent window); everything before it may be summarized.
KEEP_FROM = """SELECT stream_version FROM turn_rows
    WHERE tenant_id = $1 AND session_id = $2
    ORDER BY seq DESC OFFSET $3 - 1 LIMIT 1"""
TURNS_BETWEEN = """SELECT stream_version, role, name, content, created_at FROM turns
    WHERE tenant_id = $1 AND session_id = $2 AND stream_version BETWEEN $3 AND $4
    ORDER BY seq LIMIT $5"""


@dataclass(frozen=True)
class SessionRef:
    tenant_id: str
    session_id: str
    version: int
    summarized_to_version: int


def _refs(rows: Any) -> list[SessionRef]:
    return [
        SessionRef(r["tenant_id"], r["session_id"], r["version"], r["summarized_to_version"])
        for r in rows
    ]


async def sessions_needing_summary(conn: Connection, min_new: int, limit: int) -> list[SessionRef]:
    return _refs(await conn.fetch(NEEDS_SUMMARY, min_new, limit))


async def idle_sessions(conn: Connection, before: datetime, limit: int) -> list[SessionRef]:
    return _refs(await conn.fetch(IDLE, before, limit))


async def keep_from_version(conn: Connection, tenant: str, session: str, keep: int) -> int | None:
    """The version of the oldest turn to keep verbatim, or None if the session has fewer
    than `keep` turns."""
    version = await conn.fetchval(KEEP_FROM, tenant, session, keep)
    return int(version) if version is not None else None


async def turns_between(
    conn: Connection, tenant: str, session: str, first: int, last: int, limit: int
) -> list[Any]:
    return list(await conn.fetch(TURNS_BETWEEN, tenant, session, first, last, limit))
