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

# The append, as one call (after Message DB's write_message): lock the stream head, answer
# a repeated idempotency key with the first result, check existence, expected version
# and closure, finish the hash chain (the client sends each event's canonical encoding
# cut around its version: domain.hashing.envelope), insert, move the head. Errors carry
# SQLSTATEs CG001-CG004 that the adapter maps to domain errors.
APPEND_FUNCTION = r"""
CREATE FUNCTION cg_append(
    p_tenant text, p_stream text, p_expected integer, p_must_exist boolean, p_close boolean,
    p_event_ids uuid[], p_types text[], p_schema_versions smallint[], p_data text[],
    p_metadata text[], p_before bytea[], p_after bytea[], p_recorded_at timestamptz,
    p_idem_key text, p_fingerprint bytea)
RETURNS TABLE (global_position bigint, transaction_id bigint, stream_version integer,
               prev_hash bytea, hash bytea, replayed boolean)
LANGUAGE plpgsql
-- Runs with its owner's rights: the application role may append only through here, so
-- it cannot write an event with a hash of its own making.
SECURITY DEFINER
SET search_path FROM CURRENT
-- Plan each statement once per connection; custom re-planning cost ~0.2 ms a call.
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_version integer;
    v_head bytea;
    v_closed boolean;
    v_key record;
    v_n integer := cardinality(p_event_ids);
    v_prevs bytea[] := '{}';
    v_hashes bytea[] := '{}';
BEGIN
    -- Writers of one stream queue here. A transaction-scoped advisory lock rather than
    -- SELECT ... FOR UPDATE: same serialization, but no row-lock record in the WAL and no
    -- dirtied page (two hash-colliding streams merely share a queue). The head is read
    -- after the lock is held, by a later statement, so it is the committed latest.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant || '/' || p_stream, 0));
    SELECT s.version, s.head_hash, s.closed INTO v_version, v_head, v_closed
    FROM streams s WHERE s.tenant_id = p_tenant AND s.stream_id = p_stream;
    IF NOT FOUND THEN
        IF p_must_exist THEN
            RAISE EXCEPTION 'stream % does not exist', p_stream USING ERRCODE = 'CG004';
        END IF;
        INSERT INTO streams (tenant_id, stream_id, version, head_hash)
        VALUES (p_tenant, p_stream, 0, decode(repeat('00', 32), 'hex'));
        v_version := 0;
        v_head := decode(repeat('00', 32), 'hex');
        v_closed := false;
    END IF;

    IF p_idem_key IS NOT NULL THEN
        SELECT k.stream_id, k.fingerprint, k.first_version, k.last_version INTO v_key
        FROM idempotency_keys k WHERE k.tenant_id = p_tenant AND k.idem_key = p_idem_key;
        IF FOUND THEN
            IF v_key.stream_id <> p_stream OR v_key.fingerprint <> p_fingerprint THEN
                RAISE EXCEPTION 'idempotency key % was used for another request', p_idem_key
                    USING ERRCODE = 'CG002';
            END IF;
            RETURN QUERY
                SELECT e.global_position, e.transaction_id::text::bigint, e.stream_version,
                       e.prev_hash, e.hash, true
                FROM events e
                WHERE e.tenant_id = p_tenant AND e.stream_id = p_stream
                  AND e.stream_version BETWEEN v_key.first_version AND v_key.last_version
                ORDER BY e.stream_version;
            RETURN;
        END IF;
    END IF;

    IF p_must_exist AND v_version = 0 THEN
        RAISE EXCEPTION 'stream % does not exist', p_stream USING ERRCODE = 'CG004';
    END IF;
    IF p_expected IS NOT NULL AND p_expected <> v_version THEN
        RAISE EXCEPTION 'stream % is at version %, not %', p_stream, v_version, p_expected
            USING ERRCODE = 'CG001', DETAIL = v_version::text;
    END IF;
    IF v_closed THEN
        RAISE EXCEPTION 'stream % is closed', p_stream USING ERRCODE = 'CG003';
    END IF;

    FOR i IN 1..v_n LOOP
        v_prevs := v_prevs || v_head;
        v_head := sha256(v_head || p_before[i] || convert_to((v_version + i)::text, 'UTF8')
                         || p_after[i]);
        v_hashes := v_hashes || v_head;
    END LOOP;

    IF p_idem_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (tenant_id, idem_key, stream_id, fingerprint,
                                      first_version, last_version)
        VALUES (p_tenant, p_idem_key, p_stream, p_fingerprint, v_version + 1, v_version + v_n)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN  -- claimed meanwhile by an append to another stream
            RAISE EXCEPTION 'idempotency key % was used for another request', p_idem_key
                USING ERRCODE = 'CG002';
        END IF;
    END IF;

    UPDATE streams s SET version = v_version + v_n, head_hash = v_head,
                         closed = s.closed OR p_close
    WHERE s.tenant_id = p_tenant AND s.stream_id = p_stream;

    RETURN QUERY
        WITH ins AS (
            INSERT INTO events (event_id, tenant_id, stream_id, stream_version, type,
                                schema_version, data, metadata, recorded_at, prev_hash, hash)
            SELECT p_event_ids[i], p_tenant, p_stream, v_version + i, p_types[i],
                   p_schema_versions[i], p_data[i]::jsonb, p_metadata[i]::jsonb,
                   p_recorded_at, v_prevs[i], v_hashes[i]
            FROM generate_series(1, v_n) AS i
            ORDER BY i
            RETURNING events.global_position, events.transaction_id, events.stream_version,
                      events.prev_hash, events.hash)
        SELECT ins.global_position, ins.transaction_id::text::bigint, ins.stream_version,
               ins.prev_hash, ins.hash, false
        FROM ins ORDER BY ins.stream_version;
END
$$
"""

