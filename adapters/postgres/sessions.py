"""Queries over the `sessions` projection: lock for a decision, get, list by cursor."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from adapters.postgres.database import Connection
from domain.errors import ValidationError
from domain.read_models import SessionFilter, SessionPage, SessionView

COLUMNS = """tenant_id, session_id, title, user_id, status, metadata, created_at,
    last_activity_at, closed_at, turn_count, tokens_total, cost_total, version"""

GET = f"SELECT {COLUMNS} FROM sessions WHERE tenant_id = $1 AND session_id = $2"
EXISTS = "SELECT 1 FROM sessions WHERE tenant_id = $1 AND session_id = $2"


def view_from_row(row: Any) -> SessionView:
    metadata = row["metadata"]
    return SessionView(
        tenant_id=row["tenant_id"],
        session_id=row["session_id"],
        title=row["title"],
        user_id=row["user_id"],
        status=row["status"],
        metadata=json.loads(metadata) if isinstance(metadata, str) else metadata,
        created_at=row["created_at"],
        last_activity_at=row["last_activity_at"],
        closed_at=row["closed_at"],
        turn_count=row["turn_count"],
        tokens_total=row["tokens_total"],
        cost_total=row["cost_total"],
        version=row["version"],
    )


async def get(conn: Connection, tenant_id: str, session_id: str) -> SessionView | None:
    row = await conn.fetchrow(GET, tenant_id, session_id)
    return view_from_row(row) if row is not None else None


async def exists(conn: Connection, tenant_id: str, session_id: str) -> bool:
    return await conn.fetchval(EXISTS, tenant_id, session_id) is not None


def encode_cursor(created_at: datetime, session_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), session_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, session_id = json.loads(raw)
        return datetime.fromisoformat(created), str(session_id)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            "cursor is not one this API returned; pass next_cursor unchanged", "cursor"
        ) from exc


async def list_page(
    conn: Connection, tenant_id: str, filters: SessionFilter, cursor: str | None, limit: int
) -> SessionPage:
    """Newest first; the cursor is the (created_at, session_id) of the last row seen."""
    where = ["tenant_id = $1"]
    args: list[Any] = [tenant_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if cursor is not None:
        created, session_id = decode_cursor(cursor)
        where.append(f"(created_at, session_id) < ({arg(created)}, {arg(session_id)})")
    if filters.status is not None:
        where.append(f"status = {arg(filters.status)}")
    if filters.user_id is not None:
        where.append(f"user_id = {arg(filters.user_id)}")
    if filters.created_after is not None:
        where.append(f"created_at >= {arg(filters.created_after)}")
    if filters.created_before is not None:
        where.append(f"created_at < {arg(filters.created_before)}")
    if filters.active_after is not None:
        where.append(f"last_activity_at >= {arg(filters.active_after)}")
    if filters.active_before is not None:
        where.append(f"last_activity_at < {arg(filters.active_before)}")
    sql = (
        f"SELECT {COLUMNS} FROM sessions WHERE {' AND '.join(where)} "
        f"ORDER BY created_at DESC, session_id DESC LIMIT {arg(limit + 1)}"
    )
    rows = await conn.fetch(sql, *args)
    items = [view_from_row(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor(last.created_at, last.session_id)
    return SessionPage(items, next_cursor)
