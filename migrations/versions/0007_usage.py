"""Usage per tenant, API key, model and day: a projection of the answers in the log.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

Rows are added to by `cg_project_usage(batch)`, which folds the answers the proxy
recorded (AssistantMessage events with a routing decision) after its checkpoint
(`projection_checkpoints`, name 'usage') into the day's totals and moves the
checkpoint, in one statement. It runs off the request path (a worker every
second) and before `GET /v1/usage` answers, so a report is never stale; one row per
(tenant, day, key, model) stays small however many calls there are (no per-call spend
log to grow without bound). The checkpoint row is locked first, so replicas running it
at once take turns; the xid8 rule (PgEventStore.read_all) keeps it from skipping an
event whose transaction commits late.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLE = """
CREATE TABLE usage_daily (
    tenant_id     text           NOT NULL,
    day           date           NOT NULL,
    key_id        text           NOT NULL,  -- '' when the answer was recorded without a key
    model         text           NOT NULL,
    calls         bigint         NOT NULL DEFAULT 0,
    input_tokens  bigint         NOT NULL DEFAULT 0,
    output_tokens bigint         NOT NULL DEFAULT 0,
    cached_tokens bigint         NOT NULL DEFAULT 0,
    cache_hits    bigint         NOT NULL DEFAULT 0,
    cost          numeric(24, 10) NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, key_id, model)
)
"""

FUNCTION = r"""
CREATE FUNCTION cg_project_usage(p_batch integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_tx xid8;
    v_pos bigint;
    v_count integer;
BEGIN
    INSERT INTO projection_checkpoints (name, transaction_id, global_position)
    VALUES ('usage', '0', 0) ON CONFLICT DO NOTHING;
    SELECT transaction_id, global_position INTO v_tx, v_pos
    FROM projection_checkpoints WHERE name = 'usage' FOR UPDATE;

    WITH batch AS MATERIALIZED (
        SELECT e.transaction_id, e.global_position, e.tenant_id, e.type, e.data,
               e.metadata, e.recorded_at
        FROM events e
        WHERE (e.transaction_id, e.global_position) > (v_tx, v_pos)
          AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY e.transaction_id, e.global_position
        LIMIT p_batch
    ), added AS (
        INSERT INTO usage_daily AS u (tenant_id, day, key_id, model, calls, input_tokens,
                                      output_tokens, cached_tokens, cache_hits, cost)
        SELECT b.tenant_id, (b.recorded_at AT TIME ZONE 'UTC')::date,
               coalesce(b.metadata->>'key_id', ''), coalesce(b.data->>'model', ''),
               count(*),
               sum(coalesce((b.data->'usage'->>'input_tokens')::bigint, 0)),
               sum(coalesce((b.data->'usage'->>'output_tokens')::bigint, 0)),
               sum(coalesce((b.data->'usage'->>'cached_tokens')::bigint, 0)),
               count(*) FILTER (WHERE coalesce((b.data->>'cached')::boolean, false)),
               sum(coalesce((b.metadata->>'cost')::numeric, (b.data->>'cost')::numeric, 0))
        FROM batch b
        -- the answers the proxy recorded (a turn a client appended is not a call)
        WHERE b.type = 'AssistantMessage' AND b.metadata ? 'route'
        GROUP BY 1, 2, 3, 4
        ON CONFLICT (tenant_id, day, key_id, model) DO UPDATE
        SET calls = u.calls + excluded.calls,
            input_tokens = u.input_tokens + excluded.input_tokens,
            output_tokens = u.output_tokens + excluded.output_tokens,
            cached_tokens = u.cached_tokens + excluded.cached_tokens,
            cache_hits = u.cache_hits + excluded.cache_hits,
            cost = u.cost + excluded.cost
    ), last AS (
        SELECT transaction_id, global_position, (SELECT count(*) FROM batch) AS n
        FROM batch ORDER BY transaction_id DESC, global_position DESC LIMIT 1
    )
    UPDATE projection_checkpoints p
    SET transaction_id = last.transaction_id, global_position = last.global_position,
        updated_at = now()
    FROM last WHERE p.name = 'usage'
    RETURNING last.n INTO v_count;
    RETURN coalesce(v_count, 0);
END
$$
"""

GRANTS = r"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'contextgate_app') THEN
        GRANT SELECT ON usage_daily TO contextgate_app;
        GRANT EXECUTE ON FUNCTION cg_project_usage(integer) TO contextgate_app;
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute(TABLE)
    op.execute(FUNCTION)
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute("DROP FUNCTION cg_project_usage(integer)")
    op.execute("DROP TABLE usage_daily")
    op.execute("DELETE FROM projection_checkpoints WHERE name = 'usage'")
