"""OpenAI's Responses and Conversations APIs, wire-compatible with the official SDK, on
the proxy use case and the event log (app/services/responses.py says where each
response and conversation lives). Errors come back in OpenAI's shape; authentication,
tenancy and streaming work as in app/api/proxy.py.

Not offered (a 400 that says why): deleting a response or a conversation's item (the log
is append-only), and updating a conversation's metadata (it is its session's, set when
the session opens). Deleting a conversation closes its session; its events stay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.response import Stream

from app.api.proxy import (
    END,
    OPENAI,
    authenticate,
    call_meta,
    error_response,
    json_body,
    start_relay,
)
from app.services import proxy
from app.services import responses as svc
from domain.access import Principal
from domain.errors import DomainError, ValidationError
from domain.proxy import conversations_wire, responses_wire
from domain.proxy.chat import (
    ChatResponse,
    Delta,
    ProxyError,
    StreamAccumulator,
    ToolCallDelta,
)
from domain.proxy.sse import json_bytes, sse_event

log = logging.getLogger("contextgate.responses")
JSON = "application/json"
SSE = "text/event-stream"

Handler = Callable[[Principal, str], Awaitable[Response[Any]]]


def _json(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(content=json_bytes(body), media_type=JSON, headers=headers or {})


async def _guarded(request: Request[Any, Any, Any], handler: Handler) -> Response[Any]:
    """Authenticate, pick the tenant, run `handler`; every failure in OpenAI's shape."""
    try:
        principal = await authenticate(request)
        tenant = principal.tenant_for(
            request.headers.get("x-tenant-id"), request.app.state.settings.default_tenant
        )
        return await handler(principal, tenant)
    except ProxyError as err:
        return error_response(OPENAI, err)
    except ValidationError as err:
        return error_response(OPENAI, ProxyError(400, "invalid_request", str(err), param=err.field))
    except (DomainError, ValueError) as err:
        return error_response(OPENAI, ProxyError(400, "invalid_request", str(err)))


def _not_supported(what: str) -> ProxyError:
    return ProxyError(
        400,
        "invalid_request",
        f"{what} is not supported: this gateway's log is append-only (nothing is deleted "
        "or rewritten)",
    )


def _page_params(request: Request[Any, Any, Any]) -> tuple[int, svc.Order, str | None]:
    """OpenAI's list parameters: limit (1-100, default 20), order (default desc), after."""
    query = request.query_params
    raw = query.get("limit")
    limit = svc.DEFAULT_ITEMS_PAGE
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= svc.MAX_ITEMS_PAGE:
            raise ProxyError(
                400, "invalid_request", "limit must be between 1 and 100", param="limit"
            )
        limit = int(raw)
    order = query.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise ProxyError(400, "invalid_request", "order must be asc or desc", param="order")
    return limit, "asc" if order == "asc" else "desc", query.get("after") or None


# --- POST /v1/responses ----------------------------------------------------------------


async def create_response(request: Request[Any, Any, Any]) -> Response[Any]:
    ports: proxy.ProxyPorts = request.app.state.proxy
    with ports.load.work():  # this process's work, not the provider's waits (see load.py)
        return await _create_response(request, ports)


async def _create_response(
    request: Request[Any, Any, Any], ports: proxy.ProxyPorts
) -> Response[Any]:
    started: svc.Started | None = None
    try:
        principal = await authenticate(request)
        body = await json_body(request)
        parsed = responses_wire.parse_responses_request(body)
        meta = call_meta(request, principal, "responses", {}, parsed.chat)
        started = await svc.start(
            ports,
            request.app.state.sessions,
            meta,
            parsed,
            header_session=request.headers.get("x-session-id") or None,
        )
        call = started.call
        headers = {"x-session-id": call.session_id}
        if call.replay is not None:
            headers["idempotent-replayed"] = "true"
            if parsed.chat.stream:
                return Stream(_replay(started, call.replay), media_type=SSE, headers=headers)
            return _json(_render(started, call.replay), headers)
        if parsed.chat.stream:
            with ports.load.waiting():
                return await _stream(ports, started, headers)
        with ports.load.waiting():
            answer, deployment = await proxy.complete(ports, call)
        answer = replace(answer, id=started.response_id, created=started.created_at)
        await proxy.record(ports, call, answer, deployment)
        return _json(_render(started, answer), headers)
    except ProxyError as err:
        if started is not None and started.call.replay is None:
            await _record_failure(ports, started.call, err)
        return error_response(OPENAI, err)
    except ValidationError as err:
        return error_response(OPENAI, ProxyError(400, "invalid_request", str(err), param=err.field))
    except (DomainError, ValueError) as err:
        return error_response(OPENAI, ProxyError(400, "invalid_request", str(err)))


def _render(started: svc.Started, answer: ChatResponse) -> dict[str, Any]:
    rid = answer.id or started.response_id  # a replay keeps the id it had
    return responses_wire.render_response(
        answer, started.echo, response_id=rid, created_at=answer.created or started.created_at
    )


