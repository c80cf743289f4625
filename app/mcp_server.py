"""The MCP server: context windows, history search and appends for agents and IDEs.

Two transports serve the same tools and resources:

- streamable HTTP, mounted in the Litestar app at `/mcp`, behind the REST API's keys:
  the mount resolves `Authorization: Bearer` / `x-api-key` through the app's KeyCache
  and the tenant from `X-Tenant-Id` (401/422 problem+json otherwise), and puts the
  caller in the ASGI scope. The SDK hands every message's HTTP request to the handlers
  (`ctx.request_context.request`), so each tool call acts as the request that carried
  it. (Not a contextvar: in stateful mode the SDK runs a session's handlers in a task
  started by its first request, which would pin that request's caller.) Stateless
  (`stateless_http=True`) with JSON responses: no MCP session lives in a worker, so any
  replica or worker process can answer any request, as for the REST API; nothing here
  needs the server-to-client channel a session would give.
- stdio, `contextgate mcp [--tenant T]`: a local process the operator started, acting as
  an admin of that tenant against the configured database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

import msgspec
from litestar import Request
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.handlers import ASGIRouteHandler, asgi
from litestar.types import Receive, Scope, Send
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from pydantic import Field

from adapters.postgres.database import Database
from adapters.postgres.search import HistoryFilter, HistoryHit
from adapters.postgres.search import search_history as find_history
from app.api.auth import provide_principal, provide_tenant, require
from app.api.schemas import EventOut, SessionList, SessionOut
from app.services import sessions as svc
from app.services.context import ContextPorts, ContextRequest, build_context
from app.settings import Settings
from domain.access import TENANT_RE, Principal
from domain.context.ports import QueryEmbedder
from domain.context.strategies import DEFAULT_STRATEGY
from domain.errors import DomainError, NotFound, ValidationError
from domain.ports import SessionRepository, TokenCounter
from domain.read_models import SessionFilter
from domain.session import check_session_id

CALLER_KEY = "contextgate.caller"  # where the mount leaves the caller in the ASGI scope
READ_ROLES = ("app", "auditor", "analyst")
EVENTS_PAGE = 500
MAX_EVENTS_PAGE = 1000
INSTRUCTIONS = (
    "Contextgate keeps every conversation as an immutable event log. Use get_context for "
    "the context window a model would see, search_history to find past turns by meaning "
    "and words, list_sessions to browse, and append_turn to record a turn. Resources: "
    "contextgate://sessions/{session_id}/events and "
    "contextgate://sessions/{session_id}/context/{model}."
)

AppendRole = Literal["user", "assistant", "system"]
SearchRole = Literal["user", "assistant", "system", "tool"]


@dataclass(frozen=True)
class Caller:
    """Who a tool call acts as, and on which tenant."""

    principal: Principal
    tenant: str
    request_id: str | None = None

    def context(self) -> svc.RequestContext:
        return svc.RequestContext(self.tenant, self.principal.key_id, self.request_id)


@dataclass(frozen=True)
class McpPorts:
    sessions: SessionRepository
    counter: TokenCounter
    context: ContextPorts
    db: Database
    embedder: QueryEmbedder | None


def local_caller(tenant: str) -> Caller:
    """The stdio server's caller: an admin bound to one tenant."""
    if not TENANT_RE.fullmatch(tenant):
        raise ValidationError("the tenant must be 1-64 letters, digits, '.', '_' or '-'", "tenant")
    return Caller(Principal("local:mcp-stdio", tenant, frozenset({"admin"})), tenant)


def _caller(ctx: Context, local: Caller | None) -> Caller:
    request = ctx.request_context.request  # the HTTP request; None on stdio
    scope = getattr(request, "scope", None)
    if scope is not None:
        caller = scope.get(CALLER_KEY)
        if isinstance(caller, Caller):
            return caller
        # Served over HTTP without the mount's check: refuse rather than fall back.
        raise NotAuthorizedException("this MCP endpoint needs an API key")
    if local is None:
        raise NotAuthorizedException("no caller for this MCP transport")
    return local


@contextlib.contextmanager
def _as_tool_error() -> Iterator[None]:
    """Expected failures reach the client as tool errors carrying the message."""
    try:
        yield
    except DomainError as exc:
        raise ToolError(_message(exc)) from exc
    except HTTPException as exc:
        raise ToolError(exc.detail) from exc


@contextlib.contextmanager
def _as_resource_error() -> Iterator[None]:
    try:
        yield
    except NotFound as exc:
        raise ResourceNotFoundError(str(exc)) from exc
    except DomainError as exc:
        raise ResourceError(_message(exc)) from exc
    except HTTPException as exc:
        raise ResourceError(exc.detail) from exc


def _message(exc: DomainError) -> str:
    if isinstance(exc, ValidationError) and exc.field and exc.field not in str(exc):
        return f"{exc.field}: {exc}"
    return str(exc)