# Many appends (to any streams) in one call and one commit: the server's batcher sends
# what concurrent requests queued while earlier batches were in flight. The streams are
# locked in one global order first, so batches never deadlock each other. Each append
# runs in its own subtransaction: one that fails (a version conflict, a closed stream)
# reports its SQLSTATE in its row and takes nothing else down with it.
APPEND_BATCH_FUNCTION = r"""
CREATE FUNCTION cg_append_batch(
    p_tenants text[], p_streams text[], p_expected integer[], p_must_exist boolean[],
    p_close boolean[], p_idem_keys text[], p_fingerprints bytea[], p_recorded_at timestamptz[],
    p_first integer[], p_count integer[],
    p_event_ids uuid[], p_types text[], p_schema_versions smallint[], p_data text[],
    p_metadata text[], p_before bytea[], p_after bytea[])
RETURNS TABLE (request integer, global_position bigint, transaction_id bigint,
               stream_version integer, prev_hash bytea, hash bytea, replayed boolean,
               error_code text, error_detail text)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_lo integer;
    v_hi integer;
    v_code text;
    v_detail text;
BEGIN
    PERFORM pg_advisory_xact_lock(k.key)
    FROM (SELECT DISTINCT hashtextextended(p_tenants[i] || '/' || p_streams[i], 0) AS key
          FROM generate_subscripts(p_tenants, 1) AS i) k
    ORDER BY k.key;
    FOR r IN 1..cardinality(p_tenants) LOOP
        v_lo := p_first[r];
        v_hi := p_first[r] + p_count[r] - 1;
        BEGIN
            RETURN QUERY
                SELECT r, a.global_position, a.transaction_id, a.stream_version, a.prev_hash,
                       a.hash, a.replayed, NULL::text, NULL::text
                FROM cg_append(p_tenants[r], p_streams[r], p_expected[r], p_must_exist[r],
                               p_close[r], p_event_ids[v_lo:v_hi], p_types[v_lo:v_hi],
                               p_schema_versions[v_lo:v_hi], p_data[v_lo:v_hi],
                               p_metadata[v_lo:v_hi], p_before[v_lo:v_hi], p_after[v_lo:v_hi],
                               p_recorded_at[r], p_idem_keys[r], p_fingerprints[r]) a;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_detail = PG_EXCEPTION_DETAIL;
            RETURN QUERY SELECT r, NULL::bigint, NULL::bigint, NULL::integer, NULL::bytea,
                                NULL::bytea, NULL::boolean, v_code, v_detail;
        END;
    END LOOP;
END
$$
"""

