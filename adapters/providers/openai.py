"""OpenAI and any OpenAI-compatible server (vLLM, Ollama, LM Studio, OpenRouter...):
`POST {base_url}/chat/completions`, plain or streamed (SSE)."""

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
from domain.proxy import openai_wire
from domain.proxy.chat import ChatRequest, ChatResponse, Delta, ProxyError
from domain.proxy.sse import SSEDecoder

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def broken_stream(provider: str, exc: httpx.HTTPError) -> ProxyError:
    """A transport failure once the provider's stream had begun: it was reached, so not
    `unreachable`'s wording; the same kinds (timeout, upstream) for the router."""
    if isinstance(exc, httpx.TimeoutException):
        return ProxyError(
            504, "timeout", f"provider {provider!r} stopped sending its stream (timed out)"
        )
    return ProxyError(
        502,
        "upstream",
        f"the connection to provider {provider!r} broke mid-stream ({type(exc).__name__})",
    )


class OpenAIProvider:
    """The key is read once, at construction, from the environment variable the config
    names; it goes into the Authorization header and nowhere else."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
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
        try:
            response = await self._client.post(
                self._url, content=body, headers=self._headers, timeout=timeout_for(timeout_s)
            )
        except httpx.HTTPError as exc:
            raise unreachable(self.name, exc) from None
        data = decode_json(response.content)
        if response.status_code >= 400:
            raise openai_wire.parse_upstream_error(
                response.status_code, data, retry_after(response.headers)
            )
        if not isinstance(data, dict):
            raise ProxyError(
                502, "upstream", f"provider {self.name!r} sent a body that is not JSON"
            )
        return openai_wire.parse_upstream_response(data)

    async def stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncIterator[Delta]:
        body = encode_json(openai_wire.build_upstream_request(request, model))
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
                raise openai_wire.parse_upstream_error(
                    response.status_code, decode_json(content), retry_after(response.headers)
                )
            decoder = SSEDecoder()
            parser = openai_wire.UpstreamChunkParser()
            done = finished = False
            try:
                async for chunk in response.aiter_raw():
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
            except httpx.HTTPError as exc:
                raise broken_stream(self.name, exc) from None
            # Some compatible servers omit [DONE]; a stream that never said how it ended
            # was cut short.
            if not done and not finished:
                raise ProxyError(502, "upstream", f"provider {self.name!r} ended the stream early")
        finally:
            await response.aclose()
