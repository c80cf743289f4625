"""The context use case against the real PostgreSQL: bounded reads, recording a window."""

from __future__ import annotations

import json

import asyncpg
import pytest

from adapters.postgres.context_inputs import NEWEST_TURNS, PostgresContextReader
from adapters.postgres.database import Database
from adapters.postgres.session_repository import PostgresSessions
from adapters.tokenizers import TiktokenCounter
from app.services import sessions as svc
from app.services.context import (
    WHOLE_SESSION_NOTE,
    ContextPorts,
    ContextRequest,
    build_context,
    record_window,
)
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


class CountingEmbedder:
    """Counts query embeddings; the vectors are constant (the search is not the point)."""

    def __init__(self) -> None:
        self.calls = 0

    async def embed_query(self, text: str) -> list[float]:
        self.calls += 1
        return [1.0] + [0.0] * 383


async def test_a_session_that_fits_whole_needs_no_retrieval(db: Database) -> None:
    seeded_ports = await seeded(db, 6)
    embedder = CountingEmbedder()
    ports = ContextPorts(seeded_ports.reader, seeded_ports.counter, seeded_ports.events, embedder)
    roomy = await build_context(ports, ContextRequest("acme", "s", "gpt-4o-mini", budget=4000))
    assert embedder.calls == 0
    assert roomy.notes[-1] == WHOLE_SESSION_NOTE
    recent = roomy.section("recent")
    assert recent is not None and len(recent.messages) == 5  # every turn before the current
    # A budget too small for the whole session: the query is embedded and searched.
    tight = await build_context(ports, ContextRequest("acme", "s", "gpt-4o-mini", budget=40))
    assert embedder.calls == 1 and WHOLE_SESSION_NOTE not in tight.notes
    # The same with a query given (its vector starts at once): cancelled when unneeded.
    asked = await build_context(
        ports, ContextRequest("acme", "s", "gpt-4o-mini", budget=4000, query="turn 3?")
    )
    assert asked.notes[-1] == WHOLE_SESSION_NOTE
    # With the caller's facts showing every turn is loaded (the proxy's case), it is not
    # started at all: a vector cancelled here would still be computed on the model's
    # thread, and under load those queued up ahead of the vectors windows do need.
    facts = await seeded_ports.reader.session("acme", "s")
    calls = embedder.calls
    known = await build_context(
        ports,
        ContextRequest("acme", "s", "gpt-4o-mini", budget=4000, query="turn 6?", facts=facts),
    )
    assert known.notes[-1] == WHOLE_SESSION_NOTE and embedder.calls == calls
    # The same facts with a budget too small: the vector is computed when needed.
    needed = await build_context(
        ports,
        ContextRequest("acme", "s", "gpt-4o-mini", budget=40, query="turn 6?", facts=facts),
    )
    assert WHOLE_SESSION_NOTE not in needed.notes and embedder.calls == calls + 1


async def test_a_window_built_while_its_turn_is_stored_shows_that_turn_once(
    db: Database,
) -> None:
    """The proxy builds the window while it appends the new turn, with the session as
    read before: whether the read sees the turn already or not, it is the current
    message, once, and not history."""
    ports = await seeded(db, 5)  # opened (version 1), turns 0-4 at versions 2-6
    facts = await ports.reader.session("acme", "s")
    assert facts is not None and (facts.version, facts.turn_count) == (6, 5)
    # The append lands before the window's reads (the race the proxy allows).
    await svc.append_turns(
        PostgresSessions(db), ports.counter, CTX, "s", [svc.TurnSpec("user", "turn 5")]
    )
    window = await build_context(
        ports,
        ContextRequest(
            "acme", "s", "gpt-4o-mini", strategy="sliding_window", budget=4000,
            query="turn 5", facts=facts, current_version=7,
        ),
    )  # fmt: skip
    texts = [m.content for m in window.messages]
    assert texts == [f"turn {i}" for i in range(6)]
    current = window.section("current")
    assert current is not None and current.messages[0].stream_version == 7
    recent = window.section("recent")
    assert recent is not None and [m.stream_version for m in recent.messages] == [2, 3, 4, 5, 6]


OLD_VIEW_JOIN = """SELECT t.seq, e.data->>'content' AS content
    FROM turn_rows t
    JOIN events e ON e.tenant_id = t.tenant_id AND e.global_position = t.global_position
    WHERE t.tenant_id = $1 AND t.session_id = $2 ORDER BY t.seq DESC LIMIT $3"""


async def buffers_per_row(conn: asyncpg.Connection, sql: str, *args: object) -> float:
    """Shared buffers an execution touches per row it returns, with a generic plan (as a
    prepared statement gets after a few runs)."""
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute(f"PREPARE q AS {sql}")
    try:
        literal = ", ".join(f"'{a}'" if isinstance(a, str) else str(a) for a in args)
        plan = json.loads(
            await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE q({literal})")
        )[0]["Plan"]
    finally:
        await conn.execute("DEALLOCATE q")
    return float(plan["Shared Hit Blocks"]) / max(1, plan["Actual Rows"])


async def test_turn_reads_probe_the_log_by_key_before_any_analyze(
    db: Database, raw_conn: asyncpg.Connection
) -> None:
    """A young database has no statistics: the planner cannot tell the log's unique
    indexes apart, and a join on (tenant_id, global_position) alone could run as a probe
    by tenant that filtered the rest (at 400 turns here; ~150 buffers a turn at 1,000
    events in the proxy benchmark). The reads match every key column, so any index finds
    a turn's event in one probe."""
    ports = await seeded(db, 100)
    repo = PostgresSessions(db)
    view = (
        "SELECT * FROM turns WHERE tenant_id = $1 AND session_id = $2 AND seq > $4 "
        "ORDER BY seq DESC LIMIT $3"
    )
    args = ("acme", "s", 200, 0)
    for start in range(100, 800, 100):
        turns = [svc.TurnSpec("user", f"turn {i}") for i in range(start, start + 100)]
        await svc.append_turns(repo, ports.counter, CTX, "s", turns)
        if start == 300:  # 400 turns: the size at which the old join goes wrong here
            assert await buffers_per_row(raw_conn, OLD_VIEW_JOIN, *args[:3]) > 10
        if start in (300, 700):
            for sql in (NEWEST_TURNS, view):
                assert await buffers_per_row(raw_conn, sql, *args) < 6
    stats = await raw_conn.fetchval(
        "SELECT count(*) FROM pg_stats WHERE tablename IN ('events', 'turn_rows')"
    )
    assert stats == 0, "the test needs tables that were never analyzed"
    rows = await ports.reader.newest_turns("acme", "s", 200)
    assert [t.content for t in rows[:2]] == ["turn 799", "turn 798"]
