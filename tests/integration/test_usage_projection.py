"""The usage projection (migration 0007, adapters/postgres/usage.py, app/workers/usage.py)
against the real PostgreSQL: answers recorded by the proxy's own recording code
(`app.services.proxy.record`, as a served call records them) for two tenants, two keys,
two models and two days are folded into one row per tenant, day, key and model, with
their calls, tokens, cache hits and cost; a tenant never sees another's rows; folding
the log again from the start gives the same rows, and so does `contextgate replay`
(`rebuild_projections`) as the application role.

The day of an answer is the day it was recorded: the event store's clock
(`adapters.postgres.event_store.datetime`) is set to each day in turn, so the events
are written, hashed and stored as they would be on that day.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from adapters.postgres import event_store
from adapters.postgres.audit import rebuild_projections
from adapters.postgres.context_inputs import PostgresContextReader
from adapters.postgres.database import Database
from adapters.postgres.session_repository import PostgresSessions
from adapters.postgres.usage import UsageRow, catch_up, report
from adapters.tokenizers import CharEstimateCounter
from app.proxy_config import load_proxy_config
from app.services import proxy
from app.services import sessions as svc
from app.services.context import ContextPorts
from app.settings import APP_ROLE
from app.workers.usage import UsageWorker
from domain.proxy.chat import ChatRequest, ChatResponse, Message, Usage

DAY1 = date(2026, 3, 1)
DAY2 = date(2026, 3, 2)
MINI, FOUR_O = "gpt-4o-mini", "gpt-4o"
# USD per million tokens, from app/data/prices.toml: (input, cached input, output).
PRICES = {MINI: ("0.15", "0.075", "0.60"), FOUR_O: ("2.50", "1.25", "10.00")}


def price(model: str, usage: Usage) -> Decimal:
    inp, cached, out = (Decimal(p) for p in PRICES[model])
    return (
        (usage.input_tokens - usage.cached_tokens) * inp
        + usage.cached_tokens * cached
        + usage.output_tokens * out
    ) / 1_000_000


class Clock:
    """The event store's clock: `datetime` with `now()` at the day being recorded."""

    at = datetime(2026, 3, 1, 12, tzinfo=UTC)


class _FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _FrozenDatetime:
        at = Clock.at
        return cls(at.year, at.month, at.day, at.hour, at.minute, at.second, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Clock]]:
    monkeypatch.setattr(event_store, "datetime", _FrozenDatetime)
    yield Clock
    Clock.at = datetime(2026, 3, 1, 12, tzinfo=UTC)


def make_ports(db: Database) -> tuple[proxy.ProxyPorts, PostgresSessions]:
    repo = PostgresSessions(db)
    counter = CharEstimateCounter()
    config = load_proxy_config(None, {"OPENAI_API_KEY": "sk-not-called"})
    ports = proxy.ProxyPorts(
        config=config,
        router=config.router(),
        providers={},  # nothing is called: the answers are given to `record`
        events=repo.events,
        context=ContextPorts(PostgresContextReader(db), counter, repo.events),
        counter=counter,
    )
    return ports, repo


async def answer(
    ports: proxy.ProxyPorts,
    tenant: str,
    key: str,
    model: str,
    usage: Usage,
    *,
    cached: str | None = None,
) -> Decimal:
    """One stateless call answered and recorded as the server does it; returns the cost
    recorded (zero for a cache hit, which no provider was paid for)."""
    meta = proxy.CallMeta(tenant, key, "openai")
    call = await proxy.prepare(ports, meta, ChatRequest(model, (Message("user", "hello"),)))
    [deployment] = call.decision.deployments
    assert deployment.model == model
    response = ChatResponse(
        id="chatcmpl-1", model=model, content="hi", finish_reason="stop", usage=usage
    )
    if cached:  # a cache hit is recorded without a deployment, as app/api/proxy.py does
        outcome = await proxy.record(ports, call, response, None, cached=cached)
    else:
        outcome = await proxy.record(ports, call, response, deployment)
    return outcome.cost


