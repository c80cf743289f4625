"""OpenAI and any OpenAI-compatible server (vLLM, Ollama, LM Studio, OpenRouter...):
`POST {base_url}/chat/completions`, plain or streamed (SSE)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from adapters.providers.http import HttpClient, chunks, decode_json, encode_json
from domain.proxy import openai_wire
from domain.proxy.chat import ChatRequest, ChatResponse, Delta, ProxyError
from domain.proxy.sse import SSEDecoder

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider:
    """The key is read once, at construction, from the environment variable the config
    names; it goes into the Authorization header and nowhere else."""

    def __init__(
        self,
        name: str,
        client: HttpClient,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.name = name
        self._client = client
        self._url = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"

    def __repr__(self) -> str:
        return f"OpenAIProvider({self.name!r}, {self._url!r})"

    async def complete(self, request: ChatRequest, model: str, *, timeout_s: float) -> ChatResponse:
        body = encode_json(openai_wire.build_upstream_request(request, model))
        data = await self._client.post_json(
            self.name, self._url, body, self._headers, timeout_s, openai_wire.parse_upstream_error
        )
        return openai_wire.parse_upstream_response(data)

    async def stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncIterator[Delta]:
        body = encode_json(openai_wire.build_upstream_request(request, model))
        headers = {**self._headers, "accept": "text/event-stream"}
        response = await self._client.open_stream(
            self.name, self._url, body, headers, timeout_s, openai_wire.parse_upstream_error
        )
        try:
            decoder = SSEDecoder()
            parser = openai_wire.UpstreamChunkParser()
            done = finished = False
            async for chunk in chunks(self.name, response):
                for _, data in decoder.feed(chunk):
                    if data == "[DONE]":
                        done = True
                        break
                    obj = decode_json(data.encode())
                    if isinstance(obj, dict):
                        for delta in parser.feed(obj):
                            finished = finished or delta.finish_reason is not None
                            yield delta
                if done:
                    break
            # Some compatible servers omit [DONE]; a stream that never said how it ended
            # was cut short.
            if not done and not finished:
                raise ProxyError(502, "upstream", f"provider {self.name!r} ended the stream early")
        finally:
            response.release()
