"""The proxy's response caches as use cases: look a call up before the provider is
called, store a complete answer after, count hits, purge expired entries.

`lookup` runs on every proxied call, after `proxy.prepare` (so it sees the request
exactly as the provider would: the assembled window in stateful mode). The exact cache
costs one primary-key read. The semantic cache runs only when it is on, the exact one
missed, and the request is eligible (domain/proxy/cache_keys.py): it embeds the last
user turn (the main cost, ~6 ms with the ONNX query model) and compares it within its
scope. The returned Probe carries the key, scope and embedding, so `store` after a
miss does not derive or embed anything again.

A cache is an optimisation: a failing database or embedder is logged and taken as a
miss (or a skipped store); it never fails a call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from app.proxy_config import CacheConfig
from domain.context.ports import QueryEmbedder
from domain.ids import uuid7
from domain.proxy.cache_keys import (
    EXACT,
    SEMANTIC,
    CachedAnswer,
    SemanticQuery,
    exact_key,
    semantic_query,
    storable,
)
from domain.proxy.chat import ChatRequest, ChatResponse

log = logging.getLogger("contextgate.cache")


class ResponseCache(Protocol):
    """Where entries live (adapters/postgres/response_cache.py)."""

    async def get(self, tenant_id: str, key: bytes) -> CachedAnswer | None: ...

    async def nearest(
        self, tenant_id: str, scope: bytes, embedding: Sequence[float], min_similarity: float
    ) -> CachedAnswer | None: ...

    async def put(
        self,
        tenant_id: str,
        key: bytes,
        alias: str,
        response: ChatResponse,
        ttl_s: float,
        *,
        scope: bytes | None = None,
        embedding: Sequence[float] | None = None,
    ) -> bool:
        """Whether the semantic cache may serve the entry (False when not asked, or its
        scope is full)."""
        ...

    async def count_hit(self, tenant_id: str, key: bytes) -> None: ...

    async def purge_expired(self, limit: int) -> int: ...


@dataclass(frozen=True)
class CachePorts:
    store: ResponseCache
    config: CacheConfig
    # None: no semantic cache, whatever the config says.
    embedder: QueryEmbedder | None = None
    # The query embedding waits at most this long (a model still loading at start, a
    # busy thread): then the semantic cache is skipped for this call.
    embed_timeout_s: float = 0.5


@dataclass(frozen=True)
class Probe:
    """What `lookup` found and derived. `hit` is None on a miss; `status` is the
    X-Cache value: hit-exact, hit-semantic, miss, or off (no cache applies)."""

    tenant_id: str
    alias: str
    key: bytes
    semantic: SemanticQuery | None = None
    embedding: Sequence[float] | None = None
    hit: CachedAnswer | None = None
    enabled: bool = True

    @property
    def status(self) -> str:
        if self.hit is not None:
            return SEMANTIC if self.hit.similarity is not None else EXACT
        return "miss" if self.enabled else "off"

    def response(self) -> ChatResponse:
        """The hit's answer as this call's own: a fresh id and time (the stored entry
        keeps neither; ids name one call, and the Responses API looks answers up by
        them)."""
        assert self.hit is not None
        return replace(self.hit.response, id=f"chatcmpl-{uuid7().hex}", created=int(time.time()))


def semantic_enabled(ports: CachePorts) -> bool:
    return ports.config.semantic and ports.embedder is not None


async def lookup(
    ports: CachePorts, tenant_id: str, request: ChatRequest, *, read: bool = True
) -> Probe:
    """The cached answer to `request` for this tenant, if any (see the module's
    docstring). Never raises. `read=False` (the caller sent `Cache-Control: no-cache`:
    it wants a fresh answer) finds nothing but still prepares the store, so the fresh
    answer replaces the cached one, for the semantic cache too."""
    config = ports.config
    key = exact_key(tenant_id, request)
    semantic = (
        semantic_query(tenant_id, request, config.semantic_max_temperature)
        if semantic_enabled(ports)
        else None
    )
    probe = Probe(
        tenant_id, request.model, key, semantic, enabled=config.exact or semantic is not None
    )
    if config.exact and read:
        try:
            hit = await ports.store.get(tenant_id, key)
        except Exception:
            log.exception("exact cache lookup failed; answering as a miss")
            return replace(probe, semantic=None)  # the database is ailing: no embedding
        if hit is not None:
            return replace(probe, hit=hit)
    if semantic is None:
        return probe
    embedding = await _embed(ports, semantic.text)
    if embedding is None:
        return replace(probe, semantic=None)
    probe = replace(probe, embedding=embedding)
    if not read:
        return probe
    try:
        hit = await ports.store.nearest(
            tenant_id, semantic.scope, embedding, config.similarity_threshold
        )
    except Exception:
        log.exception("semantic cache lookup failed; answering as a miss")
        return probe
    return replace(probe, hit=hit) if hit is not None else probe


async def _embed(ports: CachePorts, text: str) -> Sequence[float] | None:
    assert ports.embedder is not None
    try:
        return await asyncio.wait_for(ports.embedder.embed_query(text), ports.embed_timeout_s)
    except TimeoutError:
        log.warning(
            "query embedding took over %.2f s; semantic cache skipped", ports.embed_timeout_s
        )
    except Exception:
        log.exception("query embedding failed; semantic cache skipped")
    return None


async def store(ports: CachePorts, probe: Probe, response: ChatResponse) -> bool:
    """Keep the answer to a call that missed, if it is complete (`storable`) and a
    cache is on; with an embedding from the lookup, the semantic cache may serve it
    too. Whether it was stored. Never raises."""
    if probe.hit is not None or not storable(response):
        return False
    semantic = probe.semantic if probe.embedding is not None else None
    if semantic is None and not ports.config.exact:
        return False  # nothing could ever serve it
    try:
        await ports.store.put(
            probe.tenant_id,
            probe.key,
            probe.alias,
            response,
            ports.config.ttl_s,
            scope=semantic.scope if semantic is not None else None,
            embedding=probe.embedding if semantic is not None else None,
        )
    except Exception:
        log.exception("could not store an answer in the response cache")
        return False
    return True


async def count_hit(ports: CachePorts, probe: Probe) -> None:
    """Bump the hit count of the entry that answered (run off the request path)."""
    if probe.hit is None:
        return
    try:
        await ports.store.count_hit(probe.tenant_id, probe.hit.key)
    except Exception:
        log.exception("could not count a response cache hit")


async def purge_expired(
    store: ResponseCache, *, batch_size: int = 1_000, max_batches: int = 100
) -> int:
    """Delete expired entries in batches of `batch_size` (short transactions, no long
    locks), at most `max_batches` of them per run; how many were deleted. For a
    scheduled job: what is left waits for the next run (expired rows are never served
    meanwhile)."""
    deleted = 0
    for _ in range(max_batches):
        n = await store.purge_expired(batch_size)
        deleted += n
        if n < batch_size:
            break
    return deleted
