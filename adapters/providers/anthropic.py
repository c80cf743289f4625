"""Anthropic's Messages API: `POST {base_url}/v1/messages`, plain or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from adapters.providers.http import (
    decode_json,
    encode_json,
    retry_after,
    timeout_for,
    unreachable,
)
from adapters.providers.openai import broken_stream
from domain.proxy import anthropic_wire
from domain.proxy.chat import ChatRequest, ChatResponse, Delta, ProxyError
from domain.proxy.sse import SSEDecoder

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


class AnthropicProvider:
    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        default_max_tokens: int = anthropic_wire.DEFAULT_MAX_TOKENS,
    ) -> None:
        self.name = name
        self._client = client
        base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        # ANTHROPIC_BASE_URL has no /v1 (the SDK appends it); tolerate one given anyway.
        self._url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        self._headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": API_VERSION,
        }
        if api_key:
            self._headers["x-api-key"] = api_key
        self.default_max_tokens = default_max_tokens

    def __repr__(self) -> str:
        return f"AnthropicProvider({self.name!r}, {self._url!r})"

    def _body(self, request: ChatRequest, model: str) -> bytes:
        return encode_json(
            anthropic_wire.build_upstream_request(
                request, model, default_max_tokens=self.default_max_tokens
            )
        )

    async def complete(self, request: ChatRequest, model: str, *, timeout_s: float) -> ChatResponse:
        body = self._body(request, model)
        try:
            response = await self._client.post(
                self._url, content=body, headers=self._headers, timeout=timeout_for(timeout_s)
            )
        except httpx.HTTPError as exc:
            raise unreachable(self.name, exc) from None
        data = decode_json(response.content)
        if response.status_code >= 400:
            raise anthropic_wire.parse_upstream_error(
                response.status_code, data, retry_after(response.headers)
            )
        if not isinstance(data, dict):
            raise ProxyError(
                502, "upstream", f"provider {self.name!r} sent a body that is not JSON"
            )
        return anthropic_wire.parse_upstream_response(data)

    async def stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncIterator[Delta]:
        body = self._body(request, model)
        headers = {**self._headers, "accept": "text/event-stream"}
        req = self._client.build_request(
            "POST", self._url, content=body, headers=headers, timeout=timeout_for(timeout_s)
        )
        try:
            response = await self._client.send(req, stream=True)
        except httpx.HTTPError as exc:
            raise unreachable(self.name, exc) from None
        try:
            if response.status_code >= 400:
                content = await response.aread()
                raise anthropic_wire.parse_upstream_error(
                    response.status_code, decode_json(content), retry_after(response.headers)
                )
            decoder = SSEDecoder()
            parser = anthropic_wire.UpstreamEventParser()
            stopped = False
            try:
                async for chunk in response.aiter_raw():
                    for event, data in decoder.feed(chunk):
                        obj = decode_json(data.encode())
                        if not isinstance(obj, dict):
                            continue
                        for delta in parser.feed(event, obj):
                            yield delta
                        if event == "message_stop" or obj.get("type") == "message_stop":
                            stopped = True
            except httpx.HTTPError as exc:
                raise broken_stream(self.name, exc) from None
            if not stopped:
                raise ProxyError(502, "upstream", f"provider {self.name!r} ended the stream early")
        finally:
            await response.aclose()