def _session_id(value: str) -> str:
    try:
        return check_session_id(value)
    except ValidationError as exc:
        raise ValidationError(str(exc), "session_id") from None


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _hit(hit: HistoryHit) -> dict[str, Any]:
    after = hit.stream_version - 1
    return {
        "session_id": hit.session_id,
        "seq": hit.seq,
        "stream_version": hit.stream_version,
        "global_position": hit.global_position,
        "event_id": str(hit.event_id),
        "user_id": hit.user_id,
        "role": hit.role,
        "content": hit.content,
        "tokens": hit.tokens,
        "created_at": hit.created_at.isoformat(),
        "score": hit.score,
        "vector_rank": hit.vector_rank,
        "text_rank": hit.text_rank,
        # The event itself, through the events resource.
        "event_uri": f"contextgate://sessions/{hit.session_id}/events?after={after}&limit=1",
    }


def build_server(ports: McpPorts, *, local: Caller | None = None) -> MCPServer:
    """The MCP server over the app's ports. `local` is the caller when no HTTP request
    carries one (stdio)."""
    # MCPServer() calls logging.basicConfig (a Rich handler on the root logger) when the
    # root has none; logging is the server's to configure, so give it one for the call.
    root, placeholder = logging.getLogger(), logging.NullHandler()
    root.addHandler(placeholder)
    try:
        server: MCPServer = MCPServer(
            "contextgate", instructions=INSTRUCTIONS, version="0.1.0", log_level="WARNING"
        )
    finally:
        root.removeHandler(placeholder)

    async def window(caller: Caller, request: ContextRequest) -> dict[str, Any]:
        require(caller.principal, *READ_ROLES)
        return (await build_context(ports.context, request)).to_dict()

    @server.tool(description="The context window a model would be shown for a session.")
    async def get_context(
        session_id: str,
        model: Annotated[str, Field(min_length=1, max_length=200)],
        ctx: Context,
        strategy: Annotated[str, Field(max_length=40)] = DEFAULT_STRATEGY,
        budget: Annotated[int, Field(ge=1)] | None = None,
        query: Annotated[str, Field(max_length=100_000)] | None = None,
    ) -> dict[str, Any]:
        """The versioned context document: sections (system, state, summary, retrieved,
        recent, current) with their messages, token counts and the global positions of
        their events. `query` stands for the current turn (default: the newest turn);
        `budget` caps the window in tokens (default: the model's limit minus output).
        Reading a window records nothing."""
        with _as_tool_error():
            caller = _caller(ctx, local)
            request = ContextRequest(
                tenant_id=caller.tenant,
                session_id=_session_id(session_id),
                model=model,
                strategy=strategy,
                budget=budget,
                query=query,
            )
            return await window(caller, request)

    @server.tool(description="Search the tenant's past turns by meaning and words.")
    async def search_history(
        query: Annotated[str, Field(min_length=1, max_length=10_000)],
        ctx: Context,
        session_id: str | None = None,
        user_id: Annotated[str, Field(max_length=200)] | None = None,
        role: SearchRole | None = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 10,
    ) -> dict[str, Any]:
        """Hybrid search (pgvector cosine and PostgreSQL full text, fused by reciprocal
        rank) over turns already indexed (a new turn is searchable within a few
        seconds). `query` takes web-search syntax for the words ("a phrase", or,
        -word). Each hit links back to its event (global_position, event_id,
        event_uri)."""
        with _as_tool_error():
            caller = _caller(ctx, local)
            require(caller.principal, *READ_ROLES)
            filters = HistoryFilter(
                session_id=_session_id(session_id) if session_id is not None else None,
                user_id=user_id,
                role=role,
            )
            embedding = await ports.embedder.embed_query(query) if ports.embedder else None
            async with ports.db.connection() as conn:
                hits = await find_history(conn, caller.tenant, embedding, query, filters, limit)
            return {"hits": [_hit(h) for h in hits]}

    @server.tool(description="Append one turn to an existing session.")
    async def append_turn(
        session_id: str,
        role: AppendRole,
        content: Annotated[str, Field(max_length=1_000_000)],
        ctx: Context,
        idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None,
    ) -> dict[str, Any]:
        """Records the turn as an event in the session's stream (the session must exist
        and be open). A retry with the same idempotency_key returns the first result
        instead of writing twice."""
        with _as_tool_error():
            caller = _caller(ctx, local)
            require(caller.principal, "app")
            out = await svc.append_turns(
                ports.sessions,
                ports.counter,
                caller.context(),
                _session_id(session_id),
                [svc.TurnSpec(role=role, content=content)],
                idempotency_key=idempotency_key,
            )
            event = out.events[0]
            return {
                "session_id": out.session_id,
                "event_id": str(event.event_id),
                "type": event.type,
                "version": event.stream_version,
                "position": event.global_position,
                "tokens": event.data.get("tokens"),
                "replayed": out.replayed,
            }

    @server.tool(description="List the tenant's sessions, newest first.")
    async def list_sessions(
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        status: Literal["open", "closed"] | None = None,
        cursor: Annotated[str, Field(max_length=500)] | None = None,
        user_id: Annotated[str, Field(max_length=200)] | None = None,
    ) -> dict[str, Any]:
        """One page of sessions; pass next_cursor back as `cursor` for the next."""
        with _as_tool_error():
            caller = _caller(ctx, local)
            require(caller.principal, *READ_ROLES)
            filters = SessionFilter(status=status, user_id=user_id)
            page = await svc.list_sessions(ports.sessions, caller.tenant, filters, cursor, limit)
            body = SessionList(
                [SessionOut.of(v) for v in page.items],
                page.next_cursor,
                page.next_cursor is not None,
            )
            return cast(dict[str, Any], msgspec.to_builtins(body))

    @server.resource(
        "contextgate://sessions/{session_id}/events{?after,limit}",
        name="session_events",
        description=(
            f"A session's events in order, with their hashes: {EVENTS_PAGE} after stream "
            f"version `after` (default 0), or `limit` (at most {MAX_EVENTS_PAGE}); "
            "next_after continues."
        ),
        mime_type="application/json",
    )
    async def session_events(
        session_id: str, ctx: Context, after: int = 0, limit: int = EVENTS_PAGE
    ) -> str:
        with _as_resource_error():
            caller = _caller(ctx, local)
            require(caller.principal, *READ_ROLES)
            if after < 0 or not 1 <= limit <= MAX_EVENTS_PAGE:
                raise ValidationError(
                    f"after must be >= 0 and limit between 1 and {MAX_EVENTS_PAGE}", "limit"
                )
            sid = _session_id(session_id)
            events = await svc.read_events(ports.sessions, caller.tenant, sid, after, limit + 1)
            page = events[:limit]
            return _json(
                {
                    "session_id": sid,
                    "data": [EventOut.of(e) for e in page],
                    "next_after": page[-1].stream_version if page else after,
                    "has_more": len(events) > limit,
                }
            )

    @server.resource(
        "contextgate://sessions/{session_id}/context/{model}",
        name="session_context",
        description="The hybrid context window of a session for a model, as get_context.",
        mime_type="application/json",
    )
    async def session_context(session_id: str, model: str, ctx: Context) -> str:
        with _as_resource_error():
            caller = _caller(ctx, local)
            request = ContextRequest(
                tenant_id=caller.tenant, session_id=_session_id(session_id), model=model
            )
            return _json(await window(caller, request))

    return server


