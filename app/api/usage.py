"""GET /v1/usage: calls, tokens and cost per day, model and key, from the usage
projection (caught up before it answers, so a report includes the last call)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from litestar import Controller, Request, get
from litestar.di import Provide

from adapters.postgres.usage import DIMENSIONS, catch_up, report
from app.api.auth import provide_principal, provide_tenant, require
from app.api.proxy import records_written
from domain.access import Principal
from domain.errors import ValidationError

MAX_DAYS = 366
READ_ALL = ("admin", "analyst", "auditor")  # roles that see every key of the tenant


def _day(value: str | None, name: str, default: date) -> date:
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{name} must be a date like 2026-11-25, not {value!r}", name
        ) from None


class UsageController(Controller):
    path = "/v1/usage"
    tags = ["usage"]
    dependencies = {
        "principal": Provide(provide_principal),
        "tenant": Provide(provide_tenant),
    }

    @get("/", summary="Usage and cost per day, model and key")
    async def usage(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        tenant: str,
        start: str | None = None,
        end: str | None = None,
        group_by: str = "day,model",
        key_id: str | None = None,
    ) -> dict[str, Any]:
        """`start`/`end`: UTC days, inclusive (default: the last 30 days). `group_by`:
        any of day, model, key, comma-separated (empty: one total). An `app` key sees
        its own usage; admin, analyst and auditor keys see the tenant's, per key."""
        require(principal, "app", *READ_ALL)
        today = datetime.now(UTC).date()
        end_day = _day(end, "end", today)
        start_day = _day(start, "start", end_day - timedelta(days=29))
        if start_day > end_day:
            raise ValidationError("start must not be after end", "start")
        if (end_day - start_day).days >= MAX_DAYS:
            raise ValidationError(f"a report spans at most {MAX_DAYS} days", "start")
        dims = tuple(g.strip() for g in group_by.split(",") if g.strip())
        unknown = [g for g in dims if g not in DIMENSIONS]
        if unknown:
            raise ValidationError(
                f"group_by takes day, model and key, not {', '.join(unknown)}", "group_by"
            )
        if not ("admin" in principal.roles or principal.roles.intersection(READ_ALL)):
            if key_id is not None and key_id != principal.key_id:
                raise ValidationError("an app key can only read its own usage", "key_id")
            key_id = principal.key_id
        db = request.app.state.db
        await records_written()  # stateless calls answered here, their records in flight
        await catch_up(db)  # the answers recorded up to now are counted
        rows = await report(db, tenant, start_day, end_day, dims, key_id)
        data = [
            {
                **({"day": r.day.isoformat()} if r.day is not None else {}),
                **({"model": r.model} if "model" in dims else {}),
                **({"key_id": r.key_id} if "key" in dims else {}),
                "calls": r.calls,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "cached_tokens": r.cached_tokens,
                "cache_hits": r.cache_hits,
                "cost": str(r.cost.normalize()) if r.cost else "0",
            }
            for r in rows
        ]
        totals = {
            "calls": sum(r.calls for r in rows),
            "input_tokens": sum(r.input_tokens for r in rows),
            "output_tokens": sum(r.output_tokens for r in rows),
            "cost": str(sum((r.cost for r in rows), start=Decimal(0)).normalize()),
        }
        return {
            "object": "usage",
            "tenant": tenant,
            "start": start_day.isoformat(),
            "end": end_day.isoformat(),
            "group_by": list(dims),
            "data": data,
            "totals": totals,
        }
