"""The proxy's response caches in PostgreSQL (table `response_cache`, migration 0006).

Every statement is one round trip on a pooled connection, prepared once per connection
by asyncpg's statement cache:

- `get`: the exact cache, by primary key (tenant_id, request_key), live rows only;
- `nearest`: the semantic cache. The scope's live entries are read through
  `response_cache_scope` and their cosine distances to the query computed exactly; the
  nearest within the threshold wins, its answer read by primary key. Exact over the
  scope rather than an HNSW index: a scope (tenant, alias, system prompt, prior
  conversation, parameters) is a tiny share of the table, where a filtered HNSW scan
  is slow and inexact (adapters/postgres/search.py), and a threshold wants exact
  distances. What bounds the work is the cap: a scope holds at most `scope_cap` live
  semantic entries (measured: p50 0.85 ms for a lookup in a full scope of 2,000, 0.2 ms
  in a scope of 20, one round trip and PostgreSQL's work included); a popular
  scope's later answers are stored for exact hits only until older ones expire. The
  cap is enforced when writing, so every plan the planner may choose reads at most
  that many rows (ordering by age with a LIMIT at read time instead tempted it into
  scanning the expiry index backwards across all tenants: 39 ms for one lookup);
- `put`: an upsert (a newer answer to the same request replaces the older one), which
  also checks the scope's cap;
- `count_hit`: bumps the hit count (called off the request path);
- `purge_expired`: deletes up to `limit` expired rows (the cleanup job's batch).

Expired rows are never served: every read checks `expires_at > now()`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from adapters.postgres.database import Database
from domain.proxy.cache_keys import CachedAnswer
from domain.proxy.chat import ChatResponse, ToolCall, Usage

SCOPE_CAP = 2_000

GET = """SELECT response FROM response_cache
    WHERE tenant_id = $1 AND request_key = $2 AND expires_at > now()"""

# $1 tenant, $2 scope, $3 query vector (a real[]: asyncpg sends it in binary, where the
# text form of a vector took ~0.26 ms to write in Python and more to parse; cast once,
# in an InitPlan, not per row), $4 the largest cosine distance that is a hit. Reads the
# scope's live rows through response_cache_scope: at most SCOPE_CAP of them.
NEAREST = """
WITH best AS (
    SELECT request_key, embedding <=> (SELECT $3::real[]::vector) AS distance
    FROM response_cache
    WHERE tenant_id = $1 AND scope = $2 AND expires_at > now()
    ORDER BY distance
    LIMIT 1
)
SELECT b.request_key, b.distance, c.response
FROM best b
JOIN response_cache c ON c.tenant_id = $1 AND c.request_key = b.request_key
WHERE b.distance <= $4 AND c.expires_at > now()"""

# $1 tenant, $2 key, $3 alias, $4 response, $5 TTL in seconds, $6 scope and $7 embedding
# (both NULL: exact only), $8 the scope's cap. A scope that already holds $8 live
# entries gets this one for exact hits only (concurrent writers may pass the cap by a
# few: it bounds the cost of a lookup, it is not an invariant).
PUT = """
WITH scope_full AS (
    SELECT count(*) >= $8 AS full FROM (
        SELECT 1 FROM response_cache
        WHERE $6::bytea IS NOT NULL AND tenant_id = $1 AND scope = $6::bytea
            AND expires_at > now() AND request_key <> $2
        LIMIT $8) s
)
INSERT INTO response_cache
    (tenant_id, request_key, alias, response, created_at, expires_at, scope, embedding)
SELECT $1, $2, $3, $4::jsonb, now(), now() + make_interval(secs => $5),
    CASE WHEN f.full THEN NULL ELSE $6::bytea END,
    CASE WHEN f.full THEN NULL ELSE $7::real[]::vector END
FROM scope_full f
ON CONFLICT (tenant_id, request_key) DO UPDATE SET
    alias = EXCLUDED.alias, response = EXCLUDED.response,
    created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,
    hits = 0, last_hit_at = NULL, scope = EXCLUDED.scope, embedding = EXCLUDED.embedding
