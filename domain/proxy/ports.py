"""What the proxy's use cases need from the outside: a chat provider per upstream API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from domain.proxy.chat import ChatRequest, ChatResponse, Delta


class ChatProvider(Protocol):
    """One upstream API (OpenAI-compatible, Anthropic, the local echo model). `model` is
    the provider's own model name (the deployment's), not the caller's alias.

    Failures raise ProxyError: the provider's HTTP status translated (`upstream_error`),
    504 "timeout" when `timeout` passed, 502 "upstream" when it could not be reached.
    `stream` raises before its first delta when the call fails before any byte came."""

    name: str

    async def complete(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> ChatResponse: ...

    def stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncIterator[Delta]: ...
