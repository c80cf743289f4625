"""The embeddings projection worker against the real PostgreSQL and the real model:
it embeds appended turns, skips nothing that commits late, is idempotent and
rebuildable, follows NOTIFY, and reports its lag."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest

from adapters.embedder import AsyncEmbedder, SentenceTransformerEmbedder
from adapters.postgres.database import Database
from adapters.postgres.event_store import PgEventStore
from adapters.postgres.notifier import Notifier
from adapters.postgres.session_repository import PostgresSessions
from adapters.tokenizers import CharEstimateCounter
from app.services.sessions import RequestContext, TurnSpec, append_turns, create_session
from app.workers import embeddings, young_tables
from app.workers.embeddings import NAME, EmbeddingsWorker
from domain.events import NewEvent, UserMessage
from domain.ids import uuid7
from domain.session import stream_id_for

TENANT = "acme"
COUNTER = CharEstimateCounter()


@pytest.fixture(scope="module")
def embedder() -> Iterator[AsyncEmbedder]:
    model = AsyncEmbedder(SentenceTransformerEmbedder())
    yield model
    model.close()


async def open_session(
    repo: PostgresSessions, session_id: str, user_id: str | None = None, tenant: str = TENANT
) -> None:
    await create_session(
        repo, RequestContext(tenant, "test"), session_id=session_id, user_id=user_id
    )


async def say(
    repo: PostgresSessions, session_id: str, *turns: tuple[str, str], tenant: str = TENANT
) -> list[int]:
    """Append turns (role, content); returns their global positions."""
    outcome = await append_turns(
        repo,
        COUNTER,
        RequestContext(tenant, "test"),
        session_id,
        [TurnSpec(role=role, content=content) for role, content in turns],
    )
    return [e.global_position for e in outcome.events]


async def rows(conn: asyncpg.Connection, tenant: str = TENANT) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT tenant_id, session_id, seq, stream_version, global_position, user_id, role,
                  created_at, embedding::real[] AS embedding, tsv::text AS tsv
           FROM turn_embeddings WHERE tenant_id = $1 ORDER BY session_id, seq""",
        tenant,
    )


async def checkpoint(conn: asyncpg.Connection) -> tuple[int, int] | None:
    row = await conn.fetchrow(
        """SELECT transaction_id::text::bigint AS tx, global_position FROM projection_checkpoints
           WHERE name = $1""",
        NAME,
    )
    return (row["tx"], row["global_position"]) if row else None


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s")
        await asyncio.sleep(0.05)


async def drain(worker: EmbeddingsWorker, within: float = 30.0) -> int:
    """Catch up until nothing is behind. Transaction ids are server-wide: a transaction
    open in another database (another test run) holds the worker back for a moment."""
    deadline = time.monotonic() + within
    total = await worker.catch_up()
    while (await worker.lag()).events:
        if time.monotonic() > deadline:
            raise AssertionError(f"still behind after {within} s")
        await asyncio.sleep(0.05)
        total += await worker.catch_up()
    return total


@pytest.fixture
async def worker(db: Database, embedder: AsyncEmbedder) -> AsyncIterator[EmbeddingsWorker]:
    w = EmbeddingsWorker(db, embedder, batch_size=4)
    yield w
    await w.stop()


