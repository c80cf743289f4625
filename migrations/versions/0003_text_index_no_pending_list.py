"""Full-text index without a pending list: searches stop scanning unsorted recent rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

GIN's fast update (on by default) parks new entries in a pending list that every search
reads in full until VACUUM (or autovacuum) merges it; a manual ANALYZE does not. After
11,100 turns were inserted, each term's lookup read ~370 pending-list pages: the
candidates query of the context engine took 24.6 ms, 2.0 ms once the list was merged
(ops/bench/context_latency.py, 1,000-turn session). Turns arrive a few hundred per
second at most (the embedding model is the bound), so inserting into the index directly
costs little, and search time no longer depends on when VACUUM last ran.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER INDEX turn_embeddings_text SET (fastupdate = off)")
    op.execute("SELECT gin_clean_pending_list('turn_embeddings_text')")


def downgrade() -> None:
    op.execute("ALTER INDEX turn_embeddings_text RESET (fastupdate)")
