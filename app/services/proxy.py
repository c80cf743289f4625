"""The proxy use case: one model call through the gateway, in any dialect.

Stateful (a session id is given): the new turn(s) are appended (committed before the
provider is called), the context window is built from the session by the context
engine, the call is routed, and the answer is appended with the window that produced
it (ContextAssembled) and everything about the call (model, provider, usage, cost,
latency, routing decision). Stateless: the caller's messages go to the provider as they
are; the call is recorded afterwards as a one-call session (`call_...`).

Concurrent calls on one session are never interleaved: a call whose session has a
turn waiting for its answer (another call in flight) is refused with 409, and two calls
racing for the same version are decided by the event store's expected version.

Dialect-neutral: the API layer parses the OpenAI, Anthropic or Responses body into a
ChatRequest and renders the outcome back; this module never sees a wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from app.proxy_config import ProxyConfig
from app.services.context import ContextPorts, ContextRequest, build_context, may_retrieve
from app.services.load import CallLoad
from domain.context.inputs import Turn
from domain.context.ports import SessionFacts
from domain.context.render import openai_name, openai_turns, plain_conversation, preamble
from domain.context.window import ContextMessage, ContextWindow, assembled_event, place_current
from domain.errors import AlreadyExists, NotFound, ValidationError, WrongExpectedVersion
from domain.events import (
    AppendResult,
    AssistantMessage,
    DomainEvent,
    NewEvent,
    PolicyApplied,
    SessionOpened,
    SystemMessage,
    ToolResult,
    UserMessage,
)
from domain.ids import uuid7
from domain.ports import EventStore, TokenCounter
from domain.proxy.chat import (
    ChatRequest,
    ChatResponse,
    Delta,
    Message,
    ProxyError,
    StreamAccumulator,
    ToolCall,
    Usage,
)
from domain.proxy.ports import ChatProvider
from domain.proxy.pricing import cost as price_cost
from domain.proxy.routing import (
    Deployment,
    Failure,
    RouteDecision,
    Router,
    Verdict,
    classify,
    required_capabilities,
)
from domain.session import check_session_id, stream_id_for

T = TypeVar("T")

# A turn waiting for its answer this long is taken as abandoned (its call crashed), not
# as a call in flight.
PENDING_TTL = timedelta(minutes=10)
# Stored turns compared with a client that resends its history: as many as it sent
# (a repeat is a prefix of what it sent), at most this many.
HISTORY_TURNS = 200
APPEND_ATTEMPTS = 3  # reads and appends of a call's turns when other writers interfere
REPLAY_WINDOW = 1000  # events searched for the answer of an idempotent retry


@dataclass(frozen=True)
class ProxyPorts:
    config: ProxyConfig
    router: Router
    providers: Mapping[str, ChatProvider]  # by provider name
    events: EventStore
    context: ContextPorts
    counter: TokenCounter
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    # The calls at work in this process (the embeddings worker gives way when busy).
    load: CallLoad = field(default_factory=lambda: CallLoad(0))


@dataclass(frozen=True)
class CallMeta:
    """Who calls, how, and the stateful options of this call."""

    tenant_id: str
    key_id: str
    dialect: str  # openai | anthropic | responses
    session_id: str | None = None
    idempotency_key: str | None = None
    strategy: str | None = None  # context strategy; default from the config
    budget: int | None = None  # context budget in tokens; default from the config
    user_id: str | None = None
    session_metadata: Mapping[str, Any] = field(default_factory=dict)
    # The caller appended this call's input itself (the Responses API does, to know
    # its response id first): the newest turn is this call's, not another's in flight.
    input_stored: bool = False


@dataclass
class Attempt:
    deployment: str
    outcome: str  # ok | http status | timeout | connect | circuit_open
    latency_ms: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "deployment": self.deployment,
            "outcome": self.outcome,
            "latency_ms": round(self.latency_ms, 2),
        }
        if self.detail:
            out["detail"] = self.detail[:300]
        return out


@dataclass
class Call:
    """A call ready to be sent: the request as the provider will see it, the plan, and
    where the answer will be recorded."""

    meta: CallMeta
    request: ChatRequest  # stateful: built from the window
    decision: RouteDecision
    session_id: str
    stateful: bool
    window: ContextWindow | None = None
    window_tokens: int = 0
    recorded: list[Message] = field(default_factory=list)  # stateless: what to record
    recorded_tokens: list[int] = field(default_factory=list)  # the system prompt's, then each
    replay: ChatResponse | None = None  # an idempotent retry: the stored answer
    attempts: list[Attempt] = field(default_factory=list)
    started: float = 0.0
    # Milliseconds per stage (prepare, window, provider, record): the Server-Timing
    # header, so a client (or a benchmark) sees where a call's time went.
    timings: dict[str, float] = field(default_factory=dict)
    created_session: bool = False


@dataclass(frozen=True)
class Outcome:
    response: ChatResponse
    deployment: Deployment | None
    cost: Decimal
    latency_ms: float
    replayed: bool = False


# --- preparing -------------------------------------------------------------------------


async def prepare(ports: ProxyPorts, meta: CallMeta, request: ChatRequest) -> Call:
    """Append the new turns (stateful), build the window, and plan the route. Raises
    ProxyError (the caller's fault or an unroutable model) before any provider call."""
    started = ports.clock()
    if meta.session_id is None:
        call = await _prepare_stateless(ports, meta, request)
    else:
        call = await _prepare_stateful(ports, meta, request)
    call.started = started
    call.timings["prepare"] = (ports.clock() - started) * 1000
    return call


async def _prepare_stateless(ports: ProxyPorts, meta: CallMeta, request: ChatRequest) -> Call:
    if not request.messages:
        raise ProxyError(400, "invalid_request", "messages must not be empty", param="messages")
    session_id = f"call_{uuid7().hex}"
    replay = None
    if meta.idempotency_key is not None:
        # A retry of a recorded call finds its session by the key, and its answer there.
        session_id = "call_" + _digest(meta.tenant_id, meta.idempotency_key)
        replay = await _stored_answer(ports, meta.tenant_id, session_id, 0, meta.idempotency_key)
    tokens, parts = _request_tokens(ports.counter, request)
    decision = _plan(ports, request, tokens)
    return Call(
        meta=meta,
        request=request,
        decision=decision,
        session_id=session_id,
        stateful=False,
        window_tokens=tokens,
        recorded=list(request.messages),
        recorded_tokens=parts,
        replay=replay,
    )


async def _prepare_stateful(ports: ProxyPorts, meta: CallMeta, request: ChatRequest) -> Call:
    assert meta.session_id is not None
    session_id = meta.session_id
    try:
        check_session_id(session_id)
    except ValidationError as exc:
        raise ProxyError(400, "invalid_request", str(exc), param="X-Session-Id") from None
    tenant = meta.tenant_id
    reader = ports.context.reader
    created = False
    early: asyncio.Future[ContextWindow] | None = None  # the window, built while appending
    stored_at = (0, 0)  # the new turn's stream version and global position
    _vector_ahead(ports, meta, request, session_id)
    # Another writer may move the session between the read and the append (a summary
    # job, a context window recorded): read again and retry. A turn of another call
    # is caught by the pending check on the new read.
    for _ in range(APPEND_ATTEMPTS):
        facts, newest = await asyncio.gather(
            reader.session(tenant, session_id),
            reader.newest_turns(tenant, session_id, min(HISTORY_TURNS, len(request.messages) + 1)),
        )
        if facts is None:
            created = await _open_session(ports, meta, session_id) or created
            version = 1
        else:
            version = facts.version
        history = list(reversed(newest))  # oldest first
        new = _new_messages(history, list(request.messages))
        replay = None
        if meta.idempotency_key is not None and facts is not None:
            # A retry comes soon after its first attempt: its answer is among the newest.
            after = max(0, version - REPLAY_WINDOW)
            replay = await _stored_answer(ports, tenant, session_id, after, meta.idempotency_key)
        if replay is not None:
            break
        if new:
            _refuse_if_pending(history, version)
            if len(new) == 1 and new[0].role == "user" and not new[0].name and facts:
                # The window does not need the turn stored: it is built meanwhile (with
                # the session as just read), and the provider is called once both are done.
                early = asyncio.ensure_future(
                    _window(ports, meta, request, session_id, facts, new[0].content, version + 1)
                )
            appended = await _append_or_cancel(ports, meta, session_id, new, version, early)
            if appended is None:
                early = None
                continue
            version = appended.last_version
            if early is not None and appended.replayed:  # stored by an earlier attempt
                await _drop(early)
                early = None
            stored_at = (appended.events[-1].stream_version, appended.events[-1].global_position)
        elif not meta.input_stored:
            # Nothing new: a retry of a turn whose call failed (answered again), or of
            # one whose call is still in flight (refused: it would call twice).
            _refuse_if_pending(history, version)
        if not new and (not history or history[-1].role not in ("user", "tool")):
            raise ProxyError(
                400,
                "invalid_request",
                "the request holds no new message for this session (every message repeats "
                "its stored history); send the next user turn",
                param="messages",
            )
        break
    else:
        raise ProxyError(
            409,
            "conflict",
            "the session kept changing while this turn was being added; retry the request",
        )
    try:
        stored = ports.clock()
        if early is not None:  # its current turn now has its place in the log
            window = place_current(await early, *stored_at)
        else:
            window = await _window(ports, meta, request, session_id, facts)
        provider_request = window_request(request, window)
        decision = _plan(ports, provider_request, window.used_tokens)
    except ProxyError as exc:
        if replay is None:  # the turn just stored must not wait for an answer forever
            await _append_failure(ports, meta, session_id, exc, {})
        raise
    call = Call(
        meta=meta,
        request=provider_request,
        decision=decision,
        session_id=session_id,
        stateful=True,
        window=window,
        window_tokens=window.used_tokens,
        replay=replay,
        created_session=created,
    )
    call.timings["window"] = (ports.clock() - stored) * 1000
    return call


# Query vectors started ahead of the reads, held until done (the loop keeps only weak
# references to tasks).
_AHEAD: set[asyncio.Task[Sequence[float]]] = set()


def _vector_ahead(ports: ProxyPorts, meta: CallMeta, request: ChatRequest, session_id: str) -> None:
    """Start the new turn's query vector before the session is read, when this process
    last saw the session longer than a window loads: its window will retrieve, and the
    vector (~3-5 ms on the model's thread) is what it waits for longest. The window asks
    for the same text and joins the computation (AsyncEmbedder shares it by text).
    Otherwise the window starts it once the reads say it is needed: one computed for
    nothing slowed the reads and append it overlapped (2 cores), and a short session's
    call took twice as long. Measured at 1 client on a 4,000-turn session, four pairs of
    alternating runs: p50 12.4-13.8 ms (mean 12.95) against 13.1-14.1 (13.54)."""
    embedder = ports.context.embedder
    last = request.messages[-1] if request.messages else None
    if embedder is None or last is None or last.role != "user" or not last.content.strip():
        return
    known = ports.context.reader.known_turn_count(meta.tenant_id, session_id)
    strategy = meta.strategy or ports.config.context.strategy
    if known is None or not may_retrieve(strategy, known):
        return
    task = asyncio.ensure_future(embedder.embed_query(last.content))
    _AHEAD.add(task)
    task.add_done_callback(_settled_ahead)


def _settled_ahead(task: asyncio.Task[Sequence[float]]) -> None:
    _AHEAD.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: the window that awaits the same text reports it


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


async def _open_session(ports: ProxyPorts, meta: CallMeta, session_id: str) -> bool:
    """An unknown session id opens the session (a racing request may open it first)."""
    opened = SessionOpened(
        session_id=session_id,
        user_id=meta.user_id,
        metadata={"opened_by": "proxy", **dict(meta.session_metadata)},
    )
    try:
        await ports.events.append(
            meta.tenant_id,
            stream_id_for(session_id),
            [NewEvent.from_domain(opened, uuid7(), {"key_id": meta.key_id})],
            expected_version=0,
        )
    except (WrongExpectedVersion, AlreadyExists):
        return False
    return True


def _same(turn: Turn, message: Message) -> bool:
    return turn.role == message.role and turn.content == message.content


def _new_messages(history: Sequence[Turn], incoming: list[Message]) -> list[Message]:
    """The part of `incoming` the session does not hold yet. A client that resends its
    whole history (as stateless clients do) repeats the stored turns: the longest prefix
    of `incoming` that equals the end of the stored history is left out."""
    if not history:
        return incoming
    longest = min(len(history), len(incoming))
    for n in range(longest, 0, -1):
        tail = history[len(history) - n :]
        if all(_same(t, m) for t, m in zip(tail, incoming, strict=False)):
            return incoming[n:]
    return incoming


def _refuse_if_pending(history: Sequence[Turn], version: int) -> None:
    """Another call is in flight when the newest event is a turn waiting for its answer."""
    if not history:
        return
    last = history[-1]
    if last.role not in ("user", "tool") or last.stream_version != version:
        return
    if datetime.now(UTC) - last.created_at > PENDING_TTL:
        return  # abandoned by a call that crashed
    raise ProxyError(
        409,
        "conflict",
        "another request on this session is waiting for its answer; send the next turn "
        "when it has finished (calls on one session are never interleaved)",
    )


def turn_event(
    ports: ProxyPorts, message: Message, model: str | None = None, tokens: int | None = None
) -> DomainEvent:
    """A canonical message as the turn event the proxy appends for it (`tokens` when
    already counted, else counted for `model`)."""
    if tokens is None:
        tokens = ports.counter.count(message.content, model)
    if message.role == "user":
        return UserMessage(content=message.content, tokens=tokens, name=message.name)
    if message.role == "tool":
        return ToolResult(
            tool_call_id=message.tool_call_id or "",
            content=message.content,
            tokens=tokens,
            name=message.name,
        )
    if message.role == "system":
        return SystemMessage(content=message.content, tokens=tokens)
    return AssistantMessage(
        content=message.content,
        tokens=tokens,
        tool_calls=[_tool_call_dict(c) for c in message.tool_calls] or None,
    )


def _tool_call_dict(call: Any) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.arguments}


