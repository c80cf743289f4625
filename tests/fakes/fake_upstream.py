"""A fake LLM provider: a real HTTP/1.1 server (uvicorn, httptools, keep-alive) that
speaks OpenAI Chat Completions and Anthropic Messages on the wire, so provider adapters
and the official SDKs are tested through their real transport and parsers. It is the
only fake provider of the project (real ones cannot be reached here), so the bytes it
sends follow the providers' documented shapes: JSON bodies, SSE event sequences, error
bodies, Retry-After. The dialect code lives in tests/fakes/fake_upstream_wire.py.

Endpoints
    POST /v1/chat/completions  OpenAI; `Authorization: Bearer <key>` required.
    POST /v1/messages          Anthropic; `anthropic-version` and a key required, in
                               `x-api-key` or (as SDKs 2.x send it) `Authorization: Bearer`.
    GET  /v1/models[/{id}]     OpenAI's list shape, Anthropic's with `anthropic-version`.
    GET|DELETE /_fake/requests, POST /_fake/behaviors   control, for another process:
                               read or clear the capture, enqueue Behavior JSON objects.

Answers are deterministic: `Echo: <last user message>`; usage counts whitespace words
(input: the system prompt and every message; output: the answer). When tools are offered
and the conversation ends on a user message mentioning "weather" (or tool_choice forces
a call), the answer is a call to the first tool with `{"city":"Paris"}`. max_tokens cuts
the answer (finish `length` / `max_tokens`); stop sequences cut the text before them.

Scripting, in process: `fake.enqueue(Behavior(...))` queues behaviours consumed in FIFO
order by the next matching requests; `fake.default` answers when none is queued; the
`latency` attribute adds seconds to every response. A Behavior without `path` applies to
the two chat endpoints only, so a client listing models does not eat a scripted failure.

Model-name conventions, for tests that cannot call enqueue (the gateway runs elsewhere):
the model name is split on "+" and these tokens script the answer; others are ignored,
so `gpt-4o+slow-200` is the model `gpt-4o` answering after 200 ms.
    fail-<status>          answer that status in the dialect's error shape (fail-429
                           sends Retry-After: 1; fail-529 is Anthropic's overloaded).
    flaky-<status>-<n>     the first n requests with this exact model name fail with
                           that status, later ones succeed (retries, circuit breakers).
    slow-<ms>              wait before the response headers (timeouts, latency routing).
    drip-<ms>              wait between stream chunks.
    cut-<n>                streams: n SSE events, then the connection is dropped;
                           non-streaming: cut-0 drops it before any response, cut-<n>
                           after the headers and half the body.
    stream-error-<n>       streams: n events, then the dialect's in-stream error event
                           (OpenAI server_error, Anthropic overloaded_error).
    cached-<n>             report n prompt tokens read from the provider's cache.
    tool-call              call the first offered tool whatever the user says.
    garbage                200 with a body that is not JSON (nor valid SSE).

As a process, for benchmarks (prints `listening on http://127.0.0.1:PORT` when ready):
    python -m tests.fakes.fake_upstream --port 0 [--host H] [--latency-ms X] [--workers N]
        [--no-capture | --capture-max N (default 10000)] [--reply TEXT] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from types import EllipsisType, TracebackType
from typing import Any

import msgspec
import uvicorn

from tests.fakes import fake_upstream_wire as wire
from tests.fakes.fake_upstream_wire import FakeToolCall, Turn, WireError

__all__ = ["Behavior", "CapturedRequest", "FakeToolCall", "FakeUpstream", "main"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4-6", "claude-haiku-4-5")
CHAT_PATHS = ("/v1/chat/completions", "/v1/messages")

_JSON = (b"content-type", b"application/json")
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_INVALID = object()  # a body that is not JSON
_CONVENTION = re.compile(
    r"(?:(?P<kind>fail|slow|drip|cut|cached|stream-error)-(?P<n>\d+))"
    r"|(?:flaky-(?P<status>\d{3})-(?P<times>\d+))|(?P<flag>tool-call|garbage)"
)
_GARBAGE = b"<html><body>upstream garbage {not json</body></html>"
_OPENAI_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)"
)
_OPENAI_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


@dataclass(frozen=True, slots=True)
class Behavior:
    """How the fake answers one request. The defaults give the echo answer at once.

    status: an HTTP error status answered in the dialect's error shape (with `message`
        if given); retry_after: seconds sent as Retry-After (with any status).
    delay: seconds before the response headers; chunk_delay: seconds between SSE events.
    cut_after: drop the connection after that many SSE events (non-streaming: 0 drops it
        before any response, more after the headers and half the body).
    error_after: streams only: that many events, then the in-stream error event for
        `status` (500 / Anthropic 529 when status is 200), and a clean end.
    text: the answer instead of the echo; tool_call: one call or several to emit (with
        the text if both are set); body: raw bytes sent as is with `status` and
        `content_type`; headers: extra response headers; cached_tokens: prompt tokens
        reported as read from the provider's cache.
    model / path: when queued, the behaviour is only used by requests for that model
        name / to that path.
    """

    status: int = 200
    retry_after: float | None = None
    message: str | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    cut_after: int | None = None
    error_after: int | None = None
    text: str | None = None
    tool_call: FakeToolCall | Sequence[FakeToolCall] | None = None
    body: bytes | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    cached_tokens: int = 0
    model: str | None = None
    path: str | None = None

    def matches(self, model: str | None, path: str) -> bool:
        if self.path is None:
            if path not in CHAT_PATHS:
                return False
        elif self.path != path:
            return False
        return self.model is None or self.model == model

    def tool_calls(self) -> list[FakeToolCall] | None:
        if self.tool_call is None:
            return None
        if isinstance(self.tool_call, FakeToolCall):
            return [self.tool_call]
        return list(self.tool_call)


@dataclass(frozen=True, slots=True)
class CapturedRequest:
    """A request as the provider received it. `body` is the parsed JSON (None when the
    body is empty or not JSON); `raw` the bytes; `headers` have lower-cased names."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    time: float


