"""Group commit: concurrent appends share database calls, and keep their own outcomes."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from adapters.postgres.database import Database
from adapters.postgres.pooled_event_store import PostgresEventStore
from domain.errors import StreamClosed, WrongExpectedVersion
from domain.events import NewEvent
from domain.hashing import GENESIS_HASH, chain_break

TENANT = "batch"


def event(n: int) -> NewEvent:
    return NewEvent(uuid.uuid4(), "Note", 1, {"n": n})


async def test_concurrent_appends_share_calls_and_keep_their_outcomes(db: Database) -> None:
    store = PostgresEventStore(db)
    await store.append(TENANT, "s:closed", [event(0)], close=True)
    for i in range(10):
        await store.append(TENANT, f"s:{i}", [event(0)])

    calls_before = store.batcher.calls

    async def good(i: int) -> int:
        result = await store.append(TENANT, f"s:{i}", [event(1), event(2)], expected_version=1)
        return result.last_version

    async def stale(i: int) -> None:
        await store.append(TENANT, f"s:{i}", [event(9)], expected_version=99)

    async def closed() -> None:
        await store.append(TENANT, "s:closed", [event(9)])

    outcomes = await asyncio.gather(
        *(good(i) for i in range(10)),
        *(stale(i) for i in range(5)),
        closed(),
        return_exceptions=True,
    )
    assert outcomes[:10] == [3] * 10
    assert all(isinstance(o, WrongExpectedVersion) and o.actual in (1, 3) for o in outcomes[10:15])
    assert isinstance(outcomes[15], StreamClosed)
    # 16 appends went out in fewer database calls than appends.
    assert store.batcher.calls - calls_before < 16

    for i in range(10):
        events = await store.read_stream(TENANT, f"s:{i}")
        assert [e.stream_version for e in events] == [1, 2, 3]
        assert [e.data["n"] for e in events] == [0, 1, 2]
        prev = GENESIS_HASH
        for expected, e in enumerate(events, start=1):
            assert chain_break(prev, expected, e) is None
            prev = e.hash
    assert await store.stream_version(TENANT, "s:closed") == 1


async def test_a_failed_call_fails_every_append_in_it(database_url: str) -> None:
    broken = Database(database_url.replace("/cg_test_", "/no_such_db_"))
    store = PostgresEventStore(broken)
    results = await asyncio.gather(
        *(store.append(TENANT, f"x:{i}", [event(i)]) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, Exception) for r in results)
    with pytest.raises(Exception, match="no_such_db"):
        raise results[0]  # type: ignore[misc]
    await broken.dispose()
