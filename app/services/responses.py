"""The Responses and Conversations APIs on the event log: every stored response lives in a
session, and its id says where, so nothing but the log is needed to find it again.

Sessions. A conversation IS a session (`conv_<uuid7 hex>`). A response that names
neither a conversation nor a previous response opens a session of its own for its chain
(`chain_<uuid7 hex>`, or the X-Session-Id the caller names). `previous_response_id`
continues the session of that response when it is the session's latest turn; when turns
followed it (it is an older answer: a branch), a new session is forked: the turns up to
that response are copied into it (with their times) in the same append that opens it,
and the chain continues there. `store: false` is a stateless call (recorded as one, not
retrievable); with a previous response, that response's turns are sent along.

Ids. `resp_<base>` where the base is base32 (lowercase, no padding) of
`r<hint>.<session id>`: the session, and `hint`, the stream version of the event just
before the response's input. The input is appended here, before the provider is called,
with an expected version, so `hint` is exact and known before the answer exists; the
answer (the AssistantMessage that proxy.record appends with this id as `response_id`)
comes a few events later, and is found by reading forward from `hint` (bounded by
SCAN_EVENTS). The input events carry `input_of: <response id>` and the first of them the
request settings the response object repeats (`echo`). Items of other turns use the base
`t<stream version>.<session id>`, so every item id is stable and leads to its event.

Strong consistency: every step appends with an expected version (or opens a new stream),
and the read models are projected in the append's transaction, so the next request sees
the last turn at once; two requests continuing the same turn cannot both win (the second
becomes a branch, or gets 409 on a conversation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from app.services import proxy
from domain.errors import (
    IdempotencyKeyReused,
    StreamClosed,
    StreamNotFound,
    ValidationError,
    WrongExpectedVersion,
)
from domain.events import (
    MESSAGE_ROLES,
    AssistantMessage,
    NewEvent,
    PolicyApplied,
    RecordedEvent,
    SessionClosed,
    SessionOpened,
    ToolResult,
    UserMessage,
)
from domain.ids import uuid7
from domain.ports import SessionRepository
from domain.proxy.chat import FINISH_REASONS, ChatResponse, Message, ProxyError, ToolCall, Usage
from domain.proxy.conversations_wire import conversation_items, item_base
from domain.proxy.responses_wire import ResponsesRequest
from domain.read_models import SessionView
from domain.session import check_session_id, stream_id_for

log = logging.getLogger("contextgate.responses")
SCAN_EVENTS = 1000  # events read after a response's hint to find its answer
PAGE = 200  # events per read
LATEST_WINDOW = 200  # events after an answer read to decide whether it is the latest
MAX_ITEMS_PAGE = 100
CALL_DIALECTS = frozenset(("openai", "anthropic", "responses"))  # turns that await an answer
DEFAULT_ITEMS_PAGE = 20

Order = Literal["asc", "desc"]


def not_found(message: str, param: str | None = None) -> ProxyError:
    return ProxyError(404, "not_found", message, param=param)


# --- ids -------------------------------------------------------------------------------


def _b32(text: str) -> str:
    return base64.b32encode(text.encode()).decode().rstrip("=").lower()


def _unb32(value: str) -> str | None:
    if not value or not value.isalnum():
        return None
    try:
        return base64.b32decode(value.upper() + "=" * (-len(value) % 8)).decode("ascii")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None


def _base(kind: str, number: int, session_id: str) -> str:
    return _b32(f"{kind}{number}.{session_id}")


def decode_base(base: str) -> tuple[str, int, str] | None:
    """(kind "r" or "t", number, session id) of an item base, or None if not ours."""
    text = _unb32(base)
    if not text or text[0] not in "rt":
        return None
    number, sep, session_id = text[1:].partition(".")
    if not sep or not number.isdigit():
        return None
    try:
        check_session_id(session_id)
    except ValidationError:
        return None
    return text[0], int(number), session_id


def response_id(session_id: str, hint: int) -> str:
    return "resp_" + _base("r", hint, session_id)


def decode_response_id(rid: str) -> tuple[str, int] | None:
    """(session id, hint) of a stored response's id; None for anything else (a
    `store: false` response's id is not decodable: it is never found)."""
    if not rid.startswith("resp_"):
        return None
    decoded = decode_base(rid[5:])
    if decoded is None or decoded[0] != "r":
        return None
    return decoded[2], decoded[1]


