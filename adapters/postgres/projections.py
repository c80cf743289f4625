"""The `sessions` and `turns` projections, applied in the transaction of the append.

`fold` is a plain function from a stream's events to the row changes they make; `apply`
writes those changes in at most two statements. Each sessions row keeps the last stream
version it applied (`version`), so applying an event twice changes nothing, and a
rebuild (`replay`) runs the very same code over the whole log.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from adapters.postgres.database import Connection
from domain.events import RecordedEvent, SessionClosed, SessionOpened
from domain.session import turn_fields

SESSION_PREFIX = "session:"

INSERT_SESSION = """INSERT INTO sessions (tenant_id, session_id, title, user_id, status,
        metadata, created_at, last_activity_at, version)
    VALUES ($1, $2, $3, $4, 'open', $5::jsonb, $6, $6, $7) ON CONFLICT DO NOTHING"""

# Moves the session's counters and inserts its new turns, numbered after the turns it had.
UPDATE_SESSION_AND_TURNS = """WITH s AS (
    UPDATE sessions SET version = $3, turn_count = turn_count + $4,
        tokens_total = tokens_total + $5, cost_total = cost_total + $6::numeric,
        last_activity_at = $7, status = coalesce($8, status),
        closed_at = coalesce($9, closed_at)
    WHERE tenant_id = $1 AND session_id = $2 AND version < $3
    RETURNING turn_count - $4 AS base)
INSERT INTO turns (tenant_id, session_id, seq, stream_version, global_position, event_id,
                   role, content, name, tokens, created_at)
SELECT $1, $2, s.base + t.ord, t.v, t.pos, t.eid, t.role, t.content, t.name, t.tokens, t.at
FROM s, unnest($10::int[], $11::bigint[], $12::uuid[], $13::text[], $14::text[],
               $15::text[], $16::int[], $17::timestamptz[])
     WITH ORDINALITY AS t(v, pos, eid, role, content, name, tokens, at, ord)"""


@dataclass
class SessionChange:
    """What one batch of a session's events does to its rows."""

    tenant_id: str
    session_id: str
    opened: dict[str, Any] | None = None
    opened_version: int = 0
    version: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)
    last_activity_at: datetime | None = None
    status: str | None = None
    closed_at: datetime | None = None
    turns: list[tuple[Any, ...]] = field(default_factory=list)


def fold(events: Sequence[RecordedEvent]) -> SessionChange:
    """The row changes of consecutive events of one session stream."""
    first = events[0]
    change = SessionChange(first.tenant_id, first.stream_id[len(SESSION_PREFIX) :])
    for event in events:
        if event.type == SessionOpened.type_name:
            change.opened = {**event.data, "recorded_at": event.recorded_at}
            change.opened_version = event.stream_version
            continue
        change.version = event.stream_version
        change.last_activity_at = event.recorded_at
        turn = turn_fields(event.type, event.data)
        if turn is not None:
            change.tokens += turn["tokens"]
            # Decimal(str(x)) keeps the cost the client sent, not its binary expansion.
            change.cost += Decimal(str(turn["cost"]))
            change.turns.append(
                (
                    event.stream_version,
                    event.global_position,
                    event.event_id,
                    turn["role"],
                    turn["content"],
                    turn["name"],
                    turn["tokens"],
                    event.recorded_at,
                )
            )
        elif event.type == SessionClosed.type_name:
            change.status = "closed"
            change.closed_at = event.recorded_at
    return change


def group_by_stream(events: Iterable[RecordedEvent]) -> list[list[RecordedEvent]]:
    """Runs of consecutive events of the same session stream, in the order given."""
    groups: list[list[RecordedEvent]] = []
    for event in events:
        if not event.stream_id.startswith(SESSION_PREFIX):
            continue
        last = groups[-1] if groups else None
        if last and last[0].tenant_id == event.tenant_id and last[0].stream_id == event.stream_id:
            last.append(event)
        else:
            groups.append([event])
    return groups


async def apply_change(conn: Connection, change: SessionChange) -> None:
    if change.opened is not None:
        opened = change.opened
        await conn.execute(
            INSERT_SESSION,
            change.tenant_id,
            change.session_id,
            opened.get("title"),
            opened.get("user_id"),
            json.dumps(opened.get("metadata") or {}),
            opened["recorded_at"],
            change.opened_version,
        )
    if change.version == 0:
        return
    turns = change.turns
    await conn.execute(
        UPDATE_SESSION_AND_TURNS,
        change.tenant_id,
        change.session_id,
        change.version,
        len(turns),
        change.tokens,
        str(change.cost),
        change.last_activity_at,
        change.status,
        change.closed_at,
        [t[0] for t in turns],
        [t[1] for t in turns],
        [t[2] for t in turns],
        [t[3] for t in turns],
        [t[4] for t in turns],
        [t[5] for t in turns],
        [t[6] for t in turns],
        [t[7] for t in turns],
    )


async def apply(conn: Connection, events: Iterable[RecordedEvent]) -> None:
    """Project `events` (in stream order) into sessions and turns."""
    for group in group_by_stream(events):
        await apply_change(conn, fold(group))