async def _append_or_cancel(
    ports: ProxyPorts,
    meta: CallMeta,
    session_id: str,
    new: Sequence[Message],
    version: int,
    early: asyncio.Future[ContextWindow] | None,
) -> AppendResult | None:
    """_append_turns; the window built meanwhile is dropped when the append did not
    happen (the session moved: read again; or it failed)."""
    try:
        appended = await _append_turns(ports, meta, session_id, new, version)
    except BaseException:
        appended = None
        raise
    finally:
        if appended is None and early is not None:
            await _drop(early)
    return appended


async def _drop(early: asyncio.Future[ContextWindow]) -> None:
    early.cancel()
    with contextlib.suppress(BaseException):
        await early


async def _append_turns(
    ports: ProxyPorts, meta: CallMeta, session_id: str, new: Sequence[Message], version: int
) -> AppendResult | None:
    """Append the new turns at `version`; what was written, or None when the session
    moved meanwhile."""
    metadata = {"key_id": meta.key_id, "via": meta.dialect}
    events = [NewEvent.from_domain(turn_event(ports, m, "gpt-4o"), uuid7(), metadata) for m in new]
    key = f"{meta.idempotency_key}#in" if meta.idempotency_key else None
    try:
        result = await ports.events.append(
            meta.tenant_id,
            stream_id_for(session_id),
            events,
            expected_version=version,
            idempotency_key=key,
        )
    except WrongExpectedVersion:
        return None
    return result


