"""The embeddings projection: one row per message turn, its vector and its full-text terms.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

A catch-up projection (app/workers/embeddings.py), rebuilt from the log at will. The
message text is not stored again: it lives in `events` (join on tenant_id and
global_position). Search reads are in adapters/postgres/search.py.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# With btree_gin one GIN index serves full-text queries scoped to a session, to a user's
# sessions or to a whole tenant: GIN matches any subset of its columns equally well, and
# intersects the session's (or user's) posting list with the terms' inside the index
# instead of filtering the heap. btree_gin ships with PostgreSQL's contrib and is a
# trusted extension; where it is missing, the index covers tsv alone (same results,
# tenant and session checked on the heap rows).
TEXT_INDEX = r"""
DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS btree_gin;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'btree_gin is not available (%): full-text index on tsv alone', SQLERRM;
    END;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'btree_gin') THEN
        CREATE INDEX turn_embeddings_text
            ON turn_embeddings USING gin (tenant_id, session_id, user_id, tsv);
    ELSE
        CREATE INDEX turn_embeddings_text ON turn_embeddings USING gin (tsv);
    END IF;
END
$$
"""

APP_ROLE = r"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'contextgate_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON turn_embeddings TO contextgate_app;
    END IF;
END
$$
"""

UPGRADE = [
    # seq and stream_version follow the turn_rows row; user_id is copied from the session
    # so that "this user's other sessions" needs no join. Every key leads with tenant_id.
    """
    CREATE TABLE turn_embeddings (
        tenant_id       text        NOT NULL,
        session_id      text        NOT NULL,
        seq             integer     NOT NULL,
        stream_version  integer     NOT NULL,
        global_position bigint      NOT NULL,
        created_at      timestamptz NOT NULL,
        user_id         text,
        role            text        NOT NULL,
        embedding       vector(384) NOT NULL,
        tsv             tsvector    NOT NULL,
        PRIMARY KEY (tenant_id, session_id, seq)
    )
    """,
    # Keep the 1.5 kB vector in the heap row (pgvector's default storage lets the toaster
    # move it out of line once a row passes ~2 kB, and every distance would then cost a
    # TOAST fetch); a long tsvector is moved out instead.
    "ALTER TABLE turn_embeddings ALTER COLUMN embedding SET STORAGE PLAIN",
    # Defaults (m=16, ef_construction=64). Reads tune hnsw.ef_search and the iterative
    # scan per transaction (search.py) so a session filter does not starve the scan.
    """
    CREATE INDEX turn_embeddings_hnsw ON turn_embeddings
        USING hnsw (embedding vector_cosine_ops)
    """,
    TEXT_INDEX,
    # The same user's sessions: exact vector search over a small user, bounded counts.
    """
    CREATE INDEX turn_embeddings_by_user ON turn_embeddings (tenant_id, user_id, session_id, seq)
        WHERE user_id IS NOT NULL
    """,
    APP_ROLE,
]

DOWNGRADE = [
    # btree_gin stays: other objects may use it, and it holds no data.
    "DROP TABLE turn_embeddings",
    "DELETE FROM projection_checkpoints WHERE name = 'embeddings'",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