RETURNING scope IS NOT NULL AS semantic"""

COUNT_HIT = """UPDATE response_cache SET hits = hits + 1, last_hit_at = now()
    WHERE tenant_id = $1 AND request_key = $2"""

# The oldest expired rows first; rows another cleanup holds are skipped, and a row
# refreshed meanwhile (put after expiry) is left alone.
PURGE = """
WITH doomed AS (
    SELECT tenant_id, request_key FROM response_cache
    WHERE expires_at <= now()
    ORDER BY expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
DELETE FROM response_cache c USING doomed d
WHERE c.tenant_id = d.tenant_id AND c.request_key = d.request_key AND c.expires_at <= now()"""


def encode_response(response: ChatResponse) -> str:
    """The answer as stored (JSON text): what a hit needs to render it again. The id and
    time are not kept; a hit gets its own."""
    usage = response.usage
    return json.dumps(
        {
            "model": response.model,
            "content": response.content,
            "tool_calls": [[c.id, c.name, c.arguments] for c in response.tool_calls],
            "finish_reason": response.finish_reason,
            "usage": None
            if usage is None
            else [usage.input_tokens, usage.output_tokens, usage.cached_tokens],
            "stop_sequence": response.stop_sequence,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def decode_response(data: Any) -> ChatResponse:
    """A stored answer (a dict from the pool's jsonb codec, or JSON text from a plain
    connection) as a ChatResponse with an empty id and time."""
    doc: dict[str, Any] = json.loads(data) if isinstance(data, str | bytes) else data
    usage = doc.get("usage")
    return ChatResponse(
        id="",
        model=doc["model"],
        content=doc["content"],
        tool_calls=tuple(ToolCall(i, n, a) for i, n, a in doc["tool_calls"]),
        finish_reason=doc["finish_reason"],
        usage=None if usage is None else Usage(*usage),
        stop_sequence=doc.get("stop_sequence"),
    )


def _floats(embedding: Sequence[float]) -> list[float]:
    return embedding if isinstance(embedding, list) else list(embedding)


class PostgresResponseCache:
    def __init__(self, db: Database, *, scope_cap: int = SCOPE_CAP) -> None:
        self.db = db
        self.scope_cap = scope_cap

    async def get(self, tenant_id: str, key: bytes) -> CachedAnswer | None:
        async with self.db.connection() as conn:
            data = await conn.fetchval(GET, tenant_id, key)
        if data is None:
            return None
        return CachedAnswer(key, decode_response(data))

    async def nearest(
        self, tenant_id: str, scope: bytes, embedding: Sequence[float], min_similarity: float
    ) -> CachedAnswer | None:
        """The scope's live entry most similar to `embedding` (unit vectors), if its
        cosine similarity is at least `min_similarity`."""
        async with self.db.connection() as conn:
            row = await conn.fetchrow(
                NEAREST,
                tenant_id,
                scope,
                _floats(embedding),
                1.0 - min_similarity,
            )
        if row is None:
            return None
        return CachedAnswer(
            row["request_key"], decode_response(row["response"]), 1.0 - float(row["distance"])
        )

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
        """Store (or replace) the answer to the request `key` for `ttl_s` seconds; with
        `scope` and `embedding`, the semantic cache may serve it too, unless the scope
        is full. Whether the semantic cache may serve it."""
        if (scope is None) != (embedding is None):
            raise ValueError("a semantic entry needs both its scope and its embedding")
        vector = None if embedding is None else _floats(embedding)
        async with self.db.connection() as conn:
            semantic: bool = await conn.fetchval(
                PUT, tenant_id, key, alias, encode_response(response), float(ttl_s), scope,
                vector, self.scope_cap,
            )  # fmt: skip
        return semantic

    async def count_hit(self, tenant_id: str, key: bytes) -> None:
        async with self.db.connection() as conn:
            await conn.execute(COUNT_HIT, tenant_id, key)

    async def purge_expired(self, limit: int) -> int:
        """Delete up to `limit` expired entries; how many were deleted."""
        async with self.db.connection() as conn:
            status: str = await conn.execute(PURGE, limit)
        return int(status.rsplit(" ", 1)[-1])
