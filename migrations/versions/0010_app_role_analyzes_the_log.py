"""The application role may ANALYZE the log's tables (PostgreSQL 17's MAINTAIN).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26

The embeddings worker analyzes `events`, `sessions` and `turn_rows` while they are young
(see app/workers/young_tables.py): every append's projection (`cg_project_session`)
plans from their statistics, and its plans made on empty tables read every event of the
tenant. Only the owner may ANALYZE, unless granted MAINTAIN, which PostgreSQL has from
version 17; before that the worker's ANALYZE is skipped with a warning and autovacuum
keeps the statistics. MAINTAIN also allows VACUUM, REINDEX, CLUSTER and LOCK TABLE: none
of them changes a row, and the role still has no UPDATE, DELETE or TRUNCATE on the log.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
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

TABLES = "events, sessions, turn_rows"


def upgrade() -> None:
    op.execute(ON_PG17.format(statement=f"GRANT MAINTAIN ON {TABLES} TO contextgate_app"))


def downgrade() -> None:
    op.execute(ON_PG17.format(statement=f"REVOKE MAINTAIN ON {TABLES} FROM contextgate_app"))
