"""The `turns` view also shows a turn's tool calls and the call a tool result answers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Both live in the message events already (AssistantMessage.tool_calls,
ToolResult.tool_call_id); the context engine needs them to hand a provider a
conversation whose tool calls are answered (OpenAI and Anthropic refuse an orphan
tool result). New columns go last: CREATE OR REPLACE VIEW keeps the existing ones.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BASE = """
    SELECT t.tenant_id, t.session_id, t.seq, t.stream_version, t.global_position,
           t.event_id, t.role, coalesce(e.data->>'content', '') AS content, t.name, t.tokens,
           t.created_at{extra}
    FROM turn_rows t
    JOIN events e ON e.tenant_id = t.tenant_id AND e.global_position = t.global_position
"""
EXTRA = """,
           e.data->>'tool_call_id' AS tool_call_id, e.data->'tool_calls' AS tool_calls"""


def upgrade() -> None:
    op.execute("CREATE OR REPLACE VIEW turns AS" + BASE.format(extra=EXTRA))


def downgrade() -> None:
    op.execute("DROP VIEW turns")
    op.execute("CREATE VIEW turns AS" + BASE.format(extra=""))
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'contextgate_app') "
        "THEN GRANT SELECT ON turns TO contextgate_app; END IF; END $$"
    )