async def _stored_answer(
    ports: ProxyPorts, tenant_id: str, session_id: str, after: int, key: str
) -> ChatResponse | None:
    """The answer recorded for an earlier call with this Idempotency-Key, if any."""
    try:
        events = await ports.events.read_stream(
            tenant_id, stream_id_for(session_id), after_version=after, limit=1000
        )
    except NotFound:
        return None
    for event in reversed(events):
        if event.type == "AssistantMessage" and event.metadata.get("idempotency_key") == key:
            return _response_from_event(event.data, event.metadata)
    return None


def _response_from_event(data: Mapping[str, Any], metadata: Mapping[str, Any]) -> ChatResponse:
    usage = data.get("usage") or {}
    return ChatResponse(
        id=str(metadata.get("response_id") or ""),
        model=str(data.get("model") or ""),
        content=str(data.get("content") or ""),
        tool_calls=tuple(
            ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"])
            for c in data.get("tool_calls") or ()
        ),
        finish_reason=data.get("finish_reason") or "stop",
        usage=Usage(
            input_tokens=int(usage.get("input_tokens", 0)),
            output_tokens=int(usage.get("output_tokens", 0)),
            cached_tokens=int(usage.get("cached_tokens", 0)),
        ),
        created=int(metadata.get("created", 0)),
    )


