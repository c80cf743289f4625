"""A turn's time is when it was said, if the client says so (`occurred_at`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

An imported conversation (LoCoMo's sessions, a chat history moved from elsewhere) keeps
its own times: message events may carry `occurred_at`, and the `turns` read model shows
it as the turn's `created_at`; without it, the time the event was recorded, as before.
The projection function is 0001's with that one column changed, so `replay` rebuilds
the same rows.
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_BASE = importlib.import_module("migrations.versions.0001_event_store").PROJECT_SESSION_FUNCTION
_TURN_TIME = "coalesce((ev.data->>'tokens')::integer, 0), ev.recorded_at"
_OCCURRED = (
    "coalesce((ev.data->>'tokens')::integer, 0),\n"
    "               coalesce((ev.data->>'occurred_at')::timestamptz, ev.recorded_at)"
)
assert _BASE.count(_TURN_TIME) == 1, "0001's projection function is not the one expected"
ORIGINAL = _BASE.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
WITH_OCCURRED_AT = ORIGINAL.replace(_TURN_TIME, _OCCURRED)


def upgrade() -> None:
    op.execute(WITH_OCCURRED_AT)


def downgrade() -> None:
    op.execute(ORIGINAL)
