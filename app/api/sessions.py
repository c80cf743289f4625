"""Sessions & history: create, append turns, get, list, read events, close."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter

from app.api.auth import provide_principal, provide_tenant, require
from app.api.schemas import (
    AppendedEvent,
    AppendResultOut,
    AppendTurns,
    CloseSession,
    CreateSession,
    EventOut,
    EventPage,
    SessionList,
    SessionOut,
)
from app.services import sessions as svc
from domain.access import Principal
from domain.errors import ValidationError
from domain.read_models import SessionFilter
from domain.session import check_session_id

IdempotencyKey = Annotated[
    str | None,
    Parameter(header="Idempotency-Key", required=False, min_length=1, max_length=200),
]
REPLAYED = "Idempotent-Replayed"


def _ctx(request: Request[Any, Any, Any], principal: Principal, tenant: str) -> svc.RequestContext:
    return svc.RequestContext(tenant, principal.key_id, request.headers.get("x-request-id"))


def _path_id(session_id: str) -> str:
    try:
        return check_session_id(session_id)
    except ValidationError as exc:
        raise ValidationError(str(exc), "session_id") from None


class SessionController(Controller):
    path = "/v1/sessions"
    tags = ["sessions"]
    dependencies = {
        "principal": Provide(provide_principal),
        "tenant": Provide(provide_tenant),
    }

    @post("/", status_code=201, summary="Open a session")
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        tenant: str,
        data: CreateSession,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[SessionOut]:
        require(principal, "app")
        view, replayed = await svc.create_session(
            request.app.state.sessions,
            _ctx(request, principal, tenant),
            session_id=data.id,
            title=data.title,
            user_id=data.user_id,
            metadata=data.metadata,
            idempotency_key=idempotency_key,
        )
        headers = {"Location": f"/v1/sessions/{view.session_id}"}
        if replayed:
            headers[REPLAYED] = "true"
        return Response(SessionOut.of(view), status_code=200 if replayed else 201, headers=headers)

    @get("/", summary="List sessions, newest first")
    async def list_sessions(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        tenant: str,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Parameter(max_length=500)] = None,
        status: Literal["open", "closed"] | None = None,
        user_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        active_after: datetime | None = None,
        active_before: datetime | None = None,
    ) -> SessionList:
        require(principal, "app", "auditor", "analyst")
        for name, value in (
            ("created_after", created_after),
            ("created_before", created_before),
            ("active_after", active_after),
            ("active_before", active_before),
        ):
            if value is not None and value.tzinfo is None:
                raise ValidationError(f"{name} needs a time zone, e.g. 2026-01-01T00:00:00Z", name)
        filters = SessionFilter(
            status, user_id, created_after, created_before, active_after, active_before
        )
        page = await svc.list_sessions(request.app.state.sessions, tenant, filters, cursor, limit)
        return SessionList(
            [SessionOut.of(v) for v in page.items], page.next_cursor, page.next_cursor is not None
        )

    @get("/{session_id:str}", summary="Get a session")
    async def get_one(
        self, request: Request[Any, Any, Any], principal: Principal, tenant: str, session_id: str
    ) -> SessionOut:
        require(principal, "app", "auditor", "analyst")
        view = await svc.get_session(request.app.state.sessions, tenant, _path_id(session_id))
        return SessionOut.of(view)

    @post("/{session_id:str}/turns", status_code=201, summary="Append turns (one transaction)")
    async def append(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        tenant: str,
        session_id: str,
        data: AppendTurns,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[AppendResultOut]:
        require(principal, "app")
        specs = [
            svc.TurnSpec(
                role=t.role,
                content=t.content,
                name=t.name,
                tool_call_id=t.tool_call_id,
                tool_calls=t.tool_calls,
                model=t.model,
                provider=t.provider,
                usage={k: v for k, v in _usage(t.usage).items() if v is not None},
                cost=t.cost,
                latency_ms=t.latency_ms,
                finish_reason=t.finish_reason,
                occurred_at=t.occurred_at,
            )
            for t in data.turns
        ]
        out = await svc.append_turns(
            request.app.state.sessions,
            request.app.state.token_counter,
            _ctx(request, principal, tenant),
            _path_id(session_id),
            specs,
            expected_version=data.expected_version,
            idempotency_key=idempotency_key,
        )
        body = AppendResultOut(
            session_id=out.session_id,
            first_version=out.first_version,
            last_version=out.last_version,
            replayed=out.replayed,
            events=[
                AppendedEvent(
                    str(e.event_id),
                    e.stream_version,
                    e.global_position,
                    e.type,
                    e.data.get("tokens"),
                )
                for e in out.events
            ],
        )
        headers = {REPLAYED: "true"} if out.replayed else None
        return Response(body, status_code=200 if out.replayed else 201, headers=headers)

    @get("/{session_id:str}/events", summary="Read a session's events in order")
    async def events(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        tenant: str,
        session_id: str,
        after: Annotated[int, Parameter(ge=0)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> EventPage:
        require(principal, "app", "auditor", "analyst")
        events = await svc.read_events(
            request.app.state.sessions, tenant, _path_id(session_id), after, limit + 1
        )
        page = events[:limit]
        has_more = len(events) > limit
        return EventPage(
            [EventOut.of(e) for e in page],
            page[-1].stream_version if page else after,
            has_more,
        )

    @post("/{session_id:str}/close", status_code=200, summary="Close a session")
    async def close(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        tenant: str,
        session_id: str,
        data: CloseSession | None = None,
    ) -> SessionOut:
        require(principal, "app")
        view = await svc.close_session(
            request.app.state.sessions,
            _ctx(request, principal, tenant),
            _path_id(session_id),
            data.reason if data else None,
        )
        return SessionOut.of(view)


def _usage(usage: Any) -> dict[str, Any]:
    if usage is None:
        return {}
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_tokens": usage.cached_tokens,
    }