async def _window(
    ports: ProxyPorts,
    meta: CallMeta,
    request: ChatRequest,
    session_id: str,
    facts: SessionFacts | None,
    query: str | None = None,
    current_version: int | None = None,
) -> ContextWindow:
    """The window for this call: strategy and budget from the request's headers, else
    the session's metadata (`context_strategy`, `context_budget`), else the config. With
    `query`, the new turn's text, the window is built while it is being stored at
    `current_version` (and `facts` are the session as read before)."""
    defaults = ports.config.context
    own_strategy = facts.context_strategy if facts else None
    own_budget = facts.context_budget if facts else None
    strategy = meta.strategy or own_strategy or defaults.strategy
    limits = ports.config.model_info(request.model)
    output = request.max_tokens or min(limits.max_output, ports.router.policy.output_reserve)
    budget = meta.budget or own_budget or defaults.budget or max(256, limits.context_limit - output)
    budget = min(budget, max(256, limits.context_limit - output))
    try:
        return await build_context(
            ports.context,
            ContextRequest(
                tenant_id=meta.tenant_id,
                session_id=session_id,
                model=request.model,
                strategy=strategy,
                budget=budget,
                shares=defaults.shares,
                system_prompt=request.system,
                context_limit=limits.context_limit,
                max_output=output,
                query=query,
                facts=facts if query is not None else None,
                current_version=current_version,
            ),
        )
    except ValidationError as exc:
        raise ProxyError(400, "invalid_request", str(exc), param=exc.field) from None


