"""The `turns` view finds each turn's event by every column of its three unique keys.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

Joined on (tenant_id, global_position) alone, a young database (before autovacuum's
first ANALYZE) could not tell the primary key from the other unique indexes of
`events`: the planner probed (tenant_id, stream_id, stream_version) or (tenant_id,
event_id) by tenant alone and filtered on the position, ~150 buffers a turn, so reading
a session's newest 200 turns took 10-20 ms at 1,000 events and grew with the log. With
every key's columns in the join, whichever index is picked finds the event in one
probe. Same columns, same rows (a turn's event is its own, in its session's stream).
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

VIEW = """
    SELECT t.tenant_id, t.session_id, t.seq, t.stream_version, t.global_position,
           t.event_id, t.role, coalesce(e.data->>'content', '') AS content, t.name, t.tokens,
           t.created_at,
           e.data->>'tool_call_id' AS tool_call_id, e.data->'tool_calls' AS tool_calls
    FROM turn_rows t
    JOIN events e ON e.tenant_id = t.tenant_id AND e.global_position = t.global_position
{extra}"""
BY_STREAM = """        AND e.stream_id = 'session:' || t.session_id
        AND e.stream_version = t.stream_version AND e.event_id = t.event_id
"""


def upgrade() -> None:
    op.execute("CREATE OR REPLACE VIEW turns AS" + VIEW.format(extra=BY_STREAM))


def downgrade() -> None:
    op.execute("CREATE OR REPLACE VIEW turns AS" + VIEW.format(extra=""))
