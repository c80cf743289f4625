"""Read models: what the projections hold, as plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class SessionView:
    tenant_id: str
    session_id: str
    title: str | None
    user_id: str | None
    status: str
    metadata: dict[str, Any]
    created_at: datetime
    last_activity_at: datetime
    closed_at: datetime | None
    turn_count: int
    tokens_total: int
    cost_total: Decimal
    version: int


@dataclass(frozen=True)
class SessionFilter:
    status: str | None = None
    user_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    active_after: datetime | None = None
    active_before: datetime | None = None


@dataclass(frozen=True)
class SessionPage:
    items: list[SessionView]
    next_cursor: str | None