# The `sessions` and `turns` projections of a range of one session stream's events.
# Incremental (the trigger below, in the append's transaction) and `contextgate replay`
# run this same function. Each sessions row keeps the last stream version it applied,
# so events at or below it are skipped: applying twice changes nothing.
PROJECT_SESSION_FUNCTION = r"""
CREATE FUNCTION cg_project_session(p_tenant text, p_stream text, p_from integer, p_to integer)
RETURNS void LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_session text := substr(p_stream, length('session:') + 1);
    v_version integer;
    v_turns integer;
    v_from integer;
BEGIN
    IF p_from = 1 THEN  -- a session stream opens with SessionOpened at version 1
        INSERT INTO sessions (tenant_id, session_id, title, user_id, status, metadata,
                              created_at, last_activity_at, version)
        SELECT e.tenant_id, v_session, e.data->>'title', e.data->>'user_id', 'open',
               coalesce(e.data->'metadata', '{}'::jsonb), e.recorded_at, e.recorded_at,
               e.stream_version
        FROM events e
        WHERE e.tenant_id = p_tenant AND e.stream_id = p_stream AND e.stream_version = 1
          AND e.type = 'SessionOpened'
        ON CONFLICT DO NOTHING;
    END IF;

    SELECT s.version, s.turn_count INTO v_version, v_turns
    FROM sessions s WHERE s.tenant_id = p_tenant AND s.session_id = v_session;
    IF NOT FOUND THEN
        RETURN;  -- events of a session that was never opened: nothing to show
    END IF;
    -- Events at or below the row's version were applied already. A plain bound (not a
    -- join) keeps this an index range scan: the cost must not grow with the history.
    v_from := greatest(p_from, v_version + 1);
    IF v_from > p_to THEN
        RETURN;
    END IF;

    -- One statement: the new events, their turns, the session's totals.
    WITH ev AS (
        SELECT e.stream_version, e.global_position, e.event_id, e.type, e.data,
               e.recorded_at,
               e.type IN ('UserMessage', 'AssistantMessage', 'SystemMessage', 'ToolResult')
                   AS is_turn
        FROM events e
        WHERE e.tenant_id = p_tenant AND e.stream_id = p_stream
          AND e.stream_version BETWEEN v_from AND p_to
    ), new_turns AS (
        INSERT INTO turn_rows (tenant_id, session_id, seq, stream_version, global_position,
                           event_id, role, name, tokens, created_at)
        SELECT p_tenant, v_session,
               v_turns + row_number() OVER (ORDER BY ev.stream_version),
               ev.stream_version, ev.global_position, ev.event_id,
               CASE ev.type WHEN 'UserMessage' THEN 'user'
                            WHEN 'AssistantMessage' THEN 'assistant'
                            WHEN 'SystemMessage' THEN 'system' ELSE 'tool' END,
               ev.data->>'name',
               coalesce((ev.data->>'tokens')::integer, 0), ev.recorded_at
        FROM ev WHERE ev.is_turn
    ), new_summaries AS (
        INSERT INTO summary_rows (tenant_id, session_id, level, from_version, to_version,
                                  tokens, summarizer, global_position, created_at)
        SELECT p_tenant, v_session, (ev.data->>'level')::integer,
               (ev.data->>'from_version')::integer, (ev.data->>'to_version')::integer,
               coalesce((ev.data->>'tokens')::integer, 0), ev.data->>'summarizer',
               ev.global_position, ev.recorded_at
        FROM ev WHERE ev.type = 'SummaryRecorded'
        ON CONFLICT DO NOTHING
    )
    UPDATE sessions u
    SET version = a.last_version,
        turn_count = u.turn_count + a.turns,
        tokens_total = u.tokens_total + a.tokens,
        cost_total = u.cost_total + a.cost,
        last_activity_at = coalesce(a.last_at, u.last_activity_at),
        status = CASE WHEN a.closed_at IS NULL THEN u.status ELSE 'closed' END,
        closed_at = coalesce(a.closed_at, u.closed_at),
        summarized_to_version = greatest(u.summarized_to_version, a.summarized_to),
        compacted_to_version = greatest(u.compacted_to_version, a.compacted_to),
        compacted_at = coalesce(a.compacted_at, u.compacted_at)
    FROM (
        SELECT max(ev.stream_version) AS last_version,
               count(*) FILTER (WHERE ev.is_turn) AS turns,
               coalesce(sum((ev.data->>'tokens')::integer) FILTER (WHERE ev.is_turn), 0)
                   AS tokens,
               coalesce(sum((ev.data->>'cost')::numeric)
                        FILTER (WHERE ev.type = 'AssistantMessage'), 0) AS cost,
               -- Activity is the conversation: summaries and compaction do not count.
               max(ev.recorded_at) FILTER (WHERE ev.is_turn OR ev.type = 'SessionClosed')
                   AS last_at,
               max(ev.recorded_at) FILTER (WHERE ev.type = 'SessionClosed') AS closed_at,
               coalesce(max((ev.data->>'to_version')::integer)
                        FILTER (WHERE ev.type = 'SummaryRecorded'), 0) AS summarized_to,
               coalesce(max((ev.data->>'up_to_version')::integer)
                        FILTER (WHERE ev.type = 'SessionCompacted'), 0) AS compacted_to,
               max(ev.recorded_at) FILTER (WHERE ev.type = 'SessionCompacted') AS compacted_at
        FROM ev WHERE ev.type <> 'SessionOpened'
    ) a
    WHERE u.tenant_id = p_tenant AND u.session_id = v_session AND a.last_version IS NOT NULL;
END
$$
"""