async def _record_failure(ports: proxy.ProxyPorts, call: proxy.Call, err: ProxyError) -> None:
    try:
        await proxy.record_failure(ports, call, err)
    except Exception:  # the caller gets the provider's error either way
        log.exception("could not record a failed call on session %s", call.session_id)


async def _replay(started: svc.Started, answer: ChatResponse) -> AsyncIterator[bytes]:
    """A stored answer (an idempotent retry), streamed: its text in one delta."""
    renderer = responses_wire.ResponseStreamRenderer(
        started.echo,
        response_id=answer.id or started.response_id,
        created_at=answer.created or started.created_at,
        model=answer.model,
    )
    events = renderer.start()
    if answer.content:
        events += renderer.feed(Delta(text=answer.content))
    for i, c in enumerate(answer.tool_calls):
        events += renderer.feed(Delta(tool_call=ToolCallDelta(i, c.id, c.name, c.arguments)))
    events += renderer.finish(answer.finish_reason, usage=answer.usage)
    for name, event in events:
        yield sse_event(name, event)


async def _stream(
    ports: proxy.ProxyPorts, started: svc.Started, headers: dict[str, str]
) -> Response[Any]:
    """As app/api/proxy.py streams: commit to a deployment, relay from a task of its own
    that records the answer (with this response's id) before the last event is sent."""
    call = started.call
    deployment, first, upstream = await proxy.open_stream(ports, call)
    accumulator = StreamAccumulator(started.response_id, deployment.model, started.created_at)
    relay = start_relay(ports, call, deployment, first, upstream, accumulator)

    async def body() -> AsyncIterator[bytes]:
        renderer = responses_wire.ResponseStreamRenderer(
            started.echo,
            response_id=started.response_id,
            created_at=started.created_at,
            model=deployment.model,
        )
        for name, event in renderer.start():
            yield sse_event(name, event)
        try:
            while True:
                item = await relay.queue.get()
                if item is END:
                    events = renderer.finish()
                    break
                if isinstance(item, ProxyError):
                    events = renderer.finish(error=item)
                    break
                for name, event in renderer.feed(item):
                    yield sse_event(name, event)
            for name, event in events:
                yield sse_event(name, event)
        except (asyncio.CancelledError, GeneratorExit):
            relay.disconnected = True  # the pump goes on; the answer is recorded
            raise

    return Stream(body(), media_type=SSE, headers=headers)


# --- GET /v1/responses/{id} ------------------------------------------------------------


def render_stored(found: svc.StoredResponse) -> dict[str, Any]:
    """A stored response as OpenAI shows it: completed (or incomplete) with its answer,
    failed when the call failed, in progress while it runs."""
    echo, rid, created = found.echo, found.response_id, found.created_at
    if found.answer is not None:
        answer = svc.answer_of(found.answer)
        return responses_wire.render_response(answer, echo, response_id=rid, created_at=created)
    if found.failure is not None:
        data = found.failure.data
        status = data.get("details", {}).get("status")
        error = ProxyError(
            status if isinstance(status, int) else 502, "upstream", str(data.get("reason", ""))
        )
        failed = ChatResponse(id=rid, model=str(echo.get("model") or ""), content="")
        return responses_wire.render_response(
            replace(failed, finish_reason="error"),
            echo,
            response_id=rid,
            created_at=created,
            error=error,
        )
    renderer = responses_wire.ResponseStreamRenderer(echo, response_id=rid, created_at=created)
    return renderer.response()


# --- the controller --------------------------------------------------------------------