def window_request(request: ChatRequest, window: ContextWindow) -> ChatRequest:
    """The caller's request with the window's messages: the preamble (system prompt,
    summary, retrieved turns) as the system text, then the recent and current turns
    as render.openai_turns tells them; system turns join the system text, as a parsed
    request's do (the same request as parsing openai_messages(window), built directly:
    tests/unit/test_window_request.py compares)."""
    system = [text] if (text := preamble(window)) is not None else []
    plain = plain_conversation(window)
    if plain is not None:  # the usual case: no tool calls, no system turns
        return replace(
            request,
            system="\n\n".join(system) or None,
            messages=tuple([m.__dict__.get(_CHAT_MESSAGE) or _chat_message(m) for m in plain]),
        )
    messages: list[Message] = []
    for t in openai_turns(window):
        if t.role == "system":
            system.append(t.content or "")
        elif t.role == "assistant":
            calls = tuple(ToolCall(c.id, c.name, c.arguments) for c in t.tool_calls)
            messages.append(Message("assistant", t.content or "", calls, name=t.name))
        elif t.role == "tool":
            messages.append(Message("tool", t.content or "", tool_call_id=t.tool_call_id))
        else:
            messages.append(Message("user", t.content or "", name=t.name))
    return replace(request, system="\n\n".join(system) or None, messages=tuple(messages))


_CHAT_MESSAGE = "_chat_message"


def _chat_message(m: ContextMessage) -> Message:
    """A plain turn's Message, kept on its window message: a recent turn's is the same
    object from window to window (strategies.recent_message), ~200 of them a call."""
    message = Message(m.role, m.content, name=openai_name(m.name))  # type: ignore[arg-type]
    m.__dict__[_CHAT_MESSAGE] = message
    return message


def _request_tokens(counter: TokenCounter, request: ChatRequest) -> tuple[int, list[int]]:
    """The request's tokens for routing, and each part's (system prompt first), which
    the record of a stateless call stores rather than counting them again."""
    parts = [counter.count(request.system, request.model) if request.system else 0]
    parts += [counter.count(m.content, request.model) for m in request.messages]
    return sum(parts) + 4 * len(request.messages), parts


def _plan(ports: ProxyPorts, request: ChatRequest, window_tokens: int) -> RouteDecision:
    try:
        decision = ports.router.plan(
            request.model,
            needs=required_capabilities(request),
            window_tokens=window_tokens,
            max_output=request.max_tokens,
            local_only=False,
        )
    except ValidationError as exc:
        raise ProxyError(404, "not_found", str(exc), param="model") from None
    if not decision.deployments:
        raise decision.unroutable()
    return decision


# --- calling ---------------------------------------------------------------------------


