"""The event log, its stream heads and idempotency keys, the session projections, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    # The log. Keys all lead with tenant_id so the table can be distributed by tenant.
    """
    CREATE TABLE events (
        global_position bigint GENERATED ALWAYS AS IDENTITY,
        transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
        event_id        uuid        NOT NULL,
        tenant_id       text        NOT NULL,
        stream_id       text        NOT NULL,
        stream_version  integer     NOT NULL CHECK (stream_version > 0),
        type            text        NOT NULL,
        schema_version  smallint    NOT NULL CHECK (schema_version > 0),
        data            jsonb       NOT NULL,
        metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
        recorded_at     timestamptz NOT NULL,
        prev_hash       bytea       NOT NULL CHECK (length(prev_hash) = 32),
        hash            bytea       NOT NULL CHECK (length(hash) = 32),
        PRIMARY KEY (tenant_id, global_position),
        UNIQUE (tenant_id, event_id),
        UNIQUE (tenant_id, stream_id, stream_version)
    )
    """,
    # Readers of the whole log follow (transaction_id, global_position).
    "CREATE INDEX events_by_transaction ON events (transaction_id, global_position)",
    """
    CREATE FUNCTION contextgate_reject_event_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'append a new event (for example SubjectErased) instead';
    END
    $$
    """,
    """
    CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION contextgate_reject_event_change()
    """,
    """
    CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION contextgate_reject_event_change()
    """,
    # The head of each stream: its version and last hash. Appends lock this row, which
    # serializes writers of one stream without touching other streams.
    """
    CREATE TABLE streams (
        tenant_id text    NOT NULL,
        stream_id text    NOT NULL,
        version   integer NOT NULL,
        head_hash bytea   NOT NULL,
        PRIMARY KEY (tenant_id, stream_id)
    )
    """,
    """
    CREATE TABLE idempotency_keys (
        tenant_id     text        NOT NULL,
        idem_key      text        NOT NULL,
        stream_id     text        NOT NULL,
        fingerprint   bytea       NOT NULL,
        first_version integer     NOT NULL,
        last_version  integer     NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, idem_key)
    )
    """,
    # Projections. `version` is the last stream version applied: the per-session
    # checkpoint that makes re-applying an event a no-op.
    """
    CREATE TABLE sessions (
        tenant_id        text        NOT NULL,
        session_id       text        NOT NULL,
        title            text,
        user_id          text,
        status           text        NOT NULL,
        metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
        created_at       timestamptz NOT NULL,
        last_activity_at timestamptz NOT NULL,
        closed_at        timestamptz,
        turn_count       integer     NOT NULL DEFAULT 0,
        tokens_total     bigint      NOT NULL DEFAULT 0,
        cost_total       numeric     NOT NULL DEFAULT 0,
        version          integer     NOT NULL,
        PRIMARY KEY (tenant_id, session_id)
    )
    """,
    "CREATE INDEX sessions_by_created ON sessions (tenant_id, created_at DESC, session_id DESC)",
    "CREATE INDEX sessions_by_activity ON sessions (tenant_id, last_activity_at DESC)",
    "CREATE INDEX sessions_by_user ON sessions (tenant_id, user_id) WHERE user_id IS NOT NULL",
    """
    CREATE TABLE turns (
        tenant_id       text        NOT NULL,
        session_id      text        NOT NULL,
        seq             integer     NOT NULL,
        stream_version  integer     NOT NULL,
        global_position bigint      NOT NULL,
        event_id        uuid        NOT NULL,
        role            text        NOT NULL,
        content         text        NOT NULL,
        name            text,
        tokens          integer     NOT NULL,
        created_at      timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, session_id, seq)
    )
    """,
    # Where each catch-up projection stands in the log, and when a rebuild last ran.
    """
    CREATE TABLE projection_checkpoints (
        name            text        PRIMARY KEY,
        transaction_id  xid8        NOT NULL,
        global_position bigint      NOT NULL,
        updated_at      timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE api_keys (
        tenant_id  text        NOT NULL,
        key_id     text        NOT NULL,
        key_hash   bytea       NOT NULL,
        name       text        NOT NULL,
        roles      text[]      NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz,
        PRIMARY KEY (tenant_id, key_id)
    )
    """,
    "CREATE INDEX api_keys_by_hash ON api_keys (key_hash)",
]

DOWNGRADE = [
    "DROP TABLE api_keys",
    "DROP TABLE projection_checkpoints",
    "DROP TABLE turns",
    "DROP TABLE sessions",
    "DROP TABLE idempotency_keys",
    "DROP TABLE streams",
    "DROP TABLE events",
    "DROP FUNCTION contextgate_reject_event_change()",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
