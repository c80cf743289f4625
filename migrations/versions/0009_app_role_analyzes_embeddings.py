"""The application role may ANALYZE `turn_embeddings` (PostgreSQL 17's MAINTAIN).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26

The embeddings worker analyzes the table itself while it is young (see
app/workers/young_tables.py): retrieval plans from its statistics. Only the
owner may, unless granted MAINTAIN, which PostgreSQL has from version 17; before that
the worker's ANALYZE is skipped with a warning and autovacuum keeps the statistics.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# {statement} on PostgreSQL 17 or later, where the application role exists.
ON_PG17 = r"""
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 170000
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'contextgate_app') THEN
        EXECUTE '{statement}';
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute(ON_PG17.format(statement="GRANT MAINTAIN ON turn_embeddings TO contextgate_app"))


def downgrade() -> None:
    op.execute(ON_PG17.format(statement="REVOKE MAINTAIN ON turn_embeddings FROM contextgate_app"))
