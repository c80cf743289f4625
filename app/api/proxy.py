"""The proxy's inbound endpoints, wire-compatible with the official SDKs: OpenAI chat
completions and models, Anthropic messages. Errors come back in the caller's dialect
(OpenAI's or Anthropic's error body), not as problem details.

The request path is kept lean: the body is decoded once with msgspec, the dialect's
parser builds the canonical request, and responses are encoded bytes; no validation
layer, dependency injection or per-request logging on the way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.response import Stream

from app.services import cache, proxy
from domain.access import Principal
from domain.errors import DomainError
from domain.ids import uuid7
from domain.proxy import anthropic_wire, openai_wire
from domain.proxy.chat import (
    ChatRequest,
    ChatResponse,
    Delta,
    FinishReason,
    ProxyError,
    StreamAccumulator,
    ToolCallDelta,
)
from domain.proxy.routing import Deployment
from domain.proxy.sse import SSE_DONE, json_bytes, sse_data, sse_event

log = logging.getLogger("contextgate.proxy")
JSON = "application/json"
SSE = "text/event-stream"
_decode = msgspec.json.decode


@dataclass(frozen=True)
class Dialect:
    name: str
    parse: Callable[[dict[str, Any]], ChatRequest]
    render: Callable[[ChatResponse, str], dict[str, Any]]
    error_body: Callable[[ProxyError], dict[str, Any]]


OPENAI = Dialect(
    "openai", openai_wire.parse_chat_request, openai_wire.render_chat_response,
    openai_wire.error_body,
)  # fmt: skip
ANTHROPIC = Dialect(
    "anthropic", anthropic_wire.parse_messages_request, anthropic_wire.render_message_response,
    anthropic_wire.error_body,
)  # fmt: skip


def error_response(dialect: Dialect, err: ProxyError) -> Response[bytes]:
    headers = {}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
    if err.status == 401:
        headers["www-authenticate"] = 'Bearer realm="contextgate"'
    return Response(
        content=json_bytes(dialect.error_body(err)),
        status_code=err.status,
        media_type=JSON,
        headers=headers,
    )


async def authenticate(request: Request[Any, Any, Any]) -> Principal:
    """`Authorization: Bearer <key>` or Anthropic's `x-api-key: <key>`."""
    key = None
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            key = value.strip() or None
    key = key or request.headers.get("x-api-key") or None
    if key is None:
        raise ProxyError(
            401,
            "authentication",
            "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
        )
    principal: Principal | None = await request.app.state.key_cache.resolve(key)
    if principal is None:
        raise ProxyError(401, "authentication", "the API key is not valid or was revoked")
    if not ("admin" in principal.roles or "app" in principal.roles):
        raise ProxyError(403, "permission", "this key lacks the 'app' role needed for model calls")
    return principal