def turn_base(session_id: str, version: int) -> str:
    return _base("t", version, session_id)


def event_base(session_id: str, event: RecordedEvent) -> str:
    """The base of the items an event shows as: a stored response's answer keeps the
    response's base (its items have the ids the response showed), any other turn has
    one made of its stream version."""
    rid = event.metadata.get("response_id")
    if event.type == AssistantMessage.type_name and isinstance(rid, str):
        decoded = decode_response_id(rid)
        if decoded is not None and decoded[0] == session_id:
            return rid[5:]
    return turn_base(session_id, event.stream_version)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


# --- events <-> messages ---------------------------------------------------------------


def event_message(event: RecordedEvent) -> Message | None:
    """A turn event as a canonical message; None for events that are not turns."""
    role = MESSAGE_ROLES.get(event.type)
    if role is None:
        return None
    data = event.data
    content = str(data.get("content") or "")
    if role == "tool":
        return Message(
            role="tool",
            content=content,
            tool_call_id=str(data.get("tool_call_id") or ""),
            name=data.get("name"),
        )
    if role == "assistant":
        return Message(role="assistant", content=content, tool_calls=_tool_calls(data))
    return Message(role="user" if role == "user" else "system", content=content)


def _tool_calls(data: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    """Recorded tool calls: flat ({id, name, arguments}, as the proxy records them) or
    OpenAI's shape ({id, function: {name, arguments}}, as the sessions API may)."""
    calls = []
    for call in data.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        fn: Mapping[str, Any] = function if isinstance(function, dict) else call
        arguments = fn.get("arguments", "")
        calls.append(
            ToolCall(
                id=str(call.get("id", "")),
                name=str(fn.get("name", "")),
                arguments=arguments if isinstance(arguments, str) else str(arguments),
            )
        )
    return tuple(calls)


def answer_of(event: RecordedEvent) -> ChatResponse:
    """A recorded answer (proxy.record's AssistantMessage) as a ChatResponse."""
    data, metadata = event.data, event.metadata
    usage = data.get("usage") or {}
    finish = data.get("finish_reason")
    return ChatResponse(
        id=str(metadata.get("response_id") or ""),
        model=str(data.get("model") or ""),
        content=str(data.get("content") or ""),
        tool_calls=_tool_calls(data),
        finish_reason=finish if finish in FINISH_REASONS else "stop",
        usage=Usage(
            input_tokens=int(usage.get("input_tokens", 0)),
            output_tokens=int(usage.get("output_tokens", 0)),
            cached_tokens=int(usage.get("cached_tokens", 0)),
        )
        if usage
        else None,
        created=int(metadata.get("created") or 0),
    )


# --- finding a stored response ---------------------------------------------------------


@dataclass(frozen=True)
class StoredResponse:
    """What the log holds of one response: its input turns, its answer (None while it
    is in flight, or when it failed: then `failure` says why)."""

    response_id: str
    session_id: str
    inputs: tuple[RecordedEvent, ...]
    answer: RecordedEvent | None
    failure: RecordedEvent | None = None

    @property
    def echo(self) -> dict[str, Any]:
        for event in self.inputs:
            echo = event.metadata.get("echo")
            if isinstance(echo, dict):
                return echo
        return {}

    @property
    def created_at(self) -> int:
        if self.answer is not None and self.answer.metadata.get("created"):
            return int(self.answer.metadata["created"])
        for event in self.inputs:
            if event.metadata.get("created_at"):
                return int(event.metadata["created_at"])
        return int(self.inputs[0].recorded_at.timestamp()) if self.inputs else 0


async def find_response(ports: proxy.ProxyPorts, tenant_id: str, rid: str) -> StoredResponse | None:
    """The response `rid` in the caller's tenant: read forward from its hint until its
    answer, the next response's input, or SCAN_EVENTS events."""
    decoded = decode_response_id(rid)
    if decoded is None:
        return None
    session_id, hint = decoded
    stream = stream_id_for(session_id)
    inputs: list[RecordedEvent] = []
    failure: RecordedEvent | None = None
    after = hint
    while after < hint + SCAN_EVENTS:
        events = await ports.events.read_stream(tenant_id, stream, after_version=after, limit=PAGE)
        for event in events:
            meta = event.metadata
            if meta.get("input_of") == rid:
                inputs.append(event)
            elif event.type == AssistantMessage.type_name and meta.get("response_id") == rid:
                return StoredResponse(rid, session_id, tuple(inputs), event)
            elif not inputs:
                return None  # the hint is not where this response's input begins
            elif meta.get("input_of") is not None:
                return StoredResponse(rid, session_id, tuple(inputs), None, failure)
            elif _is_failure(event) and failure is None:
                failure = event
        if len(events) < PAGE:
            break
        after = events[-1].stream_version
    if not inputs:
        return None
    return StoredResponse(rid, session_id, tuple(inputs), None, failure)


def _is_failure(event: RecordedEvent) -> bool:
    return (
        event.type == PolicyApplied.type_name
        and event.data.get("policy") == "route"
        and event.data.get("decision") == "failed"
    )


async def stored_response(ports: proxy.ProxyPorts, tenant_id: str, rid: str) -> StoredResponse:
    found = await find_response(ports, tenant_id, rid)
    if found is None:
        raise not_found(f"No response with id '{rid}' found.", "response_id")
    return found


# --- starting a response ---------------------------------------------------------------


@dataclass
class Started:
    """A prepared call and the response it will be: its id, its time, its settings."""

    call: proxy.Call
    response_id: str
    created_at: int
    echo: dict[str, Any]


@dataclass
class _Target:
    """Where the input goes: the session, the events to append before it (opening or
    forking the session), and the version the append expects."""

    session_id: str
    expected_version: int
    before: list[NewEvent] = field(default_factory=list)
    check_pending: bool = False


async def start(
    ports: proxy.ProxyPorts,
    repo: SessionRepository,
    meta: proxy.CallMeta,
    parsed: ResponsesRequest,
    *,
    header_session: str | None = None,
) -> Started:
    """Resolve the session, append the input (stored responses), and prepare the call.
    `meta.session_id` is ignored: the session comes from the request."""
    chat = parsed.chat
    if not chat.messages:
        raise ProxyError(400, "invalid_request", "input must hold at least one item", param="input")
    if chat.messages[-1].role not in ("user", "tool"):
        raise ProxyError(
            400,
            "invalid_request",
            "the input must end with a user message or a function_call_output",
            param="input",
        )
    proxy.check_model(ports.config, chat.model)  # before anything is written
    created = int(time.time())
    echo = dict(parsed.echo)
    meta = replace(meta, dialect="responses")
    if not parsed.store:
        return await _start_stateless(ports, meta, parsed, header_session, created, echo)
    for _ in range(3):  # a continuation that lost a race becomes a branch
        target = await _target(ports, repo, meta, parsed, header_session)
        try:
            rid = await _append_input(ports, meta, target, parsed, created, echo)
        except WrongExpectedVersion:
            if parsed.previous_response_id is not None:
                continue
            raise ProxyError(
                409,
                "conflict",
                "another request on this conversation was accepted first; send the next "
                "input when it has finished (calls on one session are never interleaved)",
            ) from None
        break
    else:
        raise ProxyError(409, "conflict", "the response chain is moving too fast; retry")
    session_meta = replace(meta, session_id=target.session_id, input_stored=True)
    # The input is stored: the proxy finds it at the end of the session (only the last
    # message is given, to be recognised as stored) and builds the window from there.
    request = replace(chat, messages=chat.messages[-1:])
    try:
        call = await proxy.prepare(ports, session_meta, request)
    except ProxyError as err:
        try:
            await _unanswered(ports, session_meta, target.session_id, err)
        except Exception:  # the caller gets the first error either way
            log.exception("could not record a refused call on session %s", target.session_id)
        raise
    return Started(call, rid, created, echo)


async def _start_stateless(
    ports: proxy.ProxyPorts,
    meta: proxy.CallMeta,
    parsed: ResponsesRequest,
    header_session: str | None,
    created: int,
    echo: dict[str, Any],
) -> Started:
    """`store: false`: a stateless call (recorded as such); its id leads nowhere."""
    if parsed.conversation_id is not None or header_session is not None:
        raise ProxyError(
            400,
            "invalid_request",
            "store: false cannot be used with a conversation or X-Session-Id (they store "
            "the turns)",
            param="store",
        )
    messages = list(parsed.chat.messages)
    if parsed.previous_response_id is not None:
        history = await _history(ports, meta.tenant_id, parsed.previous_response_id)
        messages = history + messages
    request = replace(parsed.chat, messages=tuple(messages))
    call = await proxy.prepare(ports, replace(meta, session_id=None), request)
    rid = "resp_" + uuid7().hex  # hex with 0/1/8/9: never a base32 payload
    return Started(call, rid, created, echo)


async def _history(ports: proxy.ProxyPorts, tenant_id: str, rid: str) -> list[Message]:
    """The turns of a response's session up to and including its answer."""
    found = await find_response(ports, tenant_id, rid)
    if found is None or found.answer is None:
        raise not_found(f"Previous response with id '{rid}' not found.", "previous_response_id")
    events = await _events_until(ports, tenant_id, found.session_id, found.answer.stream_version)
    return [m for m in map(event_message, events) if m is not None and m.role != "system"]


async def _events_until(
    ports: proxy.ProxyPorts, tenant_id: str, session_id: str, version: int
) -> list[RecordedEvent]:
    out: list[RecordedEvent] = []
    stream = stream_id_for(session_id)
    while len(out) < version:
        page = await ports.events.read_stream(
            tenant_id, stream, after_version=len(out), limit=min(1000, version - len(out))
        )
        if not page:
            break
        out.extend(page)
    return out


async def _target(
    ports: proxy.ProxyPorts,
    repo: SessionRepository,
    meta: proxy.CallMeta,
    parsed: ResponsesRequest,
    header_session: str | None,
) -> _Target:
    tenant = meta.tenant_id
    named = parsed.conversation_id
    if parsed.previous_response_id is not None:
        return await _after_response(ports, meta, parsed.previous_response_id, header_session)
    if named is not None:
        if header_session is not None and header_session != named:
            raise ProxyError(
                400,
                "invalid_request",
                "X-Session-Id names another session than the conversation",
                param="conversation",
            )
        view = await _open_view(repo, tenant, named, "conversation")
        return _Target(named, view.version, check_pending=True)
    if header_session is not None:
        try:
            check_session_id(header_session)
        except ValidationError as exc:
            raise ProxyError(400, "invalid_request", str(exc), param="X-Session-Id") from None
        existing = await repo.get(tenant, header_session)
        if existing is not None:
            if existing.status == "closed":
                raise _closed(header_session, "X-Session-Id")
            return _Target(header_session, existing.version, check_pending=True)
        return _new_session(meta, header_session, {"opened_by": "responses"})
    key = meta.idempotency_key
    session_id = "chain_" + (_digest(tenant, key) if key else uuid7().hex)
    return _new_session(meta, session_id, {"opened_by": "responses"})


def _new_session(meta: proxy.CallMeta, session_id: str, metadata: dict[str, Any]) -> _Target:
    opened = SessionOpened(session_id=session_id, user_id=meta.user_id, metadata=metadata)
    event = NewEvent.from_domain(opened, uuid7(), {"key_id": meta.key_id})
    return _Target(session_id, 0, [event])


def _closed(session_id: str, param: str | None = None) -> ProxyError:
    return ProxyError(
        409, "conflict", f"session '{session_id}' is closed; start a new one", param=param
    )


async def _open_view(
    repo: SessionRepository, tenant_id: str, session_id: str, param: str
) -> SessionView:
    """The session a conversation is; 404 when unknown or deleted (closed)."""
    try:
        check_session_id(session_id)
    except ValidationError:
        raise not_found(f"Conversation with id '{session_id}' not found.", param) from None
    view = await repo.get(tenant_id, session_id)
    if view is None or view.status == "closed":
        raise not_found(f"Conversation with id '{session_id}' not found.", param)
    return view


async def _after_response(
    ports: proxy.ProxyPorts, meta: proxy.CallMeta, previous: str, header_session: str | None
) -> _Target:
    """Continue the previous response's session when it is that session's latest turn
    (or this is a retry of a request that did: same Idempotency-Key); else fork."""
    tenant = meta.tenant_id
    found = await find_response(ports, tenant, previous)
    if found is None or found.answer is None:
        raise not_found(
            f"Previous response with id '{previous}' not found.", "previous_response_id"
        )
    session_id = found.session_id
    if header_session is not None and header_session != session_id:
        raise ProxyError(
            400,
            "invalid_request",
            "X-Session-Id names another session than previous_response_id's",
            param="previous_response_id",
        )
    answer = found.answer
    later = await ports.events.read_stream(
        tenant, stream_id_for(session_id), after_version=answer.stream_version, limit=LATEST_WINDOW
    )
    if later and later[-1].type == SessionClosed.type_name:
        raise _closed(session_id, "previous_response_id")
    key = meta.idempotency_key
    retry = key is not None and any(e.metadata.get("idempotency_key") == key for e in later)
    turns = any(e.type in MESSAGE_ROLES for e in later)
    if retry or (not turns and len(later) < LATEST_WINDOW):
        version = later[-1].stream_version if later else answer.stream_version
        return _Target(session_id, version)
    return await _fork(ports, meta, found, answer)


async def _fork(
    ports: proxy.ProxyPorts, meta: proxy.CallMeta, found: StoredResponse, answer: RecordedEvent
) -> _Target:
    """A new session holding copies of the turns up to `answer` (their times kept), to be
    opened in the same append as the new input."""
    key = meta.idempotency_key
    fork_id = "chain_" + (_digest(meta.tenant_id, key, "fork") if key else uuid7().hex)
    target = _new_session(
        meta,
        fork_id,
        {
            "opened_by": "responses",
            "forked_from": {
                "session_id": found.session_id,
                "response_id": found.response_id,
                "version": answer.stream_version,
            },
        },
    )
    events = await _events_until(ports, meta.tenant_id, found.session_id, answer.stream_version)
    for event in events:
        if event.type not in MESSAGE_ROLES:
            continue
        # A copy is context, not a second call: its usage and cost stay with the original.
        data = {k: v for k, v in event.data.items() if k not in ("usage", "cost")}
        data["occurred_at"] = (
            data.get("occurred_at") or event.recorded_at.astimezone(UTC).isoformat()
        )
        copied = {
            "key_id": meta.key_id,
            "via": "responses",
            "copied_from": f"{found.session_id}@{event.stream_version}",
        }
        target.before.append(NewEvent(uuid7(), event.type, event.schema_version, data, copied))
    return target


async def _append_input(
    ports: proxy.ProxyPorts,
    meta: proxy.CallMeta,
    target: _Target,
    parsed: ResponsesRequest,
    created: int,
    echo: dict[str, Any],
) -> str:
    """Append the input (after the events that open the session, if any) at the expected
    version; the response id follows from that version. A retry with the same
    Idempotency-Key gets the first append back, and the id it had."""
    tenant, session_id = meta.tenant_id, target.session_id
    if target.check_pending:
        await _refuse_if_pending(ports, tenant, session_id, target.expected_version)
    hint = target.expected_version + len(target.before)
    rid = response_id(session_id, hint)
    inputs: list[NewEvent] = []
    for i, message in enumerate(parsed.chat.messages):
        metadata: dict[str, Any] = {"key_id": meta.key_id, "via": "responses", "input_of": rid}
        if i == 0:
            metadata["echo"] = echo
            metadata["created_at"] = created
        if meta.idempotency_key:
            metadata["idempotency_key"] = meta.idempotency_key
        inputs.append(NewEvent.from_domain(proxy.turn_event(ports, message), uuid7(), metadata))
    key = f"{meta.idempotency_key}#responses" if meta.idempotency_key else None
    try:
        result = await ports.events.append(
            tenant,
            stream_id_for(session_id),
            [*target.before, *inputs],
            expected_version=target.expected_version,
            idempotency_key=key,
            must_exist=target.expected_version > 0,
        )
    except StreamClosed:
        raise _closed(session_id) from None
    except StreamNotFound:
        raise not_found(f"session '{session_id}' does not exist") from None
    except IdempotencyKeyReused as exc:
        raise ProxyError(422, "invalid_request", str(exc), param="Idempotency-Key") from None
    if result.replayed:
        first = (
            result.events[len(target.before)] if len(result.events) > len(target.before) else None
        )
        stored = first.metadata.get("input_of") if first is not None else None
        if isinstance(stored, str):
            return stored
    return rid


async def _refuse_if_pending(
    ports: proxy.ProxyPorts, tenant_id: str, session_id: str, version: int
) -> None:
    """Another call is in flight when the session's newest event is the input of a call
    (not an item added to the conversation) still waiting for its answer, younger than
    proxy.PENDING_TTL (an older one was abandoned by a call that crashed)."""
    newest = await ports.events.read_stream(
        tenant_id, stream_id_for(session_id), after_version=version - 1, limit=1
    )
    if not newest:
        return
    last = newest[0]
    if last.type not in (UserMessage.type_name, ToolResult.type_name):
        return
    if last.metadata.get("via") not in CALL_DIALECTS:
        return
    if datetime.now(UTC) - last.recorded_at > proxy.PENDING_TTL:
        return
    raise ProxyError(
        409,
        "conflict",
        "another request on this conversation is waiting for its answer; send the next "
        "input when it has finished (calls on one session are never interleaved)",
    )


async def _unanswered(
    ports: proxy.ProxyPorts, meta: proxy.CallMeta, session_id: str, err: ProxyError
) -> None:
    """The input is stored but the call could not even be planned: say so in the log,
    so the session is not left waiting for an answer."""
    event = PolicyApplied(
        policy="route",
        decision="failed",
        reason=err.message[:500],
        details={"status": err.status},
    )
    await ports.events.append(
        meta.tenant_id,
        stream_id_for(session_id),
        [NewEvent.from_domain(event, uuid7(), {"key_id": meta.key_id})],
        must_exist=True,
    )


# --- conversations ---------------------------------------------------------------------


async def create_conversation(
    ports: proxy.ProxyPorts,
    tenant_id: str,
    key_id: str,
    metadata: Mapping[str, str],
    messages: Sequence[Message],
) -> tuple[str, int, list[dict[str, Any]]]:
    """Open a `conv_` session with the caller's metadata and its first items, in one
    append; returns its id, creation time and the items added."""
    conversation_id = "conv_" + uuid7().hex
    opened = SessionOpened(session_id=conversation_id, metadata=dict(metadata))
    events = [NewEvent.from_domain(opened, uuid7(), {"key_id": key_id})]
    turn_meta = {"key_id": key_id, "via": "conversations"}
    events.extend(
        NewEvent.from_domain(proxy.turn_event(ports, m), uuid7(), turn_meta) for m in messages
    )
    result = await ports.events.append(
        tenant_id, stream_id_for(conversation_id), events, expected_version=0
    )
    created = int(result.events[0].recorded_at.timestamp())
    return conversation_id, created, _items(conversation_id, result.events[1:])


async def conversation(
    repo: SessionRepository, tenant_id: str, conversation_id: str
) -> SessionView:
    return await _open_view(repo, tenant_id, conversation_id, "conversation_id")


async def delete_conversation(
    ports: proxy.ProxyPorts, repo: SessionRepository, tenant_id: str, key_id: str, cid: str
) -> None:
    """Close the session: no turn can be added any more, and the conversation reads as
    deleted. Its events stay (the log is append-only), and so do its responses."""
    await _open_view(repo, tenant_id, cid, "conversation_id")
    event = SessionClosed(reason="conversation deleted")
    try:
        await ports.events.append(
            tenant_id,
            stream_id_for(cid),
            [NewEvent.from_domain(event, uuid7(), {"key_id": key_id, "via": "conversations"})],
            must_exist=True,
            close=True,
        )
    except (StreamClosed, StreamNotFound):
        raise not_found(f"Conversation with id '{cid}' not found.", "conversation_id") from None


async def add_items(
    ports: proxy.ProxyPorts,
    repo: SessionRepository,
    tenant_id: str,
    key_id: str,
    cid: str,
    messages: Sequence[Message],
) -> list[dict[str, Any]]:
    await _open_view(repo, tenant_id, cid, "conversation_id")
    turn_meta = {"key_id": key_id, "via": "conversations"}
    events = [
        NewEvent.from_domain(proxy.turn_event(ports, m), uuid7(), turn_meta) for m in messages
    ]
    try:
        result = await ports.events.append(tenant_id, stream_id_for(cid), events, must_exist=True)
    except (StreamClosed, StreamNotFound):
        raise not_found(f"Conversation with id '{cid}' not found.", "conversation_id") from None
    return _items(cid, result.events)


def _items(session_id: str, events: Sequence[RecordedEvent]) -> list[dict[str, Any]]:
    """The items of turn events, in the order given."""
    pairs = []
    for event in events:
        message = event_message(event)
        if message is not None:
            pairs.append((event_base(session_id, event), message))
    return conversation_items(pairs)


async def _cursor_version(
    ports: proxy.ProxyPorts, tenant_id: str, session_id: str, item_id: str, param: str
) -> int:
    """The stream version of the event an item id was made from (in this session)."""
    base = item_base(item_id)
    decoded = decode_base(base) if base else None
    if decoded is None or decoded[2] != session_id:
        raise ProxyError(
            400,
            "invalid_request",
            f"'{item_id}' is not an item of this conversation",
            param=param,
        )
    kind, number, _ = decoded
    if kind == "t":
        return number
    found = await find_response(ports, tenant_id, "resp_" + (base or ""))
    if found is None or found.answer is None:
        raise ProxyError(
            400,
            "invalid_request",
            f"'{item_id}' is not an item of this conversation",
            param=param,
        )
    return found.answer.stream_version


async def list_items(
    ports: proxy.ProxyPorts,
    repo: SessionRepository,
    tenant_id: str,
    cid: str,
    *,
    limit: int,
    order: Order,
    after: str | None,
) -> tuple[list[dict[str, Any]], bool]:
    """One page of a conversation's items (its turns, in log order or newest first),
    after the item `after`; and whether more remain. Reads the log in pages of events,
    from the cursor's event, until the page is full."""
    view = await _open_view(repo, tenant_id, cid, "conversation_id")
    stream = stream_id_for(cid)
    start = None
    if after is not None:
        start = await _cursor_version(ports, tenant_id, cid, after, "after")
    out: list[dict[str, Any]] = []
    skipping = after is not None
    if order == "asc":
        position = (start - 1) if start is not None else 0
        while len(out) <= limit:
            events = await ports.events.read_stream(
                tenant_id, stream, after_version=position, limit=PAGE
            )
            out.extend(_items(cid, events))
            if skipping:
                out, skipping = _after(out, after), False
            if len(events) < PAGE:
                break
            position = events[-1].stream_version
    else:
        top = start if start is not None else view.version
        while len(out) <= limit and top > 0:
            low = max(0, top - PAGE)
            events = await ports.events.read_stream(
                tenant_id, stream, after_version=low, limit=top - low
            )
            out.extend(reversed(_items(cid, events)))
            if skipping:
                out, skipping = _after(out, after), False
            top = low
    return out[:limit], len(out) > limit


def _after(items: list[dict[str, Any]], item_id: str | None) -> list[dict[str, Any]]:
    for i, item in enumerate(items):
        if item["id"] == item_id:
            return items[i + 1 :]
    raise ProxyError(
        400, "invalid_request", f"'{item_id}' is not an item of this conversation", param="after"
    )


async def get_item(
    ports: proxy.ProxyPorts, repo: SessionRepository, tenant_id: str, cid: str, item_id: str
) -> dict[str, Any]:
    await _open_view(repo, tenant_id, cid, "conversation_id")
    try:
        version = await _cursor_version(ports, tenant_id, cid, item_id, "item_id")
    except ProxyError:
        raise not_found(f"Item with id '{item_id}' not found.", "item_id") from None
    events = await ports.events.read_stream(
        tenant_id, stream_id_for(cid), after_version=version - 1, limit=1
    )
    for item in _items(cid, events):
        if item["id"] == item_id:
            return item
    raise not_found(f"Item with id '{item_id}' not found.", "item_id")


def input_items(found: StoredResponse) -> list[dict[str, Any]]:
    """A response's input as items, in the order given (the ids its conversation shows)."""
    return _items(found.session_id, found.inputs)


def page(
    items: list[dict[str, Any]], *, limit: int, order: Order, after: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """A page of an in-memory item list (a response's input items)."""
    ordered = items if order == "asc" else list(reversed(items))
    if after is not None:
        ordered = _after(ordered, after)
    return ordered[:limit], len(ordered) > limit