def row(
    day: date, key: str, model: str, calls: int, usage: Usage, cost: Decimal, hits: int = 0
) -> UsageRow:
    return UsageRow(
        day=day,
        model=model,
        key_id=key,
        calls=calls,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        cache_hits=hits,
        cost=cost,
    )


async def all_rows(raw_conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    rows = await raw_conn.fetch(
        "SELECT tenant_id, day, key_id, model, calls, input_tokens, output_tokens, "
        "cached_tokens, cache_hits, cost FROM usage_daily ORDER BY tenant_id, day, key_id, model"
    )
    return [tuple(r) for r in rows]


async def test_usage_rows_per_tenant_key_model_and_day(
    db: Database, raw_conn: asyncpg.Connection, clock: type[Clock], database_url: str
) -> None:
    ports, repo = make_ports(db)
    u1, u2, u3 = Usage(100, 20, 0), Usage(300, 40, 100), Usage(50, 10, 0)
    u4, u5, u6 = Usage(80, 8, 0), Usage(60, 6, 0), Usage(1000, 500, 0)
    g1, g2 = Usage(7000, 700, 0), Usage(10, 1, 0)

    clock.at = datetime(2026, 3, 1, 0, 0, 5, tzinfo=UTC)  # just after midnight, UTC
    c1 = await answer(ports, "acme", "key-a", MINI, u1)
    c2 = await answer(ports, "acme", "key-a", MINI, u2)
    c3 = await answer(ports, "acme", "key-a", FOUR_O, u3)
    c4 = await answer(ports, "acme", "key-b", MINI, u4)
    g_c1 = await answer(ports, "globex", "key-a", MINI, g1)  # the same key id, another tenant
    # A turn a client appended itself, with its own usage and cost, is not a call.
    await svc.create_session(repo, svc.RequestContext("acme", "key-a"), session_id="manual")
    await svc.append_turns(
        repo,
        ports.counter,
        svc.RequestContext("acme", "key-a"),
        "manual",
        [
            svc.TurnSpec("user", "hi"),
            svc.TurnSpec(
                "assistant",
                "hello",
                model=MINI,
                usage={"input_tokens": 5, "output_tokens": 1},
                cost=0.5,
            ),
        ],
    )
    clock.at = datetime(2026, 3, 2, 23, 59, 55, tzinfo=UTC)  # just before midnight
    c5 = await answer(ports, "acme", "key-b", MINI, u5)
    hit = await answer(ports, "acme", "key-b", MINI, u5, cached="hit-exact")
    c6 = await answer(ports, "acme", "key-a", FOUR_O, u6)
    g_c2 = await answer(ports, "globex", "key-c", FOUR_O, g2)

    # The costs recorded are the price table's, exactly; a cache hit costs nothing.
    assert [c1, c2, c3, c4, c5, c6] == [
        price(MINI, u1),
        price(MINI, u2),
        price(FOUR_O, u3),
        price(MINI, u4),
        price(MINI, u5),
        price(FOUR_O, u6),
    ]
    assert c2 == Decimal("0.0000615")  # 200 x 0.15 + 100 x 0.075 + 40 x 0.60, per million
    assert hit == 0 and g_c1 == price(MINI, g1) and g_c2 == price(FOUR_O, g2)

    # Nothing is counted before the projection catches up.
    assert await report(db, "acme", DAY1, DAY2, ("day", "key", "model")) == []
    read = await catch_up(db)
    # 9 calls of 3 events (opened, user, answer) and the manual session's 3.
    assert read == 9 * 3 + 3
    acme = await report(db, "acme", DAY1, DAY2, ("day", "key", "model"))
    assert acme == [
        row(DAY1, "key-a", FOUR_O, 1, u3, c3),
        row(DAY1, "key-a", MINI, 2, Usage(400, 60, 100), c1 + c2),
        row(DAY1, "key-b", MINI, 1, u4, c4),
        row(DAY2, "key-a", FOUR_O, 1, u6, c6),
        # The hit is a call, with the tokens of the answer it gave, at no cost.
        row(DAY2, "key-b", MINI, 2, Usage(120, 12, 0), c5, hits=1),
    ]
    globex = await report(db, "globex", DAY1, DAY2, ("day", "key", "model"))
    assert globex == [
        row(DAY1, "key-a", MINI, 1, g1, g_c1),
        row(DAY2, "key-c", FOUR_O, 1, g2, g_c2),
    ]
    # One tenant never sees the other's rows, even for a key id both have.
    acme_key_a = await report(db, "acme", DAY1, DAY2, ("model",), key_id="key-a")
    assert [(r.model, r.calls, r.input_tokens) for r in acme_key_a] == [
        (FOUR_O, 2, 1050),
        (MINI, 2, 400),
    ]
    assert await report(db, "acme", DAY1, DAY2, ("key",), key_id="key-c") == []
    assert await report(db, "nobody", DAY1, DAY2, ("day",)) == []
    # Other groupings sum the same rows; a range of one day holds only that day.
    [total] = await report(db, "acme", DAY1, DAY2, ())
    assert (total.day, total.model, total.key_id) == (None, None, None)
    assert (total.calls, total.input_tokens, total.output_tokens) == (7, 1650, 590)
    assert (total.cached_tokens, total.cache_hits) == (100, 1)
    assert total.cost == c1 + c2 + c3 + c4 + c5 + c6
    by_day = await report(db, "acme", DAY2, DAY2, ("day",))
    assert [(r.day, r.calls, r.cost) for r in by_day] == [(DAY2, 3, c5 + c6)]

    # Caught up: nothing is folded twice.
    before = await all_rows(raw_conn)
    assert len(before) == 7
    assert await catch_up(db) == 0
    assert await all_rows(raw_conn) == before

    # Folding the whole log again from an empty table and no checkpoint (in batches of
    # 4 events) gives the same rows.
    await raw_conn.execute("TRUNCATE usage_daily")
    await raw_conn.execute("DELETE FROM projection_checkpoints WHERE name = 'usage'")
    assert await catch_up(db, batch=4) == read
    assert await all_rows(raw_conn) == before

    # `contextgate replay`, as the application role the server runs as, rebuilds the
    # rows from the log whatever they had become, and leaves the checkpoint caught up.
    await raw_conn.execute("UPDATE usage_daily SET calls = calls + 100, cost = 0")
    await raw_conn.execute(
        "INSERT INTO usage_daily (tenant_id, day, key_id, model) VALUES ('x', $1, '', 'm')", DAY1
    )
    app_db = Database(database_url, pool_size=1, role=APP_ROLE)
    try:
        rebuilt = await rebuild_projections(app_db, usage_batch=3)
    finally:
        await app_db.dispose()
    assert rebuilt["calls"] == sum(row[4] for row in before) == 9  # both tenants
    assert await all_rows(raw_conn) == before
    assert await catch_up(db) == 0


async def test_the_worker_keeps_the_projection_caught_up(
    db: Database, raw_conn: asyncpg.Connection
) -> None:
    ports, _ = make_ports(db)
    worker = UsageWorker(db, interval=0.05)
    worker.start()
    try:
        cost = await answer(ports, "acme", "key-a", MINI, Usage(10, 5, 0))
        today = datetime.now(UTC).date()
        rows: list[tuple[Any, ...]] = []
        for _ in range(100):
            rows = await all_rows(raw_conn)
            if rows:
                break
            await asyncio.sleep(0.05)
        assert rows == [("acme", today, "key-a", MINI, 1, 10, 5, 0, 0, cost)]
        # And then no more: the next ticks find nothing new.
        await asyncio.sleep(0.2)
        assert await all_rows(raw_conn) == rows
    finally:
        await worker.stop()
    assert worker._task is None