@dataclass(slots=True)
class _Reply:
    """What to send: a JSON body, or SSE events when `events` is set."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    events: list[bytes] | None = None


class _ConnectionCut(Exception):
    """Raised to make the server drop a connection when its transport is out of reach."""


def _behavior_from_json(data: Any) -> Behavior:
    """A Behavior from its JSON form (control endpoint): `body` is text, `tool_call` an
    object {"name", "arguments"} or a list of them."""
    if not isinstance(data, dict):
        raise TypeError("a behavior is a JSON object")
    fields = dict(data)
    if isinstance(fields.get("body"), str):
        fields["body"] = fields["body"].encode()
    call = fields.get("tool_call")
    if isinstance(call, dict):
        fields["tool_call"] = FakeToolCall(**call)
    elif isinstance(call, list):
        fields["tool_call"] = tuple(FakeToolCall(**c) for c in call)
    return Behavior(**fields)


async def _client_gone(watch: asyncio.Future[Message], seconds: float) -> bool:
    """Sleep, waking early (True) if the client disconnects, so a scripted delay does not
    outlive the client that timed out on it."""
    done, _ = await asyncio.wait({watch}, timeout=seconds)
    return bool(done)


class FakeUpstream:
    """The fake provider: an ASGI app plus its in-process runner.

    `with FakeUpstream() as fake:` serves on 127.0.0.1 (port 0: a free one) from a
    background thread with its own event loop, so sync and async tests can use it;
    `fake.base_url` is `http://127.0.0.1:PORT` (OpenAI SDKs want base_url + "/v1").
    `capture`: True keeps every request, an int keeps the last N, False none (for
    benchmarks). `api_key`: if set, the only key accepted; otherwise any non-empty one.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        capture: bool | int = True,
        models: Sequence[str] = DEFAULT_MODELS,
        reply_prefix: str = "Echo: ",
        default: Behavior | None = None,
        api_key: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.models = list(models)
        self.reply_prefix = reply_prefix
        self.api_key = api_key
        self._default = default or Behavior()
        self._lock = threading.Lock()
        self._queue: deque[Behavior] = deque()
        self._capture = capture is not False
        self._captured: deque[CapturedRequest] = deque(
            maxlen=None if capture is True or capture is False else int(capture)
        )
        self._conventions: dict[str, tuple[Behavior | None, tuple[int, int] | None]] = {}
        self._flaky: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._tag = secrets.token_hex(3)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- scripting and capture (thread-safe) --------------------------------------------

    @property
    def default(self) -> Behavior:
        return self._default

    @default.setter
    def default(self, behavior: Behavior) -> None:
        self._default = behavior
        self._conventions = {}  # they were derived from the old default

    def enqueue(self, *behaviors: Behavior) -> None:
        """Queue behaviours for the next matching requests, first in first used."""
        with self._lock:
            self._queue.extend(behaviors)

    @property
    def pending(self) -> int:
        """Queued behaviours not used yet."""
        return len(self._queue)

    @property
    def requests(self) -> list[CapturedRequest]:
        """A snapshot of the captured requests, oldest first."""
        with self._lock:
            return list(self._captured)

    def clear(self) -> None:
        """Forget captured requests, queued behaviours and flaky-model counters, so one
        server can be shared by many tests."""
        with self._lock:
            self._captured.clear()
            self._queue.clear()
            self._flaky.clear()

    # --- running in process --------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake upstream is not running")
        return f"http://{self.host}:{self.port}"

    def config(self, **overrides: Any) -> uvicorn.Config:
        """A uvicorn config tuned for speed: httptools, no access log, no lifespan, no
        proxy-header middleware, no websockets."""
        options: dict[str, Any] = {
            "http": "httptools",
            "lifespan": "off",
            "ws": "none",
            "access_log": False,
            "log_config": None,
            "log_level": "warning",
            "proxy_headers": False,
            "server_header": False,
            "backlog": 4096,
            "timeout_keep_alive": 30,
            "timeout_graceful_shutdown": 1,
        }
        options.update(overrides)
        return uvicorn.Config(options.pop("app", self), **options)

    def bind(self) -> socket.socket:
        """Bind the listening socket (port 0: a free one) and remember its port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        return sock

    def start(self) -> FakeUpstream:
        """Serve from a background thread; returns once the server accepts requests."""
        if self._server is not None:
            raise RuntimeError("already running")
        sock = self.bind()
        server = uvicorn.Server(self.config())
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-upstream", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.002)
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeUpstream:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # --- the ASGI app --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        raw: bytes = message.get("body", b"")
        if message.get("more_body"):
            parts = [raw]
            while message.get("more_body"):
                message = await receive()
                parts.append(message.get("body", b""))
            raw = b"".join(parts)
        if message["type"] == "http.disconnect":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        body: Any = None
        if raw:
            try:
                body = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                body = _INVALID
        if path.startswith("/_fake/"):
            reply, behavior = self._control(method, path, body), None
        else:
            if self._capture:
                self._record(scope, raw, body)
            reply, behavior = self._route(method, path, scope["headers"], body)
        await self._respond(reply, behavior, receive, send)

    def _record(self, scope: Scope, raw: bytes, body: Any) -> None:
        captured = CapturedRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope["query_string"].decode("latin-1"),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            body=None if body is _INVALID else body,
            raw=raw,
            time=time.time(),
        )
        with self._lock:
            self._captured.append(captured)

    def _next_id(self) -> str:
        return f"{self._tag}{next(self._ids):010x}"

    def _route(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: Any
    ) -> tuple[_Reply, Behavior | None]:
        auth = key = version = None
        for name, value in headers:
            if name == b"authorization":
                auth = value
            elif name == b"x-api-key":
                key = value
            elif name == b"anthropic-version":
                version = value
        anthropic = path == "/v1/messages" or (
            path != "/v1/chat/completions" and (version is not None or key is not None)
        )
        rid = "req_" + self._next_id()
        if anthropic:
            if key is None and auth is not None and auth.startswith(b"Bearer "):
                key = auth[7:].strip()  # newer SDKs send the key as a bearer token
            error = self._anthropic_auth(key, version, rid)
        else:
            error = self._openai_auth(auth, rid)
        if error is not None:
            return error, None
        if path in CHAT_PATHS or path == "/v1/models" or path.startswith("/v1/models/"):
            wanted = "GET" if path.startswith("/v1/models") else "POST"
            if method != wanted:
                return self._error(anthropic, 405, rid, f"Method {method} not allowed"), None
        else:
            return self._error(anthropic, 404, rid, f"Not found: {method} {path}"), None
        if body is _INVALID:
            message = _OPENAI_BAD_JSON if not anthropic else "Request body is not valid JSON"
            return self._error(anthropic, 400, rid, message), None
        if path.startswith("/v1/models"):
            return self._models(anthropic, path, rid)
        try:
            turn = wire.parse_anthropic(body) if anthropic else wire.parse_openai(body)
        except WireError as e:
            return self._error(anthropic, e.status, rid, e.message, e.param, e.code), None
        except (AttributeError, TypeError, KeyError) as e:  # a field of the wrong shape
            return self._error(anthropic, 400, rid, f"Invalid request body: {e}"), None
        behavior = self._behavior(turn.model, path)
        return self._chat(anthropic, turn, behavior, rid), behavior

    def _openai_auth(self, auth: bytes | None, rid: str) -> _Reply | None:
        if auth is None or not auth.startswith(b"Bearer ") or not auth[7:].strip():
            return self._error(False, 401, rid, _OPENAI_NO_KEY, code=None)
        if self.api_key is not None and auth[7:].decode("latin-1") != self.api_key:
            return self._error(False, 401, rid)
        return None

    def _anthropic_auth(self, key: bytes | None, version: bytes | None, rid: str) -> _Reply | None:
        if not key:
            return self._error(True, 401, rid, "x-api-key header is required")
        if self.api_key is not None and key.decode("latin-1") != self.api_key:
            return self._error(True, 401, rid)
        if not version:
            return self._error(True, 400, rid, "anthropic-version: header is required")
        return None

    def _error(
        self,
        anthropic: bool,
        status: int,
        rid: str,
        message: str | None = None,
        param: str | None = None,
        code: str | EllipsisType | None = ...,
        model: str | None = None,
        retry_after: float | None = None,
    ) -> _Reply:
        if anthropic:
            body = wire.anthropic_error(status, message, model=model, request_id=rid)
            headers = [_JSON, (b"request-id", rid.encode())]
        else:
            body = wire.openai_error(status, message, model=model, param=param, code=code)
            headers = [_JSON, (b"x-request-id", rid.encode())]
        if retry_after is not None:
            headers.extend(_retry_after(retry_after))
        return _Reply(status, headers, body)

    def _models(self, anthropic: bool, path: str, rid: str) -> tuple[_Reply, Behavior | None]:
        behavior = self._queued(None, path)
        if behavior is not None and (behavior.status != 200 or behavior.body is not None):
            return self._scripted_failure(anthropic, None, behavior, rid, False), behavior
        created = 1_700_000_000
        if path == "/v1/models":
            body = (
                wire.anthropic_models(self.models)
                if anthropic
                else wire.openai_models(self.models, created)
            )
        else:
            model = path.removeprefix("/v1/models/")
            if model not in self.models:
                return self._error(anthropic, 404, rid, model=model), behavior
            body = wire.anthropic_model(model) if anthropic else wire.openai_model(model, created)
        header = b"request-id" if anthropic else b"x-request-id"
        return _Reply(200, [_JSON, (header, rid.encode())], body), behavior

    # --- behaviours ----------------------------------------------------------------------

    def _queued(self, model: str | None, path: str) -> Behavior | None:
        if not self._queue:
            return None
        with self._lock:
            for i, behavior in enumerate(self._queue):
                if behavior.matches(model, path):
                    del self._queue[i]
                    return behavior
        return None

    def _behavior(self, model: str, path: str) -> Behavior:
        """The queued behaviour for this request, else the one its model name scripts,
        else the default."""
        queued = self._queued(model, path)
        if queued is not None:
            return queued
        convention = self._conventions.get(model)
        if convention is None:
            convention = self._convention(model)
        base, flaky = convention
        if flaky is not None:
            with self._lock:
                seen = self._flaky[model] = self._flaky.get(model, 0) + 1
            if seen <= flaky[1]:
                status = flaky[0]
                return replace(
                    base or self._default,
                    status=status,
                    retry_after=1 if status == 429 else None,
                )
        return base or self._default

    def _convention(self, model: str) -> tuple[Behavior | None, tuple[int, int] | None]:
        """Parse (and cache) what a model name scripts, on top of the default."""
        changes: dict[str, Any] = {}
        flaky = None
        for token in model.split("+"):
            match = _CONVENTION.fullmatch(token)
            if match is None:
                continue
            kind, n = match["kind"], int(match["n"] or 0)
            if kind == "fail":
                changes["status"] = n
                if n == 429:
                    changes["retry_after"] = 1
            elif kind == "slow":
                changes["delay"] = n / 1000
            elif kind == "drip":
                changes["chunk_delay"] = n / 1000
            elif kind == "cut":
                changes["cut_after"] = n
            elif kind == "cached":
                changes["cached_tokens"] = n
            elif kind == "stream-error":
                changes["error_after"] = n
            elif match["status"]:
                flaky = (int(match["status"]), int(match["times"]))
            elif match["flag"] == "tool-call":
                changes["tool_call"] = FakeToolCall()
            elif match["flag"] == "garbage":
                changes["body"] = _GARBAGE
        result = (replace(self._default, **changes) if changes else None, flaky)
        if len(self._conventions) > 4096:
            self._conventions = {}
        self._conventions[model] = result
        return result

    # --- answers -------------------------------------------------------------------------

    def _scripted_failure(
        self, anthropic: bool, model: str | None, behavior: Behavior, rid: str, stream: bool
    ) -> _Reply:
        """A raw body or an error status, as the behaviour says."""
        extra = [(k.lower().encode(), v.encode()) for k, v in behavior.headers.items()]
        if behavior.body is not None:
            if behavior.content_type is not None:
                headers = [(b"content-type", behavior.content_type.encode())]
            else:
                headers = list(_SSE) if stream else [_JSON]
            if behavior.retry_after is not None:
                headers.extend(_retry_after(behavior.retry_after))
            reply = _Reply(behavior.status, headers + extra, behavior.body)
            if stream:
                reply.events = [behavior.body]
            return reply
        reply = self._error(
            anthropic,
            behavior.status,
            rid,
            behavior.message,
            model=model,
            retry_after=behavior.retry_after,
        )
        reply.headers.extend(extra)
        return reply

    def _chat(self, anthropic: bool, turn: Turn, behavior: Behavior, rid: str) -> _Reply:
        if behavior.body is not None or (behavior.status != 200 and behavior.error_after is None):
            return self._scripted_failure(anthropic, turn.model, behavior, rid, turn.stream)
        tag = self._next_id()
        answer = wire.make_answer(
            turn,
            text=behavior.text,
            tool_calls=behavior.tool_calls(),
            prefix=self.reply_prefix,
            call_id=(lambda: "toolu_01" + self._next_id())
            if anthropic
            else (lambda: "call_" + self._next_id()),
        )
        cached = behavior.cached_tokens
        headers = [(b"request-id" if anthropic else b"x-request-id", rid.encode())]
        headers.extend((k.lower().encode(), v.encode()) for k, v in behavior.headers.items())
        if behavior.retry_after is not None:
            headers.extend(_retry_after(behavior.retry_after))
        if not turn.stream:
            body = (
                wire.anthropic_message("msg_01" + tag, turn, answer, cached)
                if anthropic
                else wire.openai_completion(
                    "chatcmpl-" + tag, int(time.time()), turn, answer, cached
                )
            )
            return _Reply(200, [_JSON, *headers], body)
        if anthropic:
            events = wire.anthropic_stream("msg_01" + tag, turn, answer, cached)
        else:
            events = wire.openai_stream("chatcmpl-" + tag, int(time.time()), turn, answer, cached)
        if behavior.error_after is not None:
            status = behavior.status if behavior.status != 200 else 529 if anthropic else 500
            render = wire.anthropic_stream_error if anthropic else wire.openai_stream_error
            events = [*events[: behavior.error_after], render(status, behavior.message, turn.model)]
        return _Reply(200, [*_SSE, *headers], events=events)

    # --- control endpoints ---------------------------------------------------------------

    def _control(self, method: str, path: str, body: Any) -> _Reply:
        """Scripting and capture over HTTP, for a fake run as its own process."""
        if path == "/_fake/requests" and method == "GET":
            rows = [{k: v for k, v in asdict(r).items() if k != "raw"} for r in self.requests]
            return _Reply(200, [_JSON], msgspec.json.encode(rows))
        if path == "/_fake/requests" and method == "DELETE":
            self.clear()
            return _Reply(200, [_JSON], b'{"cleared":true}')
        if path == "/_fake/behaviors" and method == "POST":
            items = body if isinstance(body, list) else [body]
            try:
                behaviors = [_behavior_from_json(item) for item in items]
            except TypeError as e:
                return _Reply(400, [_JSON], msgspec.json.encode({"error": str(e)}))
            self.enqueue(*behaviors)
            return _Reply(200, [_JSON], msgspec.json.encode({"queued": len(behaviors)}))
        return _Reply(404, [_JSON], b'{"error":"unknown control endpoint"}')

    # --- sending -------------------------------------------------------------------------

    async def _respond(
        self, reply: _Reply, behavior: Behavior | None, receive: Receive, send: Send
    ) -> None:
        """Send `reply` with the behaviour's timing: delay, chunk_delay, cut_after."""
        delay = behavior.delay if behavior is not None else 0.0
        cut = behavior.cut_after if behavior is not None else None
        gap = behavior.chunk_delay if behavior is not None else 0.0
        watch: asyncio.Future[Message] | None = None
        try:
            if delay > 0:  # scripted, maybe long: give up if the client does
                watch = asyncio.ensure_future(receive())
                if await _client_gone(watch, self.latency + delay):
                    return
            elif self.latency > 0:  # the benchmark's, short: a plain sleep is cheaper
                await asyncio.sleep(self.latency)
            events = reply.events
            if events is None:
                body = reply.body
                if cut is not None and cut <= 0:
                    await _drop(receive, watch)
                    return
                headers = [*reply.headers, (b"content-length", b"%d" % len(body))]
                await send(
                    {"type": "http.response.start", "status": reply.status, "headers": headers}
                )
                if cut is None:
                    await send({"type": "http.response.body", "body": body})
                    return
                half = body[: len(body) // 2]
                await send({"type": "http.response.body", "body": half, "more_body": True})
                await _drop(receive, watch)
                return
            await send(
                {"type": "http.response.start", "status": reply.status, "headers": reply.headers}
            )
            if cut is not None:
                events = events[:cut]
            if gap <= 0 or len(events) < 2:
                joined = b"".join(events)
                await send(
                    {"type": "http.response.body", "body": joined, "more_body": cut is not None}
                )
            else:
                if watch is None:
                    watch = asyncio.ensure_future(receive())
                for i, event in enumerate(events):
                    if i and await _client_gone(watch, gap):
                        return
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                if cut is None:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            if cut is not None:
                await _drop(receive, watch)
        finally:
            if watch is not None and not watch.done():
                watch.cancel()


def _retry_after(seconds: float) -> list[tuple[bytes, bytes]]:
    """Retry-After in whole seconds (the RFC's form), plus OpenAI's retry-after-ms when
    the value has a fraction."""
    if float(seconds).is_integer():
        return [(b"retry-after", b"%d" % int(seconds))]
    return [
        (b"retry-after", b"%d" % max(1, round(seconds))),
        (b"retry-after-ms", b"%d" % round(seconds * 1000)),
    ]


async def _drop(receive: Receive, watch: asyncio.Future[Message] | None) -> None:
    """Close the connection without finishing the response, like a provider or a proxy
    dying mid-answer. uvicorn does not expose the transport to the app, but `receive` is
    a method of its per-request cycle, which holds it; failing that, raising makes
    uvicorn close the connection (and log the exception)."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        raise _ConnectionCut
    transport.close()
    # Wait until uvicorn has seen the disconnect, so it does not report the unfinished
    # response as an application error.
    await asyncio.wait({watch or asyncio.ensure_future(receive())}, timeout=1)


# --- running as a process ------------------------------------------------------------------


class _AnnouncingServer(uvicorn.Server):
    """Prints the ready line once the server accepts connections, for the parent process
    (a benchmark) that waits for it on stdout."""

    def __init__(self, config: uvicorn.Config, line: str) -> None:
        super().__init__(config)
        self.line = line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(self.line, flush=True)


_OPTIONS_ENV = "FAKE_UPSTREAM_OPTIONS"


def _fake_from_options(options: dict[str, Any]) -> FakeUpstream:
    capture: bool | int = False if options.get("no_capture") else options["capture_max"]
    fake = FakeUpstream(
        host=options["host"],
        port=options["port"],
        latency=options["latency_ms"] / 1000,
        capture=capture,
        api_key=options.get("api_key"),
    )
    if options.get("reply") is not None:
        fake.default = Behavior(text=options["reply"])
    return fake


def worker_app() -> FakeUpstream:
    """The app of each worker process under `--workers N` (uvicorn factory): options come
    from the environment the parent set. Each worker keeps its own scripts and capture."""
    return _fake_from_options(json.loads(os.environ[_OPTIONS_ENV]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.fake_upstream",
        description="A fake OpenAI / Anthropic provider for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-capture", action="store_true", help="record no requests")
    parser.add_argument("--capture-max", type=int, default=10_000, help="keep the last N requests")
    parser.add_argument("--reply", default=None, help="a fixed answer instead of the echo")
    parser.add_argument("--api-key", default=None, help="the only key accepted")
    options = vars(parser.parse_args(argv))
    fake = _fake_from_options(options)
    sock = fake.bind()
    options["port"] = fake.port
    ready = f"listening on http://{fake.host}:{fake.port}"
    if options["workers"] <= 1:
        _AnnouncingServer(fake.config(), ready).run(sockets=[sock])
        return
    from uvicorn.supervisors import Multiprocess

    os.environ[_OPTIONS_ENV] = json.dumps(options)
    app = f"{__spec__.name if __spec__ else __name__}:worker_app"
    config = fake.config(app=app, workers=options["workers"], factory=True)
    sock.listen(4096)  # connections queue until the workers accept them
    print(ready, flush=True)
    Multiprocess(config, sockets=[sock]).run()


if __name__ == "__main__":
    main(sys.argv[1:])
