"""The context use case against the real PostgreSQL: bounded reads, recording a window."""

from __future__ import annotations

import asyncpg
import pytest

from adapters.postgres.context_inputs import PostgresContextReader
from adapters.postgres.database import Database
from adapters.postgres.session_repository import PostgresSessions
from adapters.tokenizers import TiktokenCounter
from app.services import sessions as svc
from app.services.context import ContextPorts, ContextRequest, build_context, record_window
from domain.context.errors import ContextBudgetTooSmall
from domain.errors import NotFound, ValidationError

CTX = svc.RequestContext("acme", "test")


async def seeded(db: Database, turns: int) -> ContextPorts:
    repo = PostgresSessions(db)
    counter = TiktokenCounter()
    await svc.create_session(repo, CTX, session_id="s")
    await svc.append_turns(
        repo,
        counter,
        CTX,
        "s",
        [svc.TurnSpec("user" if i % 2 == 0 else "assistant", f"turn {i}") for i in range(turns)],
    )
    return ContextPorts(PostgresContextReader(db), counter, repo.events)


async def test_a_recorded_window_says_what_the_model_was_shown(
    db: Database, raw_conn: asyncpg.Connection
) -> None:
    ports = await seeded(db, 6)
    window = await build_context(
        ports, ContextRequest("acme", "s", "gpt-4o-mini", strategy="sliding_window", budget=60)
    )
    await record_window(ports, "acme", window, {"actor": "proxy", "request_id": "r-1"})
    row = await raw_conn.fetchrow(
        "SELECT data, metadata, stream_version FROM events"
        " WHERE stream_id = 'session:s' AND type = 'ContextAssembled'"
    )
    import json

    data = json.loads(row["data"])
    assert data["model"] == "gpt-4o-mini" and data["strategy"] == "sliding_window"
    assert data["prompt_hash"] == window.prompt_hash
    assert data["used_tokens"] == window.used_tokens <= 60
    shown = [p for s in data["sections"] for p in s["sources"]]
    positions = await raw_conn.fetch(
        "SELECT global_position FROM turns WHERE session_id = 's' ORDER BY seq DESC LIMIT $1",
        len(shown),
    )
    assert sorted(shown) == sorted(r["global_position"] for r in positions)
    assert json.loads(row["metadata"])["request_id"] == "r-1"
    assert row["stream_version"] == 8  # opened, six turns, then the window


async def test_errors(db: Database) -> None:
    ports = await seeded(db, 2)
    with pytest.raises(NotFound):
        await build_context(ports, ContextRequest("acme", "nope", "gpt-4o"))
    with pytest.raises(NotFound):  # tenants do not see each other's sessions
        await build_context(ports, ContextRequest("other", "s", "gpt-4o"))
    with pytest.raises(ContextBudgetTooSmall):
        await build_context(ports, ContextRequest("acme", "s", "gpt-4o", budget=2))
    with pytest.raises(ValidationError, match="unknown model"):
        await build_context(ports, ContextRequest("acme", "s", "gpt-99"))
    with pytest.raises(ValidationError, match="strategy"):
        await build_context(ports, ContextRequest("acme", "s", "gpt-4o", strategy="x"))