async def json_body(request: Request[Any, Any, Any]) -> dict[str, Any]:
    try:
        raw = await request.body()
    except HTTPException as exc:  # Litestar's 413 when the body is over the limit
        if exc.status_code != 413:
            raise
        limit = request.app.state.get("max_body_bytes")
        raise ProxyError(
            413,
            "invalid_request",
            f"the body is larger than the limit of {limit} bytes; send less per request",
        ) from None
    if not raw:
        raise ProxyError(400, "invalid_request", "the request needs a JSON body")
    try:
        body = _decode(raw)
    except msgspec.DecodeError as exc:
        raise ProxyError(400, "invalid_request", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProxyError(400, "invalid_request", "the body must be a JSON object")
    return body


def _header_int(request: Request[Any, Any, Any], name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ProxyError(
            400, "invalid_request", f"{name} must be a whole number of tokens", param=name
        ) from None
    if number < 1:
        raise ProxyError(400, "invalid_request", f"{name} must be at least 1", param=name)
    return number


def call_meta(
    request: Request[Any, Any, Any],
    principal: Principal,
    dialect: str,
    body: dict[str, Any],
    chat: ChatRequest,
) -> proxy.CallMeta:
    """Stateful when a session is named: X-Session-Id, else `metadata.session_id`."""
    session_id = request.headers.get("x-session-id")
    if session_id is None:
        metadata = body.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("session_id"), str):
            session_id = metadata["session_id"]
    tenant = principal.tenant_for(
        request.headers.get("x-tenant-id"), request.app.state.settings.default_tenant
    )
    return proxy.CallMeta(
        tenant_id=tenant,
        key_id=principal.key_id,
        dialect=dialect,
        session_id=session_id or None,
        idempotency_key=request.headers.get("idempotency-key") or None,
        strategy=request.headers.get("x-context-strategy") or None,
        budget=_header_int(request, "x-context-budget"),
        user_id=chat.user,
    )


def _headers(call: proxy.Call, cache: str = "miss") -> dict[str, str]:
    headers = {"x-session-id": call.session_id, "x-cache": cache}
    if call.timings:  # where the time went: prepare (window: its share), provider, record
        headers["server-timing"] = ", ".join(
            f"{name};dur={call.timings[name]:.2f}" for name in STAGES if name in call.timings
        )
    return headers


STAGES = ("prepare", "window", "provider", "record")


async def serve(request: Request[Any, Any, Any], dialect: Dialect) -> Response[Any]:
    ports: proxy.ProxyPorts = request.app.state.proxy
    with ports.load.work():  # this process's work, not the provider's waits (see load.py)
        return await _serve(request, dialect, ports)


async def _serve(
    request: Request[Any, Any, Any], dialect: Dialect, ports: proxy.ProxyPorts
) -> Response[Any]:
    call: proxy.Call | None = None
    try:
        principal = await authenticate(request)
        body = await json_body(request)
        chat = dialect.parse(body)
        meta = call_meta(request, principal, dialect.name, body, chat)
        call = await proxy.prepare(ports, meta, chat)
        if call.replay is not None:
            return _answer(dialect, call, call.replay, replayed=True)
        caches: cache.CachePorts | None = request.app.state.response_cache
        probe: cache.Probe | None = None
        if caches is not None:
            # The request as the provider would see it (stateful: the assembled window).
            control = request.headers.get("cache-control", "").lower()
            probe = await cache.lookup(
                caches, meta.tenant_id, call.request, read="no-cache" not in control
            )
            if probe.hit is not None:
                answer = probe.response()
                await proxy.record(ports, call, answer, None, cached=probe.status)
                _background(cache.count_hit(caches, probe))
                return _answer(dialect, call, answer, cache_status=probe.status)
            if "no-store" in control:
                probe = None
        if chat.stream:
            with ports.load.waiting():
                return await _stream(ports, dialect, call, caches, probe)
        provider_started = ports.clock()
        with ports.load.waiting():
            response, deployment = await proxy.complete(ports, call)
        call.timings["provider"] = (ports.clock() - provider_started) * 1000
        if _record_after(call):
            _record_later(ports, call, response, deployment)
        else:
            recording = ports.clock()
            await proxy.record(ports, call, response, deployment)
            call.timings["record"] = (ports.clock() - recording) * 1000
        if caches is not None and probe is not None:
            _background(cache.store(caches, probe, response))  # off the answer's path
        return _answer(dialect, call, response)
    except ProxyError as err:
        if call is not None and call.replay is None:
            await _record_failure(ports, call, err)
        return error_response(dialect, err)
    except (ValueError, DomainError) as err:  # e.g. a bad X-Tenant-Id for this key
        param = getattr(err, "field", None)
        return error_response(dialect, ProxyError(400, "invalid_request", str(err), param=param))


# Stateless records written after the answer, at most this many at once; past it, a call
# records before it answers. A few keep a lone client's answers fast; under load the
# records made before answering group in the append batcher and the calls wait for
# them. Measured (stateless, 1 / 16 clients): always before, +2.2 ms / 718 calls/s;
# at most 4 after, +1.0 ms / 833; at most 256 after, +1.1 ms / 582 (records trickling
# in one by one, PostgreSQL CPU per call x2.5).
MAX_RECORDS_AFTER = 4
_records_after = 0


def _record_after(call: proxy.Call) -> bool:
    """A stateless call is recorded once its answer is on its way (its record is
    history, not the state of a conversation: ~1.5 ms off every answer). A stateful
    call's answer is stored before it is returned (the next turn must see it), and so is
    a call with an Idempotency-Key (its retry must find it)."""
    return (
        not call.stateful
        and call.meta.idempotency_key is None
        and (_records_after < MAX_RECORDS_AFTER)
    )


_records: set[asyncio.Task[Any]] = set()  # the records after answers still being written


def _record_later(
    ports: proxy.ProxyPorts, call: proxy.Call, response: ChatResponse, deployment: Deployment
) -> None:
    global _records_after
    _records_after += 1  # counted when scheduled: a burst cannot overshoot the bound
    task = asyncio.create_task(_record(ports, call, response, deployment))
    for held in (_tasks, _records):
        held.add(task)
        task.add_done_callback(held.discard)


async def records_written(within: float = 5.0) -> None:
    """Wait for the stateless records this process is still writing after their answers
    (at most MAX_RECORDS_AFTER, ~1 ms each): a usage report then counts every call
    answered before it was asked for."""
    if _records:
        await asyncio.wait(set(_records), timeout=within)


async def _record(
    ports: proxy.ProxyPorts, call: proxy.Call, response: ChatResponse, deployment: Deployment
) -> None:
    global _records_after
    try:
        await proxy.record(ports, call, response, deployment)
    except Exception:  # the answer is out; say loudly what was not recorded
        log.exception("could not record stateless call %s (answer %s)", call.session_id,
                      response.id)  # fmt: skip
    finally:
        _records_after -= 1


async def drain(within: float = 15.0) -> int:
    """Wait for the work that outlives responses (stream pumps and their records,
    records written after the answer, cache writes); called at shutdown, before the
    database closes. Returns how many tasks were still running after `within` seconds."""
    if not _tasks:
        return 0
    _, pending = await asyncio.wait(set(_tasks), timeout=within)
    if pending:
        log.warning("%d proxy tasks were still running at shutdown", len(pending))
    return len(pending)


async def _record_failure(ports: proxy.ProxyPorts, call: proxy.Call, err: ProxyError) -> None:
    try:
        await proxy.record_failure(ports, call, err)
    except Exception:  # the caller gets the provider's error either way
        log.exception("could not record a failed call on session %s", call.session_id)


def _answer(
    dialect: Dialect,
    call: proxy.Call,
    response: ChatResponse,
    *,
    replayed: bool = False,
    cache_status: str = "miss",
) -> Response[Any]:
    headers = _headers(call, cache_status)
    if replayed:
        headers["idempotent-replayed"] = "true"
    if call.request.stream:
        return Stream(
            _replay_stream(dialect, response, call.request.model, call.request.include_usage),
            media_type=SSE,
            headers=headers,
        )
    return Response(
        content=json_bytes(dialect.render(response, call.request.model)),
        media_type=JSON,
        headers=headers,
    )


async def _replay_stream(
    dialect: Dialect, response: ChatResponse, model: str, include_usage: bool
) -> AsyncIterator[bytes]:
    """A stored (or cached) answer, streamed: the text in one delta, then the end (with
    OpenAI's usage chunk only when the request asked for it, as a live stream)."""
    deltas = [Delta(text=response.content)] if response.content else []
    deltas += [
        Delta(tool_call=ToolCallDelta(i, c.id, c.name, c.arguments))
        for i, c in enumerate(response.tool_calls)
    ]
    deltas.append(
        Delta(
            finish_reason=response.finish_reason,
            usage=response.usage,
            stop_sequence=response.stop_sequence,
        )
    )
    for chunk in _render_stream(dialect, response.id, model, deltas, response, include_usage):
        yield chunk


def _render_stream(
    dialect: Dialect,
    id: str,
    model: str,
    deltas: list[Delta],
    response: ChatResponse,
    include_usage: bool,
) -> list[bytes]:
    out: list[bytes] = []
    if dialect is OPENAI:
        r = openai_wire.ChatStreamRenderer(id, model, response.created, include_usage=include_usage)
        for d in deltas:
            out.extend(sse_data(c) for c in r.delta(d))
        out.extend(sse_data(c) for c in r.finish())
        out.append(SSE_DONE)
        return out
    a = anthropic_wire.MessageStreamRenderer(id, model)
    out.extend(sse_event(n, e) for n, e in a.start())
    for d in deltas:
        out.extend(sse_event(n, e) for n, e in a.delta(d))
    out.extend(sse_event(n, e) for n, e in a.finish())
    return out


async def _stream(
    ports: proxy.ProxyPorts,
    dialect: Dialect,
    call: proxy.Call,
    caches: cache.CachePorts | None = None,
    probe: cache.Probe | None = None,
) -> Response[Any]:
    """Commit to a deployment (a failure before its first delta falls back), then relay.
    The provider's stream is consumed by a task of its own: if the caller goes away the
    answer is still completed and recorded (finish reason "client_disconnected")."""
    deployment, first, upstream = await proxy.open_stream(ports, call)
    accumulator = StreamAccumulator(f"chatcmpl-{uuid7().hex}", deployment.model, int(time.time()))

    async def store_in_cache(error: ProxyError | None) -> None:
        if error is None and caches is not None and probe is not None:
            # After the stream's last bytes. The whole answer came even when the caller
            # left: the provider's own finish reason decides (`storable`).
            await cache.store(caches, probe, accumulator.response())

    relay = start_relay(ports, call, deployment, first, upstream, accumulator, store_in_cache)

    async def body() -> AsyncIterator[bytes]:
        if dialect is OPENAI:
            renderer = openai_wire.ChatStreamRenderer(
                accumulator.id, call.request.model, accumulator.created,
                include_usage=call.request.include_usage,
            )  # fmt: skip
        else:
            anthropic = anthropic_wire.MessageStreamRenderer(
                accumulator.id, call.request.model, call.window_tokens
            )
            for name, event in anthropic.start():
                yield sse_event(name, event)
        try:
            while True:
                item = await relay.queue.get()
                if item is END:
                    break
                if isinstance(item, ProxyError):
                    if dialect is OPENAI:
                        yield sse_data(openai_wire.error_body(item))
                    else:
                        name, event = anthropic_wire.error_event(item)
                        yield sse_event(name, event)
                    return
                if dialect is OPENAI:
                    for chunk in renderer.delta(item):
                        yield sse_data(chunk)
                else:
                    for name, event in anthropic.delta(item):
                        yield sse_event(name, event)
            if dialect is OPENAI:
                for chunk in renderer.finish():
                    yield sse_data(chunk)
                yield SSE_DONE
            else:
                for name, event in anthropic.finish():
                    yield sse_event(name, event)
        except (asyncio.CancelledError, GeneratorExit):
            relay.disconnected = True  # the pump goes on; the answer is recorded
            raise

    return Stream(body(), media_type=SSE, headers=_headers(call))


_tasks: set[asyncio.Task[Any]] = set()  # pumps and cache writes outlive the response


def _background(work: Coroutine[Any, Any, object]) -> None:
    """Work the answer need not wait for (cache writes, hit counts), kept referenced
    until done (the event loop holds tasks weakly)."""
    task = asyncio.create_task(work)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


END = ProxyError(200, "end", "the end of a stream")  # the pump's last item when all went well


class StreamRelay:
    """A committed provider stream consumed by a task of its own (`start_relay`): the
    response body reads `queue` (deltas, then END or the ProxyError that ended it); if
    the caller goes away (`disconnected`) the answer is still completed and recorded,
    with finish reason "client_disconnected"."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Delta | ProxyError] = asyncio.Queue()
        self.disconnected = False


def start_relay(
    ports: proxy.ProxyPorts,
    call: proxy.Call,
    deployment: Deployment,
    first: Delta,
    upstream: AsyncIterator[Delta],
    accumulator: StreamAccumulator,
    after: Callable[[ProxyError | None], Awaitable[None]] | None = None,
) -> StreamRelay:
    """Relay the stream; the answer is recorded before END is queued, so the next
    request sees it at once; `after` runs last (e.g. a cache write)."""
    relay = StreamRelay()

    async def pump() -> None:
        error: ProxyError | None = None
        try:
            async for delta in proxy.relay(ports, call, deployment, first, upstream, accumulator):
                relay.queue.put_nowait(delta)
        except ProxyError as exc:
            error = exc
        except Exception as exc:  # a bug or a transport failure: end the stream cleanly
            log.exception("stream from %s failed", deployment.id)
            error = ProxyError(502, "upstream", f"the provider's stream failed: {exc}")
        finish: FinishReason | None = "client_disconnected" if relay.disconnected else None
        if error is not None:
            finish = "error"
        try:
            await proxy.record(ports, call, accumulator.response(finish), deployment)
        except Exception:
            log.exception("could not record the answer on session %s", call.session_id)
        relay.queue.put_nowait(error or END)
        if after is not None:
            await after(error)

    _background(pump())
    return relay


class ProxyController(Controller):
    path = "/v1"
    tags = ["proxy"]
    include_in_schema = True

    @post(
        "/chat/completions",
        status_code=200,
        summary="OpenAI chat completions (stateful with X-Session-Id)",
    )
    async def chat_completions(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return await serve(request, OPENAI)

    @post("/messages", status_code=200, summary="Anthropic messages (stateful with X-Session-Id)")
    async def messages(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return await serve(request, ANTHROPIC)

    @get("/models", summary="The model aliases this gateway serves (OpenAI's list)")
    async def models(self, request: Request[Any, Any, Any]) -> Response[Any]:
        try:
            await authenticate(request)
        except ProxyError as err:
            return error_response(OPENAI, err)
        config = request.app.state.proxy.config
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "contextgate"}
            for name in config.model_names()
        ]
        return Response(content=json_bytes({"object": "list", "data": data}), media_type=JSON)
