"""Loads what the context engine needs for one session, in a bounded number of rows read
through indexes: the newest turns, the newest summary, and the turns around candidates.
Nothing here reads the whole history (except for the `full` strategy, capped)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from adapters.postgres import search
from adapters.postgres.database import Connection, Database
from adapters.postgres.session_tails import SessionTails
from domain.context.inputs import Candidate, Summary, Turn
from domain.context.ports import SessionFacts
from domain.context.window import ToolCallRef

# A session's newest summary: for NEWEST_SUMMARY, and inside SESSION (the window needs
# both, and reads them together).
_NEWEST_SUMMARY_OF = """SELECT level, from_version, to_version, text, tokens, global_position
    FROM summaries WHERE tenant_id = {tenant} AND session_id = {session}
    ORDER BY to_version DESC, level DESC LIMIT 1"""
SESSION = f"""SELECT s.user_id, s.version, s.turn_count, s.status,
        s.metadata->>'context_strategy' AS context_strategy,
        s.metadata->>'context_budget' AS context_budget,
        sm.level, sm.from_version, sm.to_version, sm.text, sm.tokens, sm.global_position
    FROM sessions s
    LEFT JOIN LATERAL ({_NEWEST_SUMMARY_OF.format(tenant="s.tenant_id", session="s.session_id")}
    ) sm ON true
    WHERE s.tenant_id = $1 AND s.session_id = $2"""
# The `turns` view's columns, each turn's event fetched in a LATERAL ... LIMIT 1 (a
# nested loop whatever the statistics say) by every column of all three unique keys of
# `events`, so that any index the planner picks finds it in one probe. Before the first
# ANALYZE of a young table the planner cannot tell the indexes apart: joined on
# (tenant_id, global_position) it probed another unique index by tenant alone and
# filtered the rest, ~150 buffers a turn: 10-20 ms for 200 turns at 1,000 events,
# growing with the log until autovacuum analyzed it.
_EVENT_OF_TURN = """CROSS JOIN LATERAL (
        SELECT ev.data FROM events ev
        WHERE ev.tenant_id = t.tenant_id AND ev.global_position = t.global_position
          AND ev.stream_id = 'session:' || t.session_id
          AND ev.stream_version = t.stream_version AND ev.event_id = t.event_id
        LIMIT 1) e"""
_TURN_SELECT = """t.seq, t.stream_version, t.global_position, t.role,
        coalesce(e.data->>'content', '') AS content, t.tokens, t.created_at, t.name,
        e.data->>'tool_call_id' AS tool_call_id, e.data->'tool_calls' AS tool_calls"""
# $4: only turns numbered after it (0: any), the rest a kept tail already holds.
NEWEST_TURNS = f"""SELECT {_TURN_SELECT}
    FROM (SELECT * FROM turn_rows WHERE tenant_id = $1 AND session_id = $2 AND seq > $4
          ORDER BY seq DESC LIMIT $3) t
    {_EVENT_OF_TURN}
    ORDER BY t.seq DESC"""
NEWEST_SUMMARY = _NEWEST_SUMMARY_OF.format(tenant="$1", session="$2")


def turn_from_row(row: Any, session_id: str | None = None) -> Turn:
    return Turn(
        session_id=session_id,
        seq=row["seq"],
        stream_version=row["stream_version"],
        global_position=row["global_position"],
        role=row["role"],
        content=row["content"],
        tokens=row["tokens"],
        created_at=row["created_at"],
        name=row["name"],
        tool_call_id=row["tool_call_id"],
        tool_calls=tool_call_refs(row["tool_calls"]),
    )


def tool_call_refs(value: Any) -> tuple[ToolCallRef, ...]:
    """An assistant turn's tool calls as recorded: flat ({id, name, arguments}, as the
    proxy records them) or in OpenAI's shape ({id, function: {name, arguments}})."""
    if not isinstance(value, list):
        return ()
    out = []
    for call in value:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        fn: dict[str, Any] = function if isinstance(function, dict) else call
        arguments = fn.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        out.append(ToolCallRef(str(call.get("id", "")), str(fn.get("name", "")), arguments))
    return tuple(out)


async def session_row(conn: Connection, tenant_id: str, session_id: str) -> Any:
    return await conn.fetchrow(SESSION, tenant_id, session_id)


