"""The proxy's response caches against the real PostgreSQL and the real embedding model:
exact hits and misses, TTL, tenant isolation, semantic hits for paraphrases and misses
for anything else, the scope's scan bound, hit counts, cleanup, the app role's grants,
and a cache that fails open."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import replace

import asyncpg
import pytest

from adapters.embedder import AsyncEmbedder, SentenceTransformerEmbedder
from adapters.postgres.database import Database
from adapters.postgres.response_cache import PostgresResponseCache
from app.proxy_config import CacheConfig
from app.services import cache
from app.services.cache import CachePorts
from app.settings import APP_ROLE
from domain.proxy.cache_keys import CachedAnswer, exact_key
from domain.proxy.chat import ChatRequest, ChatResponse, Message, Tool, ToolCall, Usage

SYSTEM = "You are the support assistant of a streaming service. Answer briefly."
QUESTION = "How do I cancel my subscription?"
PARAPHRASE = "How can I cancel my subscription?"  # cosine 0.995 with QUESTION
OTHER = "How do I cancel my order?"  # cosine 0.71

ANSWER = ChatResponse(
    id="chatcmpl-original",
    model="gpt-4o-mini-2024-07-18",
    content="Open Settings > Plan and choose Cancel.",
    finish_reason="stop",
    usage=Usage(input_tokens=30, output_tokens=9, cached_tokens=0),
    created=1_700_000_000,
)
CONFIG = CacheConfig(exact=True, semantic=True, similarity_threshold=0.95, ttl_s=3600)


def ask(text: str = QUESTION, **changes) -> ChatRequest:
    request = ChatRequest(
        model="support",
        system=SYSTEM,
        messages=(Message("user", text),),
        temperature=0.0,
        max_tokens=200,
    )
    return replace(request, **changes)


class CountingEmbedder:
    """The real model, counting its calls (the semantic cache must not embed needlessly)."""

    def __init__(self, model: AsyncEmbedder) -> None:
        self.model = model
        self.calls = 0

    async def embed_query(self, text: str) -> Sequence[float]:
        self.calls += 1
        return await self.model.embed_query(text)


@pytest.fixture(scope="module")
def model() -> Iterator[AsyncEmbedder]:
    embedder = AsyncEmbedder(SentenceTransformerEmbedder())
    yield embedder
    embedder.close()


@pytest.fixture
def store(db: Database) -> PostgresResponseCache:
    return PostgresResponseCache(db)


@pytest.fixture
def embedder(model: AsyncEmbedder) -> CountingEmbedder:
    return CountingEmbedder(model)


@pytest.fixture
def ports(store: PostgresResponseCache, embedder: CountingEmbedder) -> CachePorts:
    return CachePorts(store, CONFIG, embedder, embed_timeout_s=30.0)


async def remember(
    ports: CachePorts, request: ChatRequest, answer: ChatResponse = ANSWER, tenant: str = "acme"
) -> cache.Probe:
    """A call that missed, then its answer stored (what the proxy does)."""
    probe = await cache.lookup(ports, tenant, request)
    assert probe.status == "miss"
    assert await cache.store(ports, probe, answer)
    return probe


# --- exact ----------------------------------------------------------------------------------


async def test_exact_miss_then_hit(ports: CachePorts, embedder: CountingEmbedder) -> None:
    answer = replace(
        ANSWER,
        tool_calls=(ToolCall("call_1", "lookup", '{"q": "plan"}'),),
        stop_sequence="END",
    )
    await remember(ports, ask(), answer)
    embedded = embedder.calls
    probe = await cache.lookup(ports, "acme", ask())
    assert probe.status == "hit-exact"
    assert embedder.calls == embedded, "an exact hit embeds nothing"
    hit = probe.response()
    assert (hit.model, hit.content, hit.tool_calls, hit.finish_reason, hit.usage) == (
        answer.model, answer.content, answer.tool_calls, answer.finish_reason, answer.usage,
    )  # fmt: skip
    assert hit.stop_sequence == "END"
    assert hit.id.startswith("chatcmpl-") and hit.id != answer.id  # a call of its own
    assert hit.created > answer.created
    # A hit is not stored again.
    assert not await cache.store(ports, probe, answer)


async def test_a_streamed_request_is_answered_from_the_same_entry(ports: CachePorts) -> None:
    await remember(ports, ask())
    probe = await cache.lookup(ports, "acme", ask(stream=True, include_usage=True))
    assert probe.status == "hit-exact"


async def test_any_other_parameter_misses(ports: CachePorts) -> None:
    semantic_off = replace(ports, config=replace(CONFIG, semantic=False))
    await remember(semantic_off, ask())
    for other in (ask(temperature=0.1), ask(max_tokens=201), ask(model="smart"), ask(seed=3)):
        assert (await cache.lookup(semantic_off, "acme", other)).status == "miss"


async def test_incomplete_answers_are_not_stored(ports: CachePorts, store) -> None:
    for finish in ("error", "client_disconnected", "content_filter"):
        probe = await cache.lookup(ports, "acme", ask())
        assert not await cache.store(ports, probe, replace(ANSWER, finish_reason=finish))
    assert await store.get("acme", exact_key("acme", ask())) is None


async def test_a_new_answer_replaces_the_old(ports: CachePorts) -> None:
    probe = await remember(ports, ask())
    assert await cache.store(ports, probe, replace(ANSWER, content="Newer."))
    assert (await cache.lookup(ports, "acme", ask())).response().content == "Newer."


async def test_caches_switched_off(ports: CachePorts, store) -> None:
    off = replace(ports, config=replace(CONFIG, exact=False, semantic=False))
    probe = await cache.lookup(off, "acme", ask())
    assert probe.status == "off"
    assert not await cache.store(off, probe, ANSWER)
    assert await store.get("acme", probe.key) is None


async def test_no_cache_reads_nothing_and_refreshes_the_entry(ports: CachePorts) -> None:
    await remember(ports, ask())
    fresh = await cache.lookup(ports, "acme", ask(), read=False)
    assert fresh.status == "miss" and fresh.embedding is not None
    assert await cache.store(ports, fresh, replace(ANSWER, content="Fresh."))
    assert (await cache.lookup(ports, "acme", ask())).response().content == "Fresh."
    assert (await cache.lookup(ports, "acme", ask(PARAPHRASE))).response().content == "Fresh."


# --- TTL and tenants ------------------------------------------------------------------------


async def test_expired_entries_are_never_served(
    ports: CachePorts, raw_conn: asyncpg.Connection
) -> None:
    await remember(ports, ask())
    ttl = await raw_conn.fetchval("SELECT expires_at - created_at FROM response_cache")
    assert ttl.total_seconds() == CONFIG.ttl_s
    assert (await cache.lookup(ports, "acme", ask())).status == "hit-exact"
    assert (await cache.lookup(ports, "acme", ask(PARAPHRASE))).status == "hit-semantic"
    await raw_conn.execute("UPDATE response_cache SET expires_at = now() - interval '1 second'")
    assert (await cache.lookup(ports, "acme", ask())).status == "miss"
    assert (await cache.lookup(ports, "acme", ask(PARAPHRASE))).status == "miss"


async def test_a_real_short_ttl_expires(store: PostgresResponseCache) -> None:
    key = exact_key("acme", ask())
    await store.put("acme", key, "support", ANSWER, 0.2)
    assert await store.get("acme", key) is not None
    await asyncio.sleep(0.3)
    assert await store.get("acme", key) is None


async def test_tenants_never_see_each_other(ports: CachePorts) -> None:
    await remember(ports, ask(), tenant="acme")
    assert (await cache.lookup(ports, "globex", ask())).status == "miss"
    assert (await cache.lookup(ports, "globex", ask(PARAPHRASE))).status == "miss"
    await remember(ports, ask(), replace(ANSWER, content="Globex's answer."), tenant="globex")
    assert (await cache.lookup(ports, "acme", ask())).response().content == ANSWER.content
    globex = await cache.lookup(ports, "globex", ask(PARAPHRASE))
    assert globex.response().content == "Globex's answer."


# --- semantic -------------------------------------------------------------------------------


async def test_a_paraphrase_above_the_threshold_hits(ports: CachePorts) -> None:
    await remember(ports, ask())
    probe = await cache.lookup(ports, "acme", ask(PARAPHRASE))
    assert probe.status == "hit-semantic"
    assert probe.hit is not None and probe.hit.similarity is not None
    assert 0.95 <= probe.hit.similarity < 1.0
    assert probe.hit.key == exact_key("acme", ask())  # the entry that answered
    assert probe.response().content == ANSWER.content


async def test_a_paraphrase_below_the_threshold_misses(ports: CachePorts) -> None:
    await remember(ports, ask())
    assert (await cache.lookup(ports, "acme", ask(OTHER))).status == "miss"
    strict = replace(ports, config=replace(CONFIG, similarity_threshold=0.999))
    assert (await cache.lookup(strict, "acme", ask(PARAPHRASE))).status == "miss"


async def test_another_system_prompt_or_model_misses(ports: CachePorts) -> None:
    await remember(ports, ask())
    for other in (
        ask(PARAPHRASE, system=SYSTEM + " Be polite."),
        ask(PARAPHRASE, system=None),
        ask(PARAPHRASE, model="smart"),
        ask(PARAPHRASE, max_tokens=100),
        ask(PARAPHRASE, messages=(Message("user", "Hi"), Message("user", PARAPHRASE))),
    ):
        assert (await cache.lookup(ports, "acme", other)).status == "miss"


async def test_requests_with_tools_never_hit_semantically(
    ports: CachePorts, embedder: CountingEmbedder
) -> None:
    tools = (Tool("cancel", "Cancel the plan", {"type": "object"}),)
    probe = await cache.lookup(ports, "acme", ask(tools=tools))
    assert probe.semantic is None and probe.embedding is None
    assert await cache.store(ports, probe, ANSWER)  # kept for exact hits only
    calls = embedder.calls
    assert (await cache.lookup(ports, "acme", ask(PARAPHRASE, tools=tools))).status == "miss"
    assert embedder.calls == calls, "an ineligible request embeds nothing"
    assert (await cache.lookup(ports, "acme", ask(tools=tools))).status == "hit-exact"


async def test_hot_requests_and_no_embedder_skip_the_semantic_cache(
    ports: CachePorts, store: PostgresResponseCache
) -> None:
    await remember(ports, ask())
    assert (await cache.lookup(ports, "acme", ask(PARAPHRASE, temperature=0.7))).status == "miss"
    blind = CachePorts(store, CONFIG, embedder=None)
    assert (await cache.lookup(blind, "acme", ask(PARAPHRASE))).status == "miss"
    assert (await cache.lookup(blind, "acme", ask())).status == "hit-exact"


async def test_a_semantic_only_cache(ports: CachePorts) -> None:
    semantic_only = replace(ports, config=replace(CONFIG, exact=False))
    await remember(semantic_only, ask())
    assert (await cache.lookup(semantic_only, "acme", ask())).status == "hit-semantic"
    # No cache applies to an ineligible request, and it is not stored: nothing could serve it.
    probe = await cache.lookup(semantic_only, "acme", ask(temperature=1.0))
    assert probe.status == "off"
    assert not await cache.store(semantic_only, probe, ANSWER)


async def test_a_full_scope_stores_for_exact_hits_only(
    ports: CachePorts, db: Database, raw_conn: asyncpg.Connection
) -> None:
    """The cap bounds what a semantic lookup reads: here one entry a scope."""
    capped = replace(ports, store=PostgresResponseCache(db, scope_cap=1))
    await remember(capped, ask())
    await remember(capped, ask(OTHER))  # the same scope, now full
    assert (await cache.lookup(capped, "acme", ask(PARAPHRASE))).status == "hit-semantic"
    assert (await cache.lookup(capped, "acme", ask("How can I cancel my order?"))).status == "miss"
    assert (await cache.lookup(capped, "acme", ask(OTHER))).status == "hit-exact"
    # Replacing the entry that fills the scope keeps its place.
    probe = await cache.lookup(capped, "acme", ask(temperature=0.0, max_tokens=200))
    assert probe.status == "hit-exact"
    key = exact_key("acme", ask())
    assert await capped.store.put("acme", key, "support", ANSWER, 60, **_semantic(probe))
    # Once it expires, the next answer gets the place.
    await raw_conn.execute(
        "UPDATE response_cache SET expires_at = now() WHERE request_key = $1", key
    )
    await remember(capped, ask("What payment methods do you accept?"))
    paraphrase = ask("Which payment methods do you accept?")
    assert (await cache.lookup(capped, "acme", paraphrase)).status == "hit-semantic"


def _semantic(probe: cache.Probe) -> dict:
    assert probe.semantic is not None
    return {"scope": probe.semantic.scope, "embedding": [1.0] + [0.0] * 383}


async def test_the_nearest_entry_of_the_scope_answers(ports: CachePorts) -> None:
    await remember(ports, ask(OTHER), replace(ANSWER, content="Orders: My orders > Cancel."))
    await remember(ports, ask())
    await remember(ports, ask("What payment methods do you accept?"))
    probe = await cache.lookup(ports, "acme", ask(PARAPHRASE))
    assert probe.response().content == ANSWER.content
    probe = await cache.lookup(ports, "acme", ask("How can I cancel my order?"))
    assert probe.response().content == "Orders: My orders > Cancel."


# --- hits, cleanup, grants, failures --------------------------------------------------------


async def test_hits_are_counted(ports: CachePorts, raw_conn: asyncpg.Connection) -> None:
    await remember(ports, ask())
    for text in (QUESTION, PARAPHRASE, QUESTION):
        await cache.count_hit(ports, await cache.lookup(ports, "acme", ask(text)))
    await cache.count_hit(ports, await cache.lookup(ports, "acme", ask(OTHER)))  # a miss
    row = await raw_conn.fetchrow("SELECT hits, last_hit_at FROM response_cache")
    assert row["hits"] == 3 and row["last_hit_at"] is not None


async def test_cleanup_deletes_expired_entries_in_batches(
    store: PostgresResponseCache, raw_conn: asyncpg.Connection
) -> None:
    for i in range(7):
        await store.put("acme", bytes([i]) * 32, "support", ANSWER, 3600)
    for i in range(3):
        await store.put("globex", bytes([i]) * 32, "support", ANSWER, 3600)
    await raw_conn.execute(
        "UPDATE response_cache SET expires_at = now() - interval '1 minute'"
        " WHERE tenant_id = 'globex' OR get_byte(request_key, 0) < 5"
    )
    assert await cache.purge_expired(store, batch_size=2, max_batches=2) == 4
    assert await cache.purge_expired(store, batch_size=2) == 4
    assert await cache.purge_expired(store, batch_size=2) == 0
    rows = await raw_conn.fetch(
        "SELECT tenant_id, get_byte(request_key, 0) AS b FROM response_cache"
    )
    assert sorted((r["tenant_id"], r["b"]) for r in rows) == [("acme", 5), ("acme", 6)]


async def test_the_app_role_can_use_the_cache(database_url: str, model: AsyncEmbedder) -> None:
    app_db = Database(database_url, role=APP_ROLE)
    try:
        ports = CachePorts(PostgresResponseCache(app_db), CONFIG, model, embed_timeout_s=30.0)
        probe = await remember(ports, ask())
        hit = await cache.lookup(ports, "acme", ask(PARAPHRASE))
        assert hit.status == "hit-semantic"
        await cache.count_hit(ports, hit)
        async with app_db.connection() as conn:
            assert await conn.fetchval("SELECT current_user") == APP_ROLE
            await conn.execute("UPDATE response_cache SET expires_at = now()")
        assert await cache.purge_expired(ports.store) == 1
        assert await ports.store.get("acme", probe.key) is None
    finally:
        await app_db.dispose()


class BrokenStore:
    async def get(self, tenant_id: str, key: bytes) -> CachedAnswer | None:
        raise ConnectionError("database down")

    async def nearest(self, *args) -> CachedAnswer | None:
        raise ConnectionError("database down")

    async def put(self, *args, **kwargs) -> bool:
        raise ConnectionError("database down")

    async def count_hit(self, tenant_id: str, key: bytes) -> None:
        raise ConnectionError("database down")

    async def purge_expired(self, limit: int) -> int:
        raise ConnectionError("database down")


class BrokenEmbedder:
    async def embed_query(self, text: str) -> Sequence[float]:
        raise RuntimeError("model failed")


async def test_a_failing_cache_is_a_miss_not_an_error(
    store: PostgresResponseCache, embedder: CountingEmbedder
) -> None:
    down = CachePorts(BrokenStore(), CONFIG, embedder)
    probe = await cache.lookup(down, "acme", ask())
    assert probe.status == "miss" and embedder.calls == 0
    assert not await cache.store(down, probe, ANSWER)
    semantic_only = CachePorts(BrokenStore(), replace(CONFIG, exact=False), embedder)
    assert (await cache.lookup(semantic_only, "acme", ask())).status == "miss"
    no_model = CachePorts(store, CONFIG, BrokenEmbedder())
    probe = await cache.lookup(no_model, "acme", ask())
    assert probe.status == "miss" and probe.embedding is None
    assert await cache.store(no_model, probe, ANSWER)  # still kept for exact hits
    assert (await cache.lookup(no_model, "acme", ask())).status == "hit-exact"
