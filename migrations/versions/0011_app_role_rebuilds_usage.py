"""The application role may empty the usage projection, so `contextgate replay` rebuilds
it with the other projections.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27

`replay` runs as the application role (on the embedded server) and rebuilds every
projection from the log in one transaction: `sessions`, `turn_rows` and `summary_rows`
(which the role may already TRUNCATE), and now `usage_daily`, folded again from the
start by `cg_project_usage`. The role still only reads it otherwise: the rows are
written by that SECURITY DEFINER function.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# {statement} where the application role exists.
IF_APP_ROLE = r"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'contextgate_app') THEN
        EXECUTE '{statement}';
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute(IF_APP_ROLE.format(statement="GRANT TRUNCATE ON usage_daily TO contextgate_app"))


def downgrade() -> None:
    op.execute(IF_APP_ROLE.format(statement="REVOKE TRUNCATE ON usage_daily FROM contextgate_app"))