async def test_worker_embeds_turns_and_advances_its_checkpoint(
    db: Database, raw_conn: asyncpg.Connection, worker: EmbeddingsWorker
) -> None:
    repo = PostgresSessions(db)
    await open_session(repo, "trip", user_id="ada")
    positions = await say(
        repo,
        "trip",
        ("system", "You are a travel agent."),
        ("user", "Three nights in Lisbon from May 4?"),
        ("assistant", "Booked: Hotel Avenida, breakfast included."),
    )
    await open_session(repo, "empty")  # events that are not turns move the checkpoint too
    await say(repo, "trip", ("user", "   "), ("user", "And a rental car, please."))

    lag = await worker.lag()
    assert lag.events == 7 and lag.seconds >= 0

    assert await drain(worker) == 4  # the blank turn has nothing to embed
    found = await rows(raw_conn)
    assert [(r["session_id"], r["seq"], r["stream_version"], r["role"]) for r in found] == [
        ("trip", 1, 2, "system"),
        ("trip", 2, 3, "user"),
        ("trip", 3, 4, "assistant"),
        ("trip", 5, 6, "user"),  # seq 4 is the blank turn
    ]
    assert [r["global_position"] for r in found[:3]] == positions
    assert all(r["user_id"] == "ada" for r in found)
    for r in found:
        assert len(r["embedding"]) == 384
        assert math.isclose(math.sqrt(sum(x * x for x in r["embedding"])), 1.0, rel_tol=1e-4)
    assert "'lisbon'" in found[1]["tsv"] and "'rental'" in found[3]["tsv"]
    # created_at is the turn's time, as turn_rows has it.
    turn_times = await raw_conn.fetch(
        "SELECT created_at FROM turn_rows WHERE tenant_id = $1 AND session_id = 'trip' "
        "AND seq <> 4 ORDER BY seq",
        TENANT,
    )
    assert [r["created_at"] for r in found] == [r["created_at"] for r in turn_times]

    last = await raw_conn.fetchrow(
        "SELECT transaction_id::text::bigint AS tx, global_position FROM events "
        "ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
    )
    assert await checkpoint(raw_conn) == (last["tx"], last["global_position"])
    lag = await worker.lag()
    assert (lag.events, lag.seconds) == (0, 0.0)
    assert await drain(worker) == 0


async def test_an_event_that_commits_late_is_not_skipped(
    db: Database, database_url: str, raw_conn: asyncpg.Connection, worker: EmbeddingsWorker
) -> None:
    repo = PostgresSessions(db)
    await open_session(repo, "early")
    await open_session(repo, "late")
    assert await drain(worker) == 0

    # A transaction appends (and so takes its transaction id) first, but commits last.
    slow = await asyncpg.connect(database_url)
    try:
        tx = slow.transaction()
        await tx.start()
        event = NewEvent.from_domain(UserMessage(content="I started first", tokens=4), uuid7())
        await PgEventStore(slow).append(TENANT, stream_id_for("early"), [event], must_exist=True)
        await say(repo, "late", ("user", "I committed first"))

        # The committed turn waits behind the open transaction, so the checkpoint cannot
        # pass the uncommitted one.
        assert await worker.catch_up() == 0
        assert await rows(raw_conn) == []
        assert (await worker.lag()).events == 1

        await tx.commit()
    finally:
        await slow.close()

    assert await drain(worker) == 2
    assert {(r["session_id"], r["seq"]) for r in await rows(raw_conn)} == {
        ("early", 1),
        ("late", 1),
    }
    assert (await worker.lag()).events == 0


async def test_idempotent_and_rebuildable(
    db: Database, raw_conn: asyncpg.Connection, worker: EmbeddingsWorker
) -> None:
    repo = PostgresSessions(db)
    for s in ("a", "b"):
        await open_session(repo, s)
        await say(repo, s, *[("user", f"message {i} of session {s}") for i in range(5)])
    assert await drain(worker) == 10
    before = await rows(raw_conn)

    # Replaying from the start over existing rows writes nothing twice.
    await raw_conn.execute(
        "UPDATE projection_checkpoints SET transaction_id = '0', global_position = 0 "
        "WHERE name = $1",
        NAME,
    )
    assert await drain(worker) == 10
    assert await rows(raw_conn) == before

    end = await checkpoint(raw_conn)
    await worker.rebuild()
    assert await rows(raw_conn) == []
    assert await checkpoint(raw_conn) == (0, 0)
    assert (await worker.lag()).events > 0
    assert await drain(worker) == 10
    after = await rows(raw_conn)
    assert [r[:8] for r in after] == [r[:8] for r in before]
    for old, new in zip(before, after, strict=True):
        assert (
            max(abs(x - y) for x, y in zip(old["embedding"], new["embedding"], strict=True)) < 1e-5
        )
    assert await checkpoint(raw_conn) == end