async def _walk(
    ports: ProxyPorts, call: Call, start: Callable[[ChatProvider, Deployment], Awaitable[T]]
) -> tuple[T, Deployment]:
    """Walk the plan: `start` each deployment in turn, with retries and backoff on the
    same one, then the next; the first result that comes without a ProxyError wins."""
    last_error: ProxyError | None = None
    for deployment in call.decision.deployments:
        provider = ports.providers[deployment.provider.name]
        for attempt in range(deployment.max_retries + 1):
            if not ports.router.allow(deployment.id):
                call.attempts.append(Attempt(deployment.id, "circuit_open", 0.0))
                break
            t0 = ports.clock()
            try:
                result = await start(provider, deployment)
            except ProxyError as exc:
                last_error = exc
                wait = _failed(ports, call, deployment, exc, t0, attempt)
                if wait is None:
                    break
                await ports.sleep(wait)
                continue
            elapsed = ports.clock() - t0
            ports.router.observe(deployment.id, elapsed, ok=True)
            call.attempts.append(Attempt(deployment.id, "ok", elapsed * 1000))
            return result, deployment
    raise _exhausted(call, last_error)


async def complete(ports: ProxyPorts, call: Call) -> tuple[ChatResponse, Deployment]:
    """The answer of the first deployment that gives one (see _walk)."""
    return await _walk(
        ports,
        call,
        lambda provider, d: provider.complete(call.request, d.model, timeout_s=d.timeout_s),
    )


def _failed(
    ports: ProxyPorts,
    call: Call,
    deployment: Deployment,
    exc: ProxyError,
    t0: float,
    attempt: int,
) -> float | None:
    """Record a failed attempt; the wait before retrying the same deployment, or None to
    move on. A failure that is the request's fault is raised at once."""
    elapsed = ports.clock() - t0
    failure = _failure_kind(exc)
    call.attempts.append(Attempt(deployment.id, str(failure), elapsed * 1000, exc.message))
    verdict = classify(failure)
    if verdict is Verdict.FAIL:
        ports.router.observe(deployment.id, None, ok=True)
        raise exc
    ports.router.observe(deployment.id, elapsed, ok=False, timed_out=failure == "timeout")
    if verdict is Verdict.NEXT or attempt >= deployment.max_retries:
        return None
    return ports.router.backoff(attempt + 1, exc.retry_after)


def _failure_kind(exc: ProxyError) -> Failure:
    """What the router classifies: the provider's HTTP status, or how the transport
    failed (adapters/providers/http.py `unreachable`)."""
    if exc.upstream_status is not None:
        return exc.upstream_status
    return "timeout" if exc.kind == "timeout" else "connect"


def _exhausted(call: Call, last: ProxyError | None) -> ProxyError:
    tried = ", ".join(f"{a.deployment}: {a.outcome}" for a in call.attempts) or "none"
    if last is None:
        return ProxyError(
            503,
            "overloaded",
            f"no deployment of {call.request.model!r} is available (circuits open); tried {tried}",
        )
    return ProxyError(
        last.status,
        last.kind,
        f"{last.message} (every deployment failed; tried {tried})",
        param=last.param,
        retry_after=last.retry_after,
    )


async def open_stream(
    ports: ProxyPorts, call: Call
) -> tuple[Deployment, Delta, AsyncIterator[Delta]]:
    """Like `complete`, for a stream: a failure before the first delta falls back to a
    retry or the next deployment; once a delta came, the stream is committed to."""

    async def first_delta(
        provider: ChatProvider, deployment: Deployment
    ) -> tuple[Delta, AsyncIterator[Delta]]:
        stream = provider.stream(
            call.request, deployment.model, timeout_s=deployment.timeout_s
        ).__aiter__()
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            first = Delta(finish_reason="stop")
        return first, stream

    (first, stream), deployment = await _walk(ports, call, first_delta)
    return deployment, first, stream


# --- recording -------------------------------------------------------------------------


def cost_of(response: ChatResponse, deployment: Deployment | None) -> Decimal:
    if deployment is None or response.usage is None:
        return Decimal(0)
    return price_cost(response.usage, deployment.price)


