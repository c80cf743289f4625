"""The usage projection (migration 0007): catching up, and the report behind
GET /v1/usage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from adapters.postgres.database import Database

CATCH_UP = "SELECT cg_project_usage($1)"
DIMENSIONS = {"day": "day", "model": "model", "key": "key_id"}


@dataclass(frozen=True)
class UsageRow:
    day: date | None
    model: str | None
    key_id: str | None
    calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_hits: int
    cost: Decimal


async def catch_up(db: Database, *, batch: int = 5_000, max_batches: int = 20) -> int:
    """Fold the answers recorded since the checkpoint into the daily rows; returns how
    many events were read. Bounded: at most `max_batches` batches per call."""
    total = 0
    async with db.connection() as conn:
        for _ in range(max_batches):
            n: int = await conn.fetchval(CATCH_UP, batch)
            total += n
            if n < batch:
                break
    return total


async def report(
    db: Database,
    tenant_id: str,
    start: date,
    end: date,
    group_by: tuple[str, ...],
    key_id: str | None = None,
) -> list[UsageRow]:
    """Totals from `start` to `end` (inclusive, UTC days), grouped by the named
    dimensions (day, model, key), for one tenant and optionally one key."""
    columns = [DIMENSIONS[g] for g in group_by]  # whitelisted: never caller text in SQL
    select = ", ".join(columns) if columns else ""
    sql = f"""SELECT {select + "," if select else ""}
            sum(calls)::bigint AS calls, sum(input_tokens)::bigint AS input_tokens,
            sum(output_tokens)::bigint AS output_tokens,
            sum(cached_tokens)::bigint AS cached_tokens,
            sum(cache_hits)::bigint AS cache_hits, sum(cost) AS cost
        FROM usage_daily
        WHERE tenant_id = $1 AND day BETWEEN $2 AND $3 AND ($4::text IS NULL OR key_id = $4)
        {"GROUP BY " + select if select else ""}
        {"ORDER BY " + select if select else ""}
        LIMIT 10000"""
    async with db.connection() as conn:
        rows = await conn.fetch(sql, tenant_id, start, end, key_id)
    out = []
    for r in rows:
        if r["calls"] is None:
            continue  # no rows at all: the aggregate of nothing
        out.append(
            UsageRow(
                day=r["day"] if "day" in group_by else None,
                model=r["model"] if "model" in group_by else None,
                key_id=r["key_id"] if "key" in group_by else None,
                calls=r["calls"],
                input_tokens=r["input_tokens"],
                output_tokens=r["output_tokens"],
                cached_tokens=r["cached_tokens"],
                cache_hits=r["cache_hits"],
                cost=r["cost"] or Decimal(0),
            )
        )
    return out
