"""Reads for audits and rebuilds: every stream in order with its head, and the
projection rebuild (`contextgate replay`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from adapters.postgres import usage
from adapters.postgres.database import Database
from adapters.postgres.event_store import record_from_row
from domain.events import RecordedEvent

# Every stream's events in version order, each with its stream head (NULL if missing).
ALL_STREAMS = """SELECT e.global_position, e.transaction_id::text::bigint AS transaction_id,
        e.event_id, e.tenant_id, e.stream_id, e.stream_version, e.type, e.schema_version,
        e.data, e.metadata, e.recorded_at, e.prev_hash, e.hash,
        s.version AS head_version, s.head_hash
    FROM events e LEFT JOIN streams s USING (tenant_id, stream_id)
    ORDER BY e.tenant_id, e.stream_id, e.stream_version"""
HEADS_WITHOUT_EVENTS = """SELECT tenant_id, stream_id, version FROM streams s
    WHERE version > 0 AND NOT EXISTS (
        SELECT 1 FROM events e WHERE e.tenant_id = s.tenant_id AND e.stream_id = s.stream_id)
    ORDER BY tenant_id, stream_id LIMIT 1"""

REPROJECT_SESSIONS = """SELECT cg_project_session(tenant_id, stream_id, 1, version)
    FROM (SELECT tenant_id, stream_id, version FROM streams
          WHERE stream_id LIKE 'session:%' ORDER BY tenant_id, stream_id) s"""
COUNT_SESSION_EVENTS = "SELECT count(*) FROM events WHERE stream_id LIKE 'session:%'"
LAST_POSITION = """SELECT transaction_id::text AS transaction_id, global_position FROM events
    ORDER BY transaction_id DESC, global_position DESC LIMIT 1"""
COUNT_CALLS = "SELECT coalesce(sum(calls), 0)::bigint FROM usage_daily"
SAVE_CHECKPOINT = """INSERT INTO projection_checkpoints (name, transaction_id, global_position)
    VALUES ($1, $2::text::xid8, $3)
    ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id,
        global_position = EXCLUDED.global_position, updated_at = now()"""


@dataclass(frozen=True)
class Head:
    version: int | None
    hash: bytes | None


class PostgresAuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def streams_in_order(self) -> AsyncIterator[tuple[RecordedEvent, Head]]:
        """Every event, ordered by tenant, stream and version, with its stream's head.
        One snapshot (REPEATABLE READ), read through a cursor in batches."""
        async with (
            self.db.connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            async for row in conn.cursor(ALL_STREAMS, prefetch=2000):
                head_hash = row["head_hash"]
                yield (
                    record_from_row(row),
                    Head(row["head_version"], bytes(head_hash) if head_hash else None),
                )

    async def orphan_head(self) -> tuple[str, str, int] | None:
        """A stream head that claims events the log does not have, if any."""
        async with self.db.connection() as conn:
            row = await conn.fetchrow(HEADS_WITHOUT_EVENTS)
        return (row["tenant_id"], row["stream_id"], row["version"]) if row else None


async def rebuild_projections(db: Database, *, usage_batch: int = 5_000) -> dict[str, Any]:
    """Empty every projection and build it again from the log, in one transaction:
    `sessions` and `turns` by projecting every session stream with the same SQL function
    the appends run, the usage per day by folding every answer again from the start
    (`cg_project_usage`, in batches). Appends and the usage worker wait on the locks
    until it commits, then go on from the rebuilt rows and checkpoints."""
    async with db.transaction() as conn:
        # The usage checkpoint's row first, then its table: the order cg_project_usage
        # takes them in, so a usage worker running meanwhile waits instead of deadlocking.
        await conn.execute(SAVE_CHECKPOINT, "usage", "0", 0)
        await conn.execute(
            "LOCK TABLE sessions, turn_rows, summary_rows, usage_daily IN ACCESS EXCLUSIVE MODE"
        )
        await conn.execute("TRUNCATE sessions, turn_rows, summary_rows, usage_daily")
        streams = len(await conn.fetch(REPROJECT_SESSIONS))
        events = await conn.fetchval(COUNT_SESSION_EVENTS)
        last = await conn.fetchrow(LAST_POSITION)
        if last is not None:
            for name in ("sessions", "turns", "summaries"):
                await conn.execute(
                    SAVE_CHECKPOINT, name, last["transaction_id"], last["global_position"]
                )
        while await conn.fetchval(usage.CATCH_UP, usage_batch) == usage_batch:
            pass
        calls = await conn.fetchval(COUNT_CALLS)
    return {"events": events, "sessions": streams, "calls": calls}