async def test_rebuild_while_workers_run(
    db: Database, raw_conn: asyncpg.Connection, embedder: AsyncEmbedder
) -> None:
    repo = PostgresSessions(db)
    await open_session(repo, "r")
    await say(repo, "r", *[("user", f"turn {i} about something") for i in range(10)])
    background = EmbeddingsWorker(db, embedder, poll_interval=0.1, batch_size=2)
    other = EmbeddingsWorker(db, embedder, batch_size=3)
    background.start()
    try:
        # A rebuild racing a batch: the batch's compare-and-set fails and it starts over.
        await asyncio.gather(other.catch_up(), background.rebuild(), other.catch_up())

        async def rebuilt() -> bool:
            return [r["seq"] for r in await rows(raw_conn)] == list(range(1, 11)) and (
                await background.lag()
            ).events == 0

        await eventually(rebuilt)
    finally:
        await background.stop()
        await other.stop()


async def test_two_workers_at_once_write_each_turn_once(
    db: Database, raw_conn: asyncpg.Connection, embedder: AsyncEmbedder
) -> None:
    repo = PostgresSessions(db)
    await open_session(repo, "busy")
    await say(repo, "busy", *[("user", f"turn number {i}") for i in range(12)])
    first, second = EmbeddingsWorker(db, embedder, batch_size=3), EmbeddingsWorker(db, embedder)
    try:
        await asyncio.gather(first.catch_up(), second.catch_up())
        await drain(first)
    finally:
        await first.stop()
        await second.stop()
    assert [r["seq"] for r in await rows(raw_conn)] == list(range(1, 13))
    assert (await first.lag()).events == 0


async def test_works_as_the_application_role(
    database_url: str, raw_conn: asyncpg.Connection, embedder: AsyncEmbedder
) -> None:
    app_db = Database(database_url, role="contextgate_app")
    w = EmbeddingsWorker(app_db, embedder)
    try:
        repo = PostgresSessions(app_db)
        await open_session(repo, "s")
        await say(repo, "s", ("user", "hello"), ("assistant", "hi"))
        assert await drain(w) == 2
        await w.rebuild()  # TRUNCATE and the checkpoint reset are granted
        assert await drain(w) == 2
        assert len(await rows(raw_conn)) == 2
    finally:
        await w.stop()
        await app_db.dispose()


async def test_background_worker_wakes_on_notify_and_stops_cleanly(
    db: Database, raw_conn: asyncpg.Connection, embedder: AsyncEmbedder
) -> None:
    # Polling every minute: within the test only a notification can wake the worker.
    w = EmbeddingsWorker(db, embedder, poll_interval=60.0, lag_log_interval=0.0)
    notifier = Notifier(db)
    repo = PostgresSessions(db)
    await open_session(repo, "live")
    w.start()
    notifier.start()
    try:
        await eventually(lambda: _checkpoint_moved(raw_conn))  # first pass done: asleep
        await asyncio.sleep(0.2)
        await say(repo, "live", ("user", "Is the museum open on Mondays?"))

        async def embedded() -> bool:
            # Notified after each append, as the API does. (Again while waiting: another
            # database's open transaction may hold a pass back; a poll would take 60 s.)
            notifier.notify()
            return len(await rows(raw_conn)) == 1

        await eventually(embedded, within=20.0)
        assert notifier.sent >= 1
    finally:
        await notifier.stop()
        await w.stop()
    assert w._task is None and w._conn is None

    async def connection_gone() -> bool:
        return not await raw_conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'contextgate-embeddings'"
        )

    await eventually(connection_gone, within=5.0)