# Inline projections run for every statement that inserts events, whatever the path.
PROJECT_TRIGGER_FUNCTION = r"""
CREATE FUNCTION cg_project_new_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT n.tenant_id, n.stream_id, min(n.stream_version) AS first_version,
               max(n.stream_version) AS last_version
        FROM new_events n WHERE n.stream_id LIKE 'session:%'
        GROUP BY n.tenant_id, n.stream_id
    LOOP
        PERFORM cg_project_session(r.tenant_id, r.stream_id, r.first_version, r.last_version);
    END LOOP;
    RETURN NULL;
END
$$
"""

# The role the server works as (CONTEXTGATE_DB_ROLE): it reads the log and appends only
# through cg_append; it is granted no UPDATE, DELETE or TRUNCATE on the log. Created
# when the migrating user may create roles; skipped (with a notice) otherwise.
APP_ROLE = r"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'contextgate_app') THEN
        BEGIN
            CREATE ROLE contextgate_app NOLOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'cannot create role contextgate_app; grant the privileges yourself';
            RETURN;
        END;
    END IF;
    GRANT USAGE ON SCHEMA public TO contextgate_app;
    GRANT SELECT ON events, streams, idempotency_keys TO contextgate_app;
    GRANT SELECT, INSERT, UPDATE, TRUNCATE ON sessions, turn_rows TO contextgate_app;
    GRANT SELECT ON turns TO contextgate_app;
    GRANT SELECT, INSERT, UPDATE, TRUNCATE ON summary_rows TO contextgate_app;
    GRANT SELECT ON summaries TO contextgate_app;
    GRANT SELECT, INSERT, UPDATE ON projection_checkpoints, api_keys TO contextgate_app;
    GRANT SELECT ON alembic_version TO contextgate_app;
    GRANT EXECUTE ON FUNCTION cg_append(text, text, integer, boolean, boolean, uuid[],
        text[], smallint[], text[], text[], bytea[], bytea[], timestamptz, text, bytea),
        cg_append_batch(text[], text[], integer[], boolean[], boolean[], text[], bytea[],
        timestamptz[], integer[], integer[], uuid[], text[], smallint[], text[], text[],
        bytea[], bytea[]),
        cg_project_session(text, text, integer, integer) TO contextgate_app;