def http_mount(server: MCPServer, settings: Settings) -> ASGIRouteHandler:
    """The streamable HTTP transport as a Litestar mount at /mcp, behind the API's keys.
    Run `server.session_manager.run()` in the app's lifespan."""
    # `host` as the server listens: on a loopback address the SDK checks Host and Origin
    # against loopback names (DNS rebinding); elsewhere the API keys guard it, as for
    # the REST API, and a proxy's Host must pass.
    transport = server.streamable_http_app(
        streamable_http_path="/",
        stateless_http=True,
        json_response=True,
        max_request_body_size=settings.max_body_bytes,
        host=settings.host,
    )

    @asgi("/mcp", is_mount=True, copy_scope=True)
    async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        # Raised here, 401 and 422 go through the app's problem+json handlers.
        request: Request[Any, Any, Any] = Request(scope)
        principal = await provide_principal(request)
        tenant = await provide_tenant(request, principal)
        caller = Caller(principal, tenant, request.headers.get("x-request-id"))
        inner = cast(dict[str, Any], scope)
        inner[CALLER_KEY] = caller
        await transport(inner, receive, send)  # type: ignore[arg-type]

    return mcp_endpoint


async def serve_stdio(settings: Settings, database_url: str, caller: Caller) -> None:
    """Serve MCP over stdin/stdout until stdin closes. While it serves, the SDK points
    file descriptor 1 at stderr, so stray output cannot corrupt the protocol."""
    from adapters.postgres.context_inputs import PostgresContextReader
    from adapters.postgres.notifier import Notifier
    from adapters.postgres.session_repository import PostgresSessions
    from adapters.tokenizers import TiktokenCounter
    from app.embedders import build_embedder

    db = Database(
        database_url, pool_size=min(settings.db_pool_size, 4), role=settings.effective_db_role
    )
    notifier = Notifier(db)  # wakes the server's embeddings worker after an append
    sessions = PostgresSessions(db, on_append=notifier.notify)
    counter = TiktokenCounter(settings.tokenizer)
    embedder = build_embedder(settings, batches=False)  # no embeddings worker here
    context = ContextPorts(PostgresContextReader(db), counter, sessions.events, embedder)
    server = build_server(McpPorts(sessions, counter, context, db, embedder), local=caller)
    await db.pool()
    notifier.start()
    warm = asyncio.create_task(embedder.warm_up())
    try:
        await server.run_stdio_async()
    finally:
        warm.cancel()
        await notifier.stop()
        embedder.close()
        await db.dispose()