async def record(
    ports: ProxyPorts,
    call: Call,
    response: ChatResponse,
    deployment: Deployment | None,
    *,
    cached: str | None = None,
) -> Outcome:
    """Append the answer (and, stateless, the whole call) to the log."""
    latency_ms = (ports.clock() - call.started) * 1000
    cost = Decimal(0) if cached else cost_of(response, deployment)
    meta = call.meta
    usage = response.usage
    answer = AssistantMessage(
        content=response.content,
        tokens=usage.output_tokens if usage else ports.counter.count(response.content),
        provider=deployment.provider.name if deployment else None,
        model=response.model or (deployment.model if deployment else None),
        usage={
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens,
        }
        if usage
        else {},
        cost=float(cost),
        latency_ms=round(latency_ms, 2),
        finish_reason=response.finish_reason,
        cached=cached is not None,
        tool_calls=[_tool_call_dict(c) for c in response.tool_calls] or None,
    )
    metadata: dict[str, Any] = {
        "key_id": meta.key_id,
        "via": meta.dialect,
        "alias": call.request.model,
        "deployment": deployment.id if deployment else None,
        "route": call.decision.to_dict(),
        "attempts": [a.to_dict() for a in call.attempts],
        "response_id": response.id,
        "created": response.created,
        "cost": str(cost),
    }
    if cached:
        metadata["cache"] = cached
    if meta.idempotency_key:
        metadata["idempotency_key"] = meta.idempotency_key
    events: list[NewEvent] = []
    stream = stream_id_for(call.session_id)
    if not call.stateful:
        opened = SessionOpened(
            session_id=call.session_id,
            user_id=meta.user_id,
            metadata={"opened_by": "proxy", "mode": "stateless"},
        )
        events.append(NewEvent.from_domain(opened, uuid7(), {"key_id": meta.key_id}))
        counted: list[int | None] = [*call.recorded_tokens] or [None] * (len(call.recorded) + 1)
        if call.request.system:
            tokens = counted[0]
            if tokens is None:
                tokens = ports.counter.count(call.request.system)
            system = SystemMessage(content=call.request.system, tokens=tokens)
            events.append(NewEvent.from_domain(system, uuid7(), {"key_id": meta.key_id}))
        events.extend(
            NewEvent.from_domain(turn_event(ports, m, call.request.model, n), uuid7(), {})
            for m, n in zip(call.recorded, counted[1:], strict=True)
        )
    elif call.window is not None:
        events.append(NewEvent.from_domain(assembled_event(call.window), uuid7(), {}))
    events.append(NewEvent.from_domain(answer, uuid7(), metadata))
    key = f"{meta.idempotency_key}#out" if meta.idempotency_key else None
    # Stateless, retried with the same key: the first record stands.
    with contextlib.suppress(WrongExpectedVersion):
        await ports.events.append(
            meta.tenant_id,
            stream,
            events,
            expected_version=0 if not call.stateful else None,
            idempotency_key=key,
            must_exist=call.stateful,
        )
    return Outcome(response, deployment, cost, latency_ms)


async def record_failure(ports: ProxyPorts, call: Call, error: ProxyError) -> None:
    """A stateful call whose every attempt failed: the user turn stays, and this event
    says it was not answered (so the session is not left waiting)."""
    if not call.stateful:
        return
    details = {"attempts": [a.to_dict() for a in call.attempts], "route": call.decision.to_dict()}
    await _append_failure(ports, call.meta, call.session_id, error, details)


async def _append_failure(
    ports: ProxyPorts, meta: CallMeta, session_id: str, error: ProxyError, details: dict[str, Any]
) -> None:
    event = PolicyApplied(
        policy="route",
        decision="failed",
        reason=error.message[:500],
        details={"status": error.status, **details},
    )
    await ports.events.append(
        meta.tenant_id,
        stream_id_for(session_id),
        [NewEvent.from_domain(event, uuid7(), {"key_id": meta.key_id})],
        must_exist=True,
    )


async def relay(
    ports: ProxyPorts,
    call: Call,
    deployment: Deployment,
    first: Delta,
    stream: AsyncIterator[Delta],
    accumulator: StreamAccumulator,
) -> AsyncIterator[Delta]:
    """The deltas of a committed stream, each also added to `accumulator`; a provider
    failure after the first byte ends the stream with finish_reason "error" (the partial
    answer is recorded as such by the caller)."""
    accumulator.add(first)
    yield first
    try:
        async for delta in stream:
            accumulator.add(delta)
            yield delta
    except ProxyError as exc:
        ports.router.observe(deployment.id, None, ok=False)
        call.attempts.append(Attempt(deployment.id, "stream_error", 0.0, exc.message))
        accumulator.finish_reason = "error"
        raise


def check_model(config: ProxyConfig, model: str) -> None:
    """Refuses a model nothing can serve, before any work."""
    try:
        config.resolve(model)
    except ValidationError as exc:
        raise ProxyError(404, "not_found", str(exc), param="model") from None
