"""How far the catch-up projections trail the log (operators and dashboards)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get
from litestar.di import Provide

from app.api.auth import provide_principal, require
from domain.access import Principal


class ProjectionLagOut(msgspec.Struct):
    name: str
    events_behind: int  # counted up to 100,000
    seconds_behind: float  # age of the oldest event not yet projected
    checkpoint_transaction_id: int
    checkpoint_position: int


class ProjectionsController(Controller):
    path = "/v1/projections"
    tags = ["operations"]
    dependencies = {"principal": Provide(provide_principal)}

    @get("/", summary="Lag of the catch-up projections")
    async def lag(
        self, request: Request[Any, Any, Any], principal: Principal
    ) -> list[ProjectionLagOut]:
        require(principal, "admin", "auditor")
        lag = await request.app.state.embeddings.lag()
        return [
            ProjectionLagOut(
                "embeddings",
                lag.events,
                round(lag.seconds, 3),
                lag.checkpoint.transaction_id,
                lag.checkpoint.global_position,
            )
        ]