async def newest_turns(
    conn: Connection, tenant_id: str, session_id: str, limit: int, after_seq: int = 0
) -> list[Turn]:
    """The newest `limit` turns numbered after `after_seq`, newest first."""
    rows = await conn.fetch(NEWEST_TURNS, tenant_id, session_id, limit, after_seq)
    return [turn_from_row(r) for r in rows]


async def newest_summary(conn: Connection, tenant_id: str, session_id: str) -> Summary | None:
    return summary_from_row(await conn.fetchrow(NEWEST_SUMMARY, tenant_id, session_id))


def summary_from_row(row: Any) -> Summary | None:
    if row is None or row["text"] is None:
        return None
    return Summary(
        text=row["text"],
        tokens=row["tokens"],
        level=row["level"],
        from_version=row["from_version"],
        to_version=row["to_version"],
        global_position=row["global_position"],
    )


class PostgresContextReader:
    """app.services.context.ContextReader on PostgreSQL."""

    def __init__(self, db: Database, *, k_vector: int = 30, k_text: int = 30) -> None:
        self.db = db
        self.k_vector = k_vector
        self.k_text = k_text
        self.common_terms = search.CommonTerms()
        self.table_rows = search.TableRows()
        self.tails = SessionTails()

    async def session(self, tenant_id: str, session_id: str) -> SessionFacts | None:
        async with self.db.connection() as conn:
            row = await session_row(conn, tenant_id, session_id)
        if row is None:
            return None
        budget = row["context_budget"]
        return SessionFacts(
            row["user_id"],
            row["version"],
            row["turn_count"],
            context_strategy=row["context_strategy"],
            context_budget=int(budget) if budget and budget.isdigit() else None,
            summary=summary_from_row(row),
            has_summary=True,
        )

    async def newest_turns(
        self, tenant_id: str, session_id: str, limit: int, known_count: int | None = None
    ) -> list[Turn]:
        async def fetch(after_seq: int, limit: int) -> list[Turn]:
            async with self.db.connection() as conn:
                return await newest_turns(conn, tenant_id, session_id, limit, after_seq)

        return await self.tails.newest(tenant_id, session_id, limit, fetch, known_count)

    def _hnsw_connection(self) -> AbstractAsyncContextManager[Connection]:
        return self.db.connection(search.HNSW_CANDIDATES_SETTINGS)

    def known_turn_count(self, tenant_id: str, session_id: str) -> int | None:
        return self.tails.newest_seq(tenant_id, session_id)

    async def newest_summary(self, tenant_id: str, session_id: str) -> Summary | None:
        async with self.db.connection() as conn:
            return await newest_summary(conn, tenant_id, session_id)

    async def candidates(
        self,
        tenant_id: str,
        session_id: str,
        *,
        query_embedding: Sequence[float] | Awaitable[Sequence[float]] | None,
        query_text: str,
        before_version: int,
        user_id: str | None,
        session_turns: int | None = None,
    ) -> list[Candidate]:
        if query_embedding is None:
            return []
        async with self.db.connection() as conn:
            sizes = None
            if user_id is None and session_turns is not None:  # no need to count
                sizes = (session_turns, await self.table_rows.get(conn))
            found = await search.session_candidates(
                conn, tenant_id, session_id, query_embedding, query_text, before_version,
                self.k_vector, self.k_text, user_scope=user_id,
                common_terms=await self.common_terms.get(conn), sizes=sizes,
                hnsw_connection=self._hnsw_connection,
            )  # fmt: skip
        out = []
        for c in found:
            # A turn of the user's other sessions says so (its seq is another session's).
            other = c.session_id if c.session_id != session_id else None
            turn = Turn(
                seq=c.seq,
                stream_version=c.stream_version,
                global_position=c.global_position,
                role=c.role,
                content=c.content,
                tokens=c.tokens,
                created_at=c.created_at,
                session_id=other,
            )
            # The other half of its question/answer pair (the neighbouring seq).
            partner = turn_from_row(c.partner, other) if c.partner is not None else None
            if partner is not None and other is None and partner.stream_version >= before_version:
                partner = None  # the recent window's business, not retrieval's
            out.append(
                Candidate(
                    turn=turn,
                    vector_rank=c.vector_rank,
                    text_rank=c.text_rank,
                    embedding=c.embedding,
                    partner=partner,
                )
            )
        return out
