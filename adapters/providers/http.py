"""The one pooled HTTP client every provider shares, and what they share about HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import msgspec

from domain.proxy.chat import ProxyError
from domain.proxy.routing import retry_after_s

_decode = msgspec.json.decode
_encode = msgspec.json.encode


def make_client(max_connections: int = 512) -> httpx.AsyncClient:
    """Keep-alive HTTP/1.1 with a generous pool: a connection per concurrent call, kept
    for reuse. Timeouts are set per call (each deployment has its own)."""
    return httpx.AsyncClient(
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=60.0,
        ),
        timeout=httpx.Timeout(60.0, connect=10.0),
        follow_redirects=False,
        trust_env=False,  # proxies come from our config, not from ambient variables
    )


def timeout_for(seconds: float) -> httpx.Timeout:
    """`seconds` for the whole wait for an answer (or between stream chunks); connecting
    gets at most 10 s of it."""
    return httpx.Timeout(seconds, connect=min(10.0, seconds))


def retry_after(headers: Mapping[str, str]) -> float | None:
    return retry_after_s(headers, time.time())


def decode_json(data: bytes) -> Any:
    try:
        return _decode(data)
    except msgspec.DecodeError:
        return data.decode(errors="replace")


def encode_json(obj: Any) -> bytes:
    return _encode(obj)


def unreachable(provider: str, exc: Exception) -> ProxyError:
    """A transport failure: a timeout (504) or no connection at all (502). The message
    names the provider, never its key."""
    if isinstance(exc, httpx.TimeoutException):
        return ProxyError(504, "timeout", f"provider {provider!r} did not answer in time")
    return ProxyError(
        502, "upstream", f"provider {provider!r} could not be reached ({type(exc).__name__})"
    )


async def sse_bytes(response: httpx.Response) -> AsyncIterator[bytes]:
    async for chunk in response.aiter_raw():
        yield chunk