END
$$
"""

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
        closed    boolean NOT NULL DEFAULT false,
        PRIMARY KEY (tenant_id, stream_id)
    ) WITH (fillfactor = 50)
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
        summarized_to_version integer NOT NULL DEFAULT 0,
        compacted_to_version  integer NOT NULL DEFAULT 0,
        compacted_at     timestamptz,
        PRIMARY KEY (tenant_id, session_id)
    ) WITH (fillfactor = 50)
    """,
    "CREATE INDEX sessions_by_created ON sessions (tenant_id, created_at DESC, session_id DESC)",
    # No index on last_activity_at: it changes on every append, and an index on it
    # would turn each of those HOT updates into a full one (3 more index inserts).
    "CREATE INDEX sessions_by_user ON sessions (tenant_id, user_id) WHERE user_id IS NOT NULL",
    # One row per message. Its text stays in the log alone (the `turns` view joins it
    # back by primary key): a second copy of every message would double the bytes each
    # append writes, and be one more place an erasure has to reach.
    """
    CREATE TABLE turn_rows (
        tenant_id       text        NOT NULL,
        session_id      text        NOT NULL,
        seq             integer     NOT NULL,
        stream_version  integer     NOT NULL,
        global_position bigint      NOT NULL,
        event_id        uuid        NOT NULL,
        role            text        NOT NULL,
        name            text,
        tokens          integer     NOT NULL,
        created_at      timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, session_id, seq)
    )
    """,
    """
    CREATE VIEW turns AS
    SELECT t.tenant_id, t.session_id, t.seq, t.stream_version, t.global_position,
           t.event_id, t.role, coalesce(e.data->>'content', '') AS content, t.name, t.tokens,
           t.created_at
    FROM turn_rows t
    JOIN events e ON e.tenant_id = t.tenant_id AND e.global_position = t.global_position
    """,
    # Rolling summaries (SummaryRecorded), their text joined from the log by `summaries`.
    """
    CREATE TABLE summary_rows (
        tenant_id       text        NOT NULL,
        session_id      text        NOT NULL,
        level           integer     NOT NULL,
        from_version    integer     NOT NULL,
        to_version      integer     NOT NULL,
        tokens          integer     NOT NULL,
        summarizer      text,
        global_position bigint      NOT NULL,
        created_at      timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, session_id, level, to_version)
    )
    """,
    """
    CREATE VIEW summaries AS
    SELECT s.tenant_id, s.session_id, s.level, s.from_version, s.to_version,
           coalesce(e.data->>'text', '') AS text, s.tokens, s.summarizer, s.global_position,
           s.created_at
    FROM summary_rows s
    JOIN events e ON e.tenant_id = s.tenant_id AND e.global_position = s.global_position
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
    APPEND_FUNCTION,
    APPEND_BATCH_FUNCTION,
    PROJECT_SESSION_FUNCTION,
    PROJECT_TRIGGER_FUNCTION,
    """
    CREATE TRIGGER events_project AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION cg_project_new_events()
    """,
    APP_ROLE,
]

DOWNGRADE = [
    # The role is shared by every database of the server; it is left in place.
    "DROP TRIGGER events_project ON events",
    "DROP FUNCTION cg_project_new_events()",
    "DROP FUNCTION cg_project_session(text, text, integer, integer)",
    "DROP FUNCTION cg_append_batch(text[], text[], integer[], boolean[], boolean[], text[],"
    " bytea[], timestamptz[], integer[], integer[], uuid[], text[], smallint[], text[], text[],"
    " bytea[], bytea[])",
    "DROP FUNCTION cg_append(text, text, integer, boolean, boolean, uuid[], text[], smallint[],"
    " text[], text[], bytea[], bytea[], timestamptz, text, bytea)",
    "DROP TABLE api_keys",
    "DROP TABLE projection_checkpoints",
    "DROP VIEW summaries",
    "DROP TABLE summary_rows",
    "DROP VIEW turns",
    "DROP TABLE turn_rows",
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
