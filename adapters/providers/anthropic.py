"""Anthropic's Messages API: `POST {base_url}/v1/messages`, plain or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from adapters.providers.http import HttpClient, chunks, decode_json, encode_json
from domain.proxy import anthropic_wire
from domain.proxy.chat import ChatRequest, ChatResponse, Delta, ProxyError
from domain.proxy.sse import SSEDecoder

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


class AnthropicProvider:
    def __init__(
        self,
        name: str,
        client: HttpClient,
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
        data = await self._client.post_json(
            self.name,
            self._url,
            body,
            self._headers,
            timeout_s,
            anthropic_wire.parse_upstream_error,
        )
        return anthropic_wire.parse_upstream_response(data)

    async def stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncIterator[Delta]:
        body = self._body(request, model)
        headers = {**self._headers, "accept": "text/event-stream"}
        response = await self._client.open_stream(
            self.name, self._url, body, headers, timeout_s, anthropic_wire.parse_upstream_error
        )
        try:
            decoder = SSEDecoder()
            parser = anthropic_wire.UpstreamEventParser()
            stopped = False
            async for chunk in chunks(self.name, response):
                for event, data in decoder.feed(chunk):
                    obj = decode_json(data.encode())
                    if not isinstance(obj, dict):
                        continue
                    for delta in parser.feed(event, obj):
                        yield delta
                    if event == "message_stop" or obj.get("type") == "message_stop":
                        stopped = True
            if not stopped:
                raise ProxyError(502, "upstream", f"provider {self.name!r} ended the stream early")
        finally:
            response.release()
