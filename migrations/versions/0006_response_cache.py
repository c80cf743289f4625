"""The proxy's response caches: exact (by request hash) and semantic (pgvector), one table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

A cache, not a record: rows are written on a miss, read on the request path, and
deleted when they expire (the event log keeps what each call was answered). Keys are
derived in domain/proxy/cache_keys.py; reads and writes are in
adapters/postgres/response_cache.py. No prompt text is stored: only hashes, the
answer, and for semantic entries the embedding of the caller's last user turn.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APP_ROLE = r"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'contextgate_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON response_cache TO contextgate_app;
    END IF;
END
$$
"""

UPGRADE = [
    # request_key: sha256 of the canonical request (exact_key). scope: sha256 of all of
    # it but the last user turn's wording (semantic_query), with the embedding of that
    # turn; both NULL for an entry the semantic cache may not serve. hits is counted
    # off the request path; fillfactor leaves room for those updates to stay HOT.
    """
    CREATE TABLE response_cache (
        tenant_id    text        NOT NULL,
        request_key  bytea       NOT NULL,
        alias        text        NOT NULL,
        response     jsonb       NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        expires_at   timestamptz NOT NULL,
        hits         bigint      NOT NULL DEFAULT 0,
        last_hit_at  timestamptz,
        scope        bytea,
        embedding    vector(384),
        PRIMARY KEY (tenant_id, request_key),
        CHECK ((scope IS NULL) = (embedding IS NULL))
    ) WITH (fillfactor = 90)
    """,
    # Keep the vector in the heap row: the semantic scan computes a distance per row,
    # and an out-of-line vector would cost a TOAST fetch each (see 0002).
    "ALTER TABLE response_cache ALTER COLUMN embedding SET STORAGE PLAIN",
    # The semantic lookup: a scope's live entries (expires_at in the index skips expired
    # ones without reading them), compared exactly; the writer caps a scope's entries
    # (adapters/postgres/response_cache.py). No HNSW index: a scope is a tiny share of
    # the table, where a filtered HNSW scan is slow and inexact (adapters/postgres/search.py).
    """
    CREATE INDEX response_cache_scope ON response_cache (tenant_id, scope, expires_at)
        WHERE scope IS NOT NULL
    """,
    # The cleanup job's batches, oldest expiry first.
    "CREATE INDEX response_cache_expiry ON response_cache (expires_at)",
    APP_ROLE,
]

DOWNGRADE = ["DROP TABLE response_cache"]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
