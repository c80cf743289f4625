"""The context window of a session for a target model: GET /v1/sessions/{id}/context."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import Provide
from litestar.params import Parameter

from app.api.auth import provide_principal, provide_tenant, require
from app.api.sessions import _path_id
from app.services.context import ContextRequest, build_context
from domain.access import Principal
from domain.context.inputs import BudgetShares
from domain.context.strategies import DEFAULT_SHARES, DEFAULT_STRATEGY
from domain.errors import ValidationError


def parse_shares(text: str) -> BudgetShares:
    try:
        recent, summary, retrieved = (float(x) for x in text.split(","))
    except ValueError:
        raise ValidationError(
            "shares must be three numbers 'recent,summary,retrieved', e.g. 0.15,0.05,0.8",
            "shares",
        ) from None
    return BudgetShares(recent, summary, retrieved)


class ContextController(Controller):
    path = "/v1/sessions"
    tags = ["context"]
    dependencies = {
        "principal": Provide(provide_principal),
        "tenant": Provide(provide_tenant),
    }

    @get("/{session_id:str}/context", summary="Build the context window for a model")
    async def context(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        tenant: str,
        session_id: str,
        model: Annotated[str, Parameter(min_length=1, max_length=200)],
        strategy: Annotated[str, Parameter(max_length=40)] = DEFAULT_STRATEGY,
        budget: Annotated[int | None, Parameter(ge=1)] = None,
        # `query` is Litestar's own name for the whole query string, hence the alias.
        current: Annotated[str | None, Parameter(query="query", max_length=100_000)] = None,
        shares: Annotated[str | None, Parameter(max_length=60)] = None,
        across_sessions: bool = False,
    ) -> dict[str, Any]:
        """The versioned context document (protocol version 1): its sections (system,
        state, summary, retrieved, recent, current), each with its messages, token count
        and the global positions of the events they came from. Reading it records
        nothing; a model call through the proxy records the window it used.

        `shares` splits the budget left after the fixed parts, as "recent,summary,retrieved"
        (default 0.15,0.05,0.8); `across_sessions` also retrieves from the same user's other
        sessions."""
        require(principal, "app", "auditor", "analyst")
        window = await build_context(
            request.app.state.context_ports,
            ContextRequest(
                tenant_id=tenant,
                session_id=_path_id(session_id),
                model=model,
                strategy=strategy,
                budget=budget,
                query=current,
                shares=parse_shares(shares) if shares is not None else DEFAULT_SHARES,
                across_sessions=across_sessions,
            ),
        )
        return window.to_dict()
