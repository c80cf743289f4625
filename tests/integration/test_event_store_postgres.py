"""What only the PostgreSQL event store can show: concurrent writers, the append-only
trigger, readers that must not skip late commits, and the session use cases on top."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest

from adapters.postgres.database import Database
from adapters.postgres.event_store import PgEventStore
from adapters.postgres.pooled_event_store import PostgresEventStore
from adapters.postgres.session_repository import PostgresSessions
from adapters.tokenizers import CharEstimateCounter
from app.services.sessions import (
    AppendOutcome,
    RequestContext,
    TurnSpec,
    append_turns,
    create_session,
)
from domain.errors import WrongExpectedVersion
from domain.events import Checkpoint, NewEvent, RecordedEvent
from domain.hashing import GENESIS_HASH, chain_break
from domain.session import stream_id_for

TENANT = "tenant-a"
WRITERS = 20


def new_event(data: dict[str, Any], type_: str = "Noted") -> NewEvent:
    return NewEvent(event_id=uuid.uuid4(), type=type_, schema_version=1, data=data)


def assert_chain(events: list[RecordedEvent]) -> None:
    prev = GENESIS_HASH
    for expected_version, event in enumerate(events, start=1):
        assert chain_break(prev, expected_version, event) is None
        prev = event.hash


def checkpoint_of(event: RecordedEvent) -> Checkpoint:
    return Checkpoint(event.transaction_id, event.global_position)


async def follow(
    store: PostgresEventStore, checkpoint: Checkpoint, want: int, *, limit: int = 1000
) -> tuple[list[RecordedEvent], Checkpoint]:
    """Follow the log like a projection does: page by page, moving the checkpoint on, until
    `want` events were seen or a timeout. An event that commits behind the checkpoint is
    lost for good, so the events seen show whether the reader skipped one.

    Any transaction still running in the cluster (autovacuum's ANALYZE, another test run)
    may hold events back for a moment: that is the rule under test, hence the polling.
    """
    seen: list[RecordedEvent] = []
    deadline = time.monotonic() + 15
    while len(seen) < want and time.monotonic() < deadline:
        page = await store.read_all(checkpoint, limit=limit)
        if page:
            seen.extend(page)
            checkpoint = checkpoint_of(page[-1])
        else:
            await asyncio.sleep(0.05)
    return seen, checkpoint


async def open_session(db: Database, session_id: str) -> tuple[PostgresSessions, RequestContext]:
    repo = PostgresSessions(db)
    ctx = RequestContext(tenant_id=TENANT, actor="tester")
    view, replayed = await create_session(repo, ctx, session_id=session_id, title="t")
    assert view.version == 1 and not replayed
    return repo, ctx


# --- concurrent writers -----------------------------------------------------------------


async def test_concurrent_appends_to_one_stream_are_serialized(db: Database) -> None:
    store = PostgresEventStore(db)
    stream = "test:concurrent"
    start = asyncio.Event()

    async def writer(i: int) -> list[uuid.UUID]:
        await start.wait()
        events = [new_event({"writer": i, "k": k}) for k in range(2)]
        result = await store.append(TENANT, stream, events, expected_version=None)
        assert result.last_version == result.first_version + 1
        return [e.event_id for e in result.events]

    tasks = [asyncio.create_task(writer(i)) for i in range(WRITERS)]
    await asyncio.sleep(0)
    start.set()
    written = await asyncio.gather(*tasks)

    read = await store.read_stream(TENANT, stream)
    n = 2 * WRITERS
    assert [e.stream_version for e in read] == list(range(1, n + 1))
    assert sorted(e.event_id for e in read) == sorted(i for ids in written for i in ids)
    assert len({e.event_id for e in read}) == n
    # Each writer's two events are adjacent and in order: an append is atomic.
    for a, b in zip(read[::2], read[1::2], strict=True):
        assert a.data["writer"] == b.data["writer"]
        assert (a.data["k"], b.data["k"]) == (0, 1)
    assert_chain(read)
    assert await store.stream_version(TENANT, stream) == n


async def test_concurrent_append_turns_through_the_service(
    db: Database, raw_conn: asyncpg.Connection
) -> None:
    repo, ctx = await open_session(db, "s-concurrent")
    counter = CharEstimateCounter()
    start = asyncio.Event()

    async def writer(i: int) -> AppendOutcome:
        await start.wait()
        return await append_turns(
            repo, counter, ctx, "s-concurrent", [TurnSpec(role="user", content=f"turn {i}")]
        )

    tasks = [asyncio.create_task(writer(i)) for i in range(WRITERS)]
    await asyncio.sleep(0)
    start.set()
    outcomes = await asyncio.gather(*tasks)

    assert sorted(o.first_version for o in outcomes) == list(range(2, WRITERS + 2))
    assert not any(o.replayed for o in outcomes)

    rows = await raw_conn.fetch(
        "SELECT t.seq, t.stream_version, e.data->>'content' AS content FROM turns t"
        " JOIN events e USING (tenant_id, global_position)"
        " WHERE t.tenant_id = $1 AND t.session_id = $2 ORDER BY t.seq",
        TENANT,
        "s-concurrent",
    )
    assert [r["seq"] for r in rows] == list(range(1, WRITERS + 1))
    assert [r["stream_version"] for r in rows] == list(range(2, WRITERS + 2))
    assert sorted(r["content"] for r in rows) == sorted(f"turn {i}" for i in range(WRITERS))

    session = await raw_conn.fetchrow(
        "SELECT turn_count, version FROM sessions WHERE tenant_id = $1 AND session_id = $2",
        TENANT,
        "s-concurrent",
    )
    assert session["turn_count"] == WRITERS
    assert session["version"] == WRITERS + 1

    events = await PostgresEventStore(db).read_stream(TENANT, stream_id_for("s-concurrent"))
    assert [e.stream_version for e in events] == list(range(1, WRITERS + 2))
    assert_chain(events)


async def test_concurrent_retries_with_one_idempotency_key_write_once(db: Database) -> None:
    store = PostgresEventStore(db)
    stream = "test:idem"
    await store.append(TENANT, stream, [new_event({"first": True})])
    payload = [{"n": 1}, {"n": 2}, {"n": 3}]
    start = asyncio.Event()

    async def retry() -> tuple[list[uuid.UUID], bool]:
        await start.wait()
        result = await store.append(
            TENANT, stream, [new_event(d) for d in payload], idempotency_key="same-key"
        )
        return [e.event_id for e in result.events], result.replayed

    tasks = [asyncio.create_task(retry()) for _ in range(10)]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*tasks)

    ids = {tuple(r[0]) for r in results}
    assert len(ids) == 1
    assert [r[1] for r in results].count(False) == 1  # exactly one wrote
    read = await store.read_stream(TENANT, stream)
    assert [e.stream_version for e in read] == [1, 2, 3, 4]
    assert tuple(e.event_id for e in read[1:]) == ids.pop()
    assert_chain(read)


async def test_concurrent_retries_of_append_turns_write_once(
    db: Database, raw_conn: asyncpg.Connection
) -> None:
    repo, ctx = await open_session(db, "s-idem")
    counter = CharEstimateCounter()
    turns = [TurnSpec(role="user", content="hi"), TurnSpec(role="assistant", content="hello")]
    start = asyncio.Event()

    async def retry() -> AppendOutcome:
        await start.wait()
        return await append_turns(repo, counter, ctx, "s-idem", turns, idempotency_key="retry-1")

    tasks = [asyncio.create_task(retry()) for _ in range(10)]
    await asyncio.sleep(0)
    start.set()
    outcomes = await asyncio.gather(*tasks)

    assert len({tuple(e.event_id for e in o.events) for o in outcomes}) == 1
    assert [o.replayed for o in outcomes].count(False) == 1
    assert all((o.first_version, o.last_version) == (2, 3) for o in outcomes)
    assert await PostgresEventStore(db).stream_version(TENANT, stream_id_for("s-idem")) == 3
    count = await raw_conn.fetchval(
        "SELECT count(*) FROM turns WHERE tenant_id = $1 AND session_id = $2", TENANT, "s-idem"
    )
    assert count == 2
    session = await raw_conn.fetchrow(
        "SELECT turn_count, version FROM sessions WHERE tenant_id = $1 AND session_id = $2",
        TENANT,
        "s-idem",
    )
    assert (session["turn_count"], session["version"]) == (2, 3)


# --- the log is append-only -------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET data = '{\"n\": 999}'::jsonb WHERE stream_id = 'test:ro'",
        "UPDATE events SET stream_version = 99 WHERE stream_id = 'test:ro'",
        "DELETE FROM events WHERE stream_id = 'test:ro'",
        "DELETE FROM events",
        "TRUNCATE events",
        "TRUNCATE events CASCADE",
    ],
)
async def test_events_cannot_be_changed_through_sql(
    db: Database, raw_conn: asyncpg.Connection, statement: str
) -> None:
    await PostgresEventStore(db).append(TENANT, "test:ro", [new_event({"n": 1})])
    select = "SELECT event_id, stream_version, data::text, hash FROM events ORDER BY 1"
    before = [tuple(r) for r in await raw_conn.fetch(select)]
    assert len(before) == 1

    with pytest.raises(asyncpg.PostgresError) as info:
        await raw_conn.execute(statement)
    assert "append-only" in str(info.value)
    assert isinstance(info.value, asyncpg.InsufficientPrivilegeError)

    after = [tuple(r) for r in await raw_conn.fetch(select)]
    assert after == before
    assert_chain(await PostgresEventStore(db).read_stream(TENANT, "test:ro"))


# --- readers of the whole log ------------------------------------------------------------


async def test_read_all_does_not_skip_an_event_that_commits_late(
    db: Database, database_url: str
) -> None:
    store = PostgresEventStore(db)
    earlier = await store.append(TENANT, "test:earlier", [new_event({"e": 0})])

    # The reader catches up with everything committed so far.
    caught_up, checkpoint = await follow(store, Checkpoint(), 1)
    assert [e.event_id for e in caught_up] == [earlier.events[0].event_id]

    # Transaction A appends and stays open ...
    conn_a = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        tx_a = conn_a.transaction()
        await tx_a.start()
        try:
            a = await PgEventStore(conn_a).append(TENANT, "test:late", [new_event({"e": "A"})])
            # ... while B, started later (larger xid), appends to another stream and commits.
            b = await store.append(TENANT, "test:early", [new_event({"e": "B"})])
            assert b.events[0].transaction_id > a.events[0].transaction_id
            assert b.events[0].global_position > a.events[0].global_position

            # B is committed but must be held back while A, before it, may still commit.
            assert await store.read_all(checkpoint) == []
            assert await store.read_all(checkpoint, tenant_id=TENANT) == []
            assert [e.event_id for e in await store.read_stream(TENANT, "test:early")] == [
                b.events[0].event_id
            ]
            # Reading again changes nothing while A is open.
            assert await store.read_all(Checkpoint()) == caught_up
        except BaseException:
            await tx_a.rollback()
            raise
        else:
            await tx_a.commit()
    finally:
        await conn_a.close()

    # After A commits, reading on from the reader's checkpoint returns A, then B.
    rest, end = await follow(store, checkpoint, 2)
    assert [e.event_id for e in rest] == [a.events[0].event_id, b.events[0].event_id]
    assert [e.data["e"] for e in rest] == ["A", "B"]
    assert await store.read_all(end) == []


async def test_read_all_holds_back_a_late_commit_with_a_concurrent_task(
    db: Database, database_url: str
) -> None:
    """The same, with A running as its own task paused inside `async with transaction()`."""
    store = PostgresEventStore(db)
    a_appended = asyncio.Event()
    release_a = asyncio.Event()
    a_ids: list[uuid.UUID] = []

    async def transaction_a() -> None:
        conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            async with conn.transaction():
                result = await PgEventStore(conn).append(
                    TENANT, "test:a", [new_event({"e": "A1"}), new_event({"e": "A2"})]
                )
                a_ids.extend(e.event_id for e in result.events)
                a_appended.set()
                await release_a.wait()
        finally:
            await conn.close()

    task = asyncio.create_task(transaction_a())
    try:
        await asyncio.wait_for(a_appended.wait(), 10)
        b = await store.append(TENANT, "test:b", [new_event({"e": "B"})])

        # A follower keeps polling while A is open: it sees nothing, so it cannot skip A.
        checkpoint = Checkpoint()
        for _ in range(3):
            page = await store.read_all(checkpoint, limit=10)
            assert page == []
    finally:
        release_a.set()
        await asyncio.wait_for(task, 10)

    seen, _ = await follow(store, checkpoint, 3, limit=2)
    assert [e.event_id for e in seen] == [*a_ids, b.events[0].event_id]


# --- the service ------------------------------------------------------------------------


async def test_stale_expected_version_in_the_service_writes_nothing(
    db: Database, raw_conn: asyncpg.Connection
) -> None:
    repo, ctx = await open_session(db, "s-stale")
    counter = CharEstimateCounter()
    first = await append_turns(
        repo, counter, ctx, "s-stale", [TurnSpec(role="user", content="one")], expected_version=1
    )
    assert (first.first_version, first.last_version) == (2, 2)

    with pytest.raises(WrongExpectedVersion) as info:
        await append_turns(
            repo,
            counter,
            ctx,
            "s-stale",
            [TurnSpec(role="user", content="two")],
            expected_version=1,
        )
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert info.value.stream_id == stream_id_for("s-stale")

    events = await PostgresEventStore(db).read_stream(TENANT, stream_id_for("s-stale"))
    assert [e.stream_version for e in events] == [1, 2]
    contents = await raw_conn.fetch(
        "SELECT e.data->>'content' AS content FROM turns t"
        " JOIN events e USING (tenant_id, global_position)"
        " WHERE t.tenant_id = $1 AND t.session_id = $2 ORDER BY t.seq",
        TENANT,
        "s-stale",
    )
    assert [r["content"] for r in contents] == ["one"]
    session = await raw_conn.fetchrow(
        "SELECT turn_count, version FROM sessions WHERE tenant_id = $1 AND session_id = $2",
        TENANT,
        "s-stale",
    )
    assert (session["turn_count"], session["version"]) == (1, 2)