class ResponsesController(Controller):
    path = "/v1"
    tags = ["proxy"]
    include_in_schema = True

    @post("/responses", status_code=200, summary="OpenAI Responses (stateful on the event log)")
    async def create(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return await create_response(request)

    @get("/responses/{response_id:str}", summary="A stored response")
    async def retrieve(self, request: Request[Any, Any, Any], response_id: str) -> Response[Any]:
        ports: proxy.ProxyPorts = request.app.state.proxy

        async def handler(_: Principal, tenant: str) -> Response[Any]:
            found = await svc.stored_response(ports, tenant, response_id)
            return _json(render_stored(found))

        return await _guarded(request, handler)

    @get("/responses/{response_id:str}/input_items", summary="A stored response's input")
    async def input_items(self, request: Request[Any, Any, Any], response_id: str) -> Response[Any]:
        ports: proxy.ProxyPorts = request.app.state.proxy

        async def handler(_: Principal, tenant: str) -> Response[Any]:
            limit, order, after = _page_params(request)
            found = await svc.stored_response(ports, tenant, response_id)
            items, more = svc.page(svc.input_items(found), limit=limit, order=order, after=after)
            return _json(conversations_wire.render_item_list(items, has_more=more))

        return await _guarded(request, handler)

    @delete("/responses/{response_id:str}", status_code=200, summary="Not supported")
    async def delete_response(
        self, request: Request[Any, Any, Any], response_id: str
    ) -> Response[Any]:
        async def handler(_: Principal, tenant: str) -> Response[Any]:
            raise _not_supported("deleting a response")

        return await _guarded(request, handler)

    @post("/conversations", status_code=200, summary="Open a conversation (a session)")
    async def create_conversation(self, request: Request[Any, Any, Any]) -> Response[Any]:
        ports: proxy.ProxyPorts = request.app.state.proxy

        async def handler(principal: Principal, tenant: str) -> Response[Any]:
            raw = await request.body()
            body = await json_body(request) if raw.strip() else {}
            parsed = conversations_wire.parse_conversation_create(body)
            cid, created, _ = await svc.create_conversation(
                ports, tenant, principal.key_id, parsed.metadata, parsed.items.messages
            )
            rendered = conversations_wire.render_conversation(cid, created, parsed.metadata)
            return _json(rendered, {"x-session-id": cid})

        return await _guarded(request, handler)

    @get("/conversations/{conversation_id:str}", summary="A conversation")
    async def get_conversation(
        self, request: Request[Any, Any, Any], conversation_id: str
    ) -> Response[Any]:
        async def handler(_: Principal, tenant: str) -> Response[Any]:
            view = await svc.conversation(request.app.state.sessions, tenant, conversation_id)
            created = int(view.created_at.timestamp())
            return _json(
                conversations_wire.render_conversation(conversation_id, created, view.metadata)
            )

        return await _guarded(request, handler)

    @post("/conversations/{conversation_id:str}", status_code=200, summary="Not supported")
    async def update_conversation(
        self, request: Request[Any, Any, Any], conversation_id: str
    ) -> Response[Any]:
        async def handler(_: Principal, tenant: str) -> Response[Any]:
            raise ProxyError(
                400,
                "invalid_request",
                "updating a conversation's metadata is not supported: it is its session's, "
                "set when it opens",
                param="metadata",
            )

        return await _guarded(request, handler)

    @delete("/conversations/{conversation_id:str}", status_code=200, summary="Close it")
    async def delete_conversation(
        self, request: Request[Any, Any, Any], conversation_id: str
    ) -> Response[Any]:
        ports: proxy.ProxyPorts = request.app.state.proxy

        async def handler(principal: Principal, tenant: str) -> Response[Any]:
            await svc.delete_conversation(
                ports, request.app.state.sessions, tenant, principal.key_id, conversation_id
            )
            return _json(conversations_wire.render_conversation_deleted(conversation_id))

        return await _guarded(request, handler)

    @get("/conversations/{conversation_id:str}/items", summary="A conversation's items")
    async def list_items(
        self, request: Request[Any, Any, Any], conversation_id: str
    ) -> Response[Any]:
        ports: proxy.ProxyPorts = request.app.state.proxy

        async def handler(_: Principal, tenant: str) -> Response[Any]:
            limit, order, after = _page_params(request)
            items, more = await svc.list_items(
                ports,
                request.app.state.sessions,
                tenant,
                conversation_id,
                limit=limit,
                order=order,
                after=after,
            )
            return _json(conversations_wire.render_item_list(items, has_more=more))

        return await _guarded(request, handler)

    @post(
        "/conversations/{conversation_id:str}/items",
        status_code=200,
        summary="Add items to a conversation",
    )
    async def add_items(
        self, request: Request[Any, Any, Any], conversation_id: str
    ) -> Response[Any]:
        ports: proxy.ProxyPorts = request.app.state.proxy

        async def handler(principal: Principal, tenant: str) -> Response[Any]:
            parsed = conversations_wire.parse_conversation_items(await json_body(request))
            items = await svc.add_items(
                ports,
                request.app.state.sessions,
                tenant,
                principal.key_id,
                conversation_id,
                parsed.messages,
            )
            return _json(conversations_wire.render_item_list(items))

        return await _guarded(request, handler)

    @get("/conversations/{conversation_id:str}/items/{item_id:str}", summary="One item")
    async def get_item(
        self, request: Request[Any, Any, Any], conversation_id: str, item_id: str
    ) -> Response[Any]:
        ports: proxy.ProxyPorts = request.app.state.proxy

        async def handler(_: Principal, tenant: str) -> Response[Any]:
            item = await svc.get_item(
                ports, request.app.state.sessions, tenant, conversation_id, item_id
            )
            return _json(item)

        return await _guarded(request, handler)

    @delete(
        "/conversations/{conversation_id:str}/items/{item_id:str}",
        status_code=200,
        summary="Not supported",
    )
    async def delete_item(
        self, request: Request[Any, Any, Any], conversation_id: str, item_id: str
    ) -> Response[Any]:
        async def handler(_: Principal, tenant: str) -> Response[Any]:
            raise _not_supported("deleting a conversation's item")

        return await _guarded(request, handler)