class CountingEmbedder:
    """The real model, counting the batches the worker sends it."""

    def __init__(self, inner: AsyncEmbedder) -> None:
        self.inner = inner
        self.batches: list[int] = []

    async def embed(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(len(texts))
        return await self.inner.embed(texts)


async def test_a_lingering_worker_embeds_the_turns_of_several_calls_in_one_batch(
    db: Database, raw_conn: asyncpg.Connection, embedder: AsyncEmbedder
) -> None:
    counting = CountingEmbedder(embedder)
    w = EmbeddingsWorker(db, counting, poll_interval=60.0, linger=1.0)  # type: ignore[arg-type]
    notifier = Notifier(db, interval=0.0)
    repo = PostgresSessions(db)
    await open_session(repo, "busy")
    w.start()
    notifier.start()
    try:
        await eventually(lambda: _checkpoint_moved(raw_conn))  # first pass done: asleep
        for i in range(4):  # four calls, each notifying, within the linger
            await say(repo, "busy", ("user", f"Question {i}?"), ("assistant", f"Answer {i}."))
            notifier.notify()
            await asyncio.sleep(0.05)

        async def embedded() -> bool:
            return len(await rows(raw_conn)) == 8

        await eventually(embedded, within=20.0)
        assert counting.batches == [8]  # one model run for the four calls
    finally:
        await notifier.stop()
        await w.stop()


async def test_the_worker_analyzes_a_young_table_as_it_grows(
    database_url: str,
    raw_conn: asyncpg.Connection,
    embedder: AsyncEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Retrieval plans from turn_embeddings' statistics; the worker gathers them while the
    table is young (here: every 4 rows and 25% of growth, below 10 rows), as the
    application role (granted MAINTAIN by migration 0009)."""
    monkeypatch.setattr(young_tables, "ANALYZE_MIN_ROWS", 4)
    monkeypatch.setattr(young_tables, "YOUNG_TABLE_ROWS", 10)
    app_db = Database(database_url, role="contextgate_app")
    w = EmbeddingsWorker(app_db, embedder, poll_interval=0.1)
    repo = PostgresSessions(app_db)

    async def stats() -> tuple[float, int]:
        row = await raw_conn.fetchrow(
            "SELECT reltuples, (SELECT count(*) FROM pg_stats WHERE tablename = "
            "'turn_embeddings' AND attname = 'tsv') AS tsv_stats FROM pg_class "
            "WHERE oid = 'turn_embeddings'::regclass"
        )
        return row["reltuples"], row["tsv_stats"]

    async def embedded(n: int) -> None:
        async def done() -> bool:
            return len(await rows(raw_conn)) == n and not (await w.lag()).events

        await eventually(done, within=20.0)
        await asyncio.sleep(0.3)  # a few passes of the worker

    await open_session(repo, "young")
    w.start()
    try:
        await say(repo, "young", ("user", "Where is the museum?"), ("assistant", "Downtown."))
        await embedded(2)
        assert w.analyzed == 0 and await stats() == (-1, 0)  # too few rows yet
        await say(repo, "young", ("user", "Open on Mondays?"), ("assistant", "It is not."))
        await embedded(4)
        assert w.analyzed == 1 and await stats() == (4, 1)
        await say(repo, "young", ("user", "And on Tuesdays?"))
        await embedded(5)
        assert w.analyzed == 1  # 1 row since: fewer than ANALYZE_MIN_ROWS
        await say(repo, "young", *[("user", f"Question {i}?") for i in range(3)])
        await embedded(8)
        assert w.analyzed == 2 and await stats() == (8, 1)
        await say(repo, "young", *[("user", f"More {i}?") for i in range(4)])
        await embedded(12)
        assert w.analyzed == 3 and (await stats())[0] == 12
        await say(repo, "young", *[("user", f"Again {i}?") for i in range(4)])
        await embedded(16)
        assert w.analyzed == 3  # 12 rows: no longer young, autovacuum's job
    finally:
        await w.stop()
        await app_db.dispose()


async def test_background_worker_polls_without_notifications(
    db: Database, raw_conn: asyncpg.Connection, embedder: AsyncEmbedder
) -> None:
    w = EmbeddingsWorker(db, embedder, poll_interval=0.2)
    repo = PostgresSessions(db)
    await open_session(repo, "quiet")
    w.start()
    try:
        await say(repo, "quiet", ("user", "No one will notify about this."))

        async def embedded() -> bool:
            return len(await rows(raw_conn)) == 1

        await eventually(embedded, within=20.0)
    finally:
        await w.stop()


async def test_only_one_background_worker_leads(
    db: Database, raw_conn: asyncpg.Connection, embedder: AsyncEmbedder
) -> None:
    a = EmbeddingsWorker(db, embedder, poll_interval=0.1)
    b = EmbeddingsWorker(db, embedder, poll_interval=0.1)
    a.start()
    b.start()
    try:
        await eventually(lambda: _caught_up(a))
        await asyncio.sleep(0.3)
        assert [a._leader, b._leader].count(True) == 1
        leader, standby = (a, b) if a._leader else (b, a)
        await leader.stop()
        # The lock goes with the leader's connection; the standby takes over.
        await eventually(lambda: _is_leader(standby), within=10.0)
    finally:
        await a.stop()
        await b.stop()


async def test_background_worker_survives_a_lost_connection(
    db: Database, raw_conn: asyncpg.Connection, embedder: AsyncEmbedder
) -> None:
    w = EmbeddingsWorker(db, embedder, poll_interval=0.1)
    repo = PostgresSessions(db)
    await open_session(repo, "flaky")
    w.start()
    try:
        await eventually(lambda: _is_leader(w))
        await raw_conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'contextgate-embeddings'"
        )
        await say(repo, "flaky", ("user", "Still there?"))

        async def embedded() -> bool:
            return len(await rows(raw_conn)) == 1

        await eventually(embedded, within=20.0)
        assert w._leader
    finally:
        await w.stop()


async def test_notifier_coalesces_notifications(db: Database, database_url: str) -> None:
    listener = await asyncpg.connect(database_url)
    received: list[str] = []
    await listener.add_listener("contextgate_events", lambda *args: received.append(args[2]))
    notifier = Notifier(db, interval=0.2)
    notifier.start()
    try:
        for _ in range(100):
            notifier.notify()
        await eventually(lambda: _at_least(received, 1), within=5.0)
        await asyncio.sleep(0.1)
        notifier.notify()  # within the interval: waits for it, then one more
        await eventually(lambda: _at_least(received, 2), within=5.0)
        await asyncio.sleep(0.05)
        assert len(received) == 2
    finally:
        notifier.notify()
        await notifier.stop()  # sends the pending one
        await asyncio.sleep(0.1)
        await listener.close()
    assert notifier.sent == 3
    assert received == ["contextgate_events"] * 3


async def _at_least(items: list[str], n: int) -> bool:
    return len(items) >= n


async def _checkpoint_moved(conn: asyncpg.Connection) -> bool:
    return await checkpoint(conn) is not None


async def _caught_up(w: EmbeddingsWorker) -> bool:
    return (await w.lag()).events == 0


async def _is_leader(w: EmbeddingsWorker) -> bool:
    return w._leader


async def test_stateless_calls_are_embedded_only_when_asked(
    db: Database, raw_conn: asyncpg.Connection, embedder: AsyncEmbedder
) -> None:
    repo = PostgresSessions(db)
    await open_session(repo, "call_0123abcd")  # how the proxy records a stateless call
    await say(repo, "call_0123abcd", ("user", "The whole history, again."))
    await open_session(repo, "callback")  # a session id that only starts alike
    await say(repo, "callback", ("user", "Call me back tomorrow."))
    assert await drain(EmbeddingsWorker(db, embedder)) == 1
    assert [r["session_id"] for r in await rows(raw_conn)] == ["callback"]
    everything = EmbeddingsWorker(db, embedder, embed_stateless=True)
    await everything.rebuild()
    assert await drain(everything) == 2
    assert sorted(r["session_id"] for r in await rows(raw_conn)) == ["call_0123abcd", "callback"]


async def test_the_worker_gives_way_to_a_busy_gateway_but_not_forever(
    db: Database, raw_conn: asyncpg.Connection, embedder: AsyncEmbedder
) -> None:
    """While `yield_to` says the process is busy the worker embeds nothing; once the load
    drops it catches up at once; and under a load that stays it still embeds a batch
    every `max_defer` seconds."""
    busy = True
    w = EmbeddingsWorker(
        db, embedder, poll_interval=0.1, yield_to=lambda: busy, max_defer=30.0, batch_size=2
    )
    repo = PostgresSessions(db)
    await open_session(repo, "queue")
    await say(repo, "queue", ("user", "Is the gateway busy?"), ("assistant", "Very."))
    w.start()
    try:
        await eventually(lambda: _deferred(w))
        await asyncio.sleep(0.5)
        assert await rows(raw_conn) == [] and w.embedded == 0
        busy = False  # the load drops

        async def embedded(n: int) -> bool:
            return len(await rows(raw_conn)) == n

        await eventually(lambda: embedded(2), within=20.0)
    finally:
        await w.stop()

    # A load that does not drop: one batch (two turns here) per max_defer.
    busy = True
    w = EmbeddingsWorker(
        db, embedder, poll_interval=0.1, yield_to=lambda: busy, max_defer=1.0, batch_size=2
    )
    await say(repo, "queue", *[("user", f"Still busy {i}?") for i in range(4)])
    started = time.monotonic()
    w.start()
    try:
        await eventually(lambda: embedded(4), within=20.0)
        first = time.monotonic() - started
        await eventually(lambda: embedded(6), within=20.0)
        second = time.monotonic() - started
    finally:
        await w.stop()
    assert first >= 0.9 and second - first >= 0.9  # each batch waited out max_defer
    assert w.deferrals >= 2


async def _deferred(w: EmbeddingsWorker) -> bool:
    return w.deferrals > 0


# How cg_project_session finds an append's session row, with its plan cached as the
# function caches it (generic), to see which index it takes.
SESSION_ROW = """PREPARE session_row(text, text) AS
    UPDATE sessions u SET version = u.version WHERE u.tenant_id = $1 AND u.session_id = $2"""


async def test_the_worker_analyzes_the_log_tables_while_they_are_young(
    database_url: str,
    raw_conn: asyncpg.Connection,
    embedder: AsyncEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every append's projection plans from the statistics of events, sessions and
    turn_rows: the worker, which reads every event, analyzes them while they are young
    (here every 20 events and 25% of growth; 5x by default), as the application role
    (granted MAINTAIN by migration 0010). Planned on an empty table, a session's row was
    found by a skip scan of sessions_by_created (tenant_id, created_at, session_id):
    every session of the tenant; the plan stayed until the first ANALYZE."""
    monkeypatch.setattr(young_tables, "ANALYZE_MIN_ROWS", 20)
    monkeypatch.setattr(embeddings, "LOG_GROWTH", 0.25)  # read by the worker's constructor
    app_db = Database(database_url, role="contextgate_app")
    w = EmbeddingsWorker(app_db, embedder, poll_interval=0.1)
    repo = PostgresSessions(app_db)

    async def analyzed() -> dict[str, float]:
        rows = await raw_conn.fetch(
            "SELECT relname, reltuples FROM pg_class WHERE relname = ANY($1::text[])",
            list(embeddings.LOG_TABLES),
        )
        return {r["relname"]: r["reltuples"] for r in rows}

    async def plan() -> str:
        rows = await raw_conn.fetch("EXPLAIN EXECUTE session_row('default', 'log')")
        return "\n".join(r[0] for r in rows)

    # A connection that plans the statement while the log is empty, and keeps the plan.
    await raw_conn.execute("SET plan_cache_mode = force_generic_plan")
    await raw_conn.execute(SESSION_ROW)
    first = await plan()
    await open_session(repo, "log")
    await say(repo, "log", ("user", "Hello?"), ("assistant", "Hi."))
    assert await analyzed() == dict.fromkeys(embeddings.LOG_TABLES, -1)  # never analyzed
    w.start()
    try:
        for i in range(6):
            await say(repo, "log", ("user", f"Question {i}?"), ("assistant", f"Answer {i}."))
        for i in range(400):  # other sessions: a table of several pages
            await open_session(repo, f"other-{i}")

        async def done() -> bool:
            return w.log_tables.runs >= 1 and not (await w.lag()).events

        await eventually(done, within=20.0)
        await asyncio.sleep(0.3)  # a few passes of the worker
        stats = await analyzed()
        events = await raw_conn.fetchval("SELECT count(*) FROM events")
        # Analyzed again within every 25% of growth (or 20 events): never far behind.
        assert events >= 400 and stats["events"] >= min(events - 20, events / 1.25), stats
        assert stats["sessions"] >= 300 and stats["turn_rows"] >= 10, stats
        # The statistics invalidated the plan made on the empty table: planned again.
        now = await plan()
        assert "sessions_pkey" in now, (first, now)
    finally:
        await w.stop()
        await app_db.dispose()
