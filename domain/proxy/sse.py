"""Server-sent events framing, both ways: encoding what the proxy streams to its callers
(OpenAI's bare `data:` lines, Anthropic's named events) and decoding a provider's
stream into (event, data) pairs, incrementally, whatever the network's chunk borders.
"""

from __future__ import annotations

import json
from typing import Any

# One encoder for the process: json.dumps with non-default arguments builds a new
# encoder on every call. Compact separators, UTF-8 as is (the bytes are encoded once).
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_encode_ascii = json.JSONEncoder(separators=(",", ":")).encode

SSE_DONE = b"data: [DONE]\n\n"


def json_bytes(obj: Any) -> bytes:
    """Compact JSON as UTF-8. Text holding a lone surrogate (half of an emoji a provider
    split between two chunks) cannot be UTF-8: it is sent escaped instead, as valid JSON."""
    try:
        return _encode(obj).encode()
    except UnicodeEncodeError:
        return _encode_ascii(obj).encode()


def sse_data(obj: Any) -> bytes:
    """An unnamed event (`data: {json}` and a blank line): OpenAI's stream chunks."""
    return b"data: " + json_bytes(obj) + b"\n\n"


def sse_event(name: str, obj: Any) -> bytes:
    """A named event (`event: name`, `data: {json}`, a blank line): Anthropic's stream."""
    return b"event: " + name.encode() + b"\ndata: " + json_bytes(obj) + b"\n\n"


class SSEDecoder:
    """Splits a byte stream into events: `feed(chunk)` returns the (event name, data)
    pairs completed by this chunk; the name is "message" when the event has none (the
    SSE default, and what OpenAI streams). Multi-line data is joined with newlines;
    comments (`: keep-alive`) and `id:`/`retry:` fields are skipped. Lines end with LF,
    CRLF or CR, even when a CRLF is split across two chunks."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" not in buf:
            return self._lines(buf)
        # A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
        tail = b"\r" if buf.endswith(b"\r") else b""
        if tail:
            buf = buf[:-1]
        return self._lines(buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), tail)

    def _lines(self, buf: bytes, keep_tail: bytes = b"") -> list[tuple[str, str]]:
        lines = buf.split(b"\n")
        self._buf = lines.pop() + keep_tail
        out: list[tuple[str, str]] = []
        for line in lines:
            if not line:
                if self._data:
                    out.append((self._event or "message", "\n".join(self._data)))
                    self._data = []
                self._event = ""
                continue
            field, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                self._data.append(value.decode())
            elif field == b"event":
                self._event = value.decode()
            # "" (a comment), "id", "retry" and unknown fields: nothing to keep
        return out

    def close(self) -> list[tuple[str, str]]:
        """The event left pending when the stream ends without its blank line."""
        tail = self._buf.rstrip(b"\r")
        out = self._lines(tail + b"\n\n") if tail or self._data else []
        self._buf = b""
        return out
