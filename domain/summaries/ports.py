"""The summarizer port: what the compaction jobs need to turn old turns (or older
summaries) into a short text that fits a token budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

# Counts tokens the way the context builder will, e.g. `TiktokenCounter().count`; the
# summarizers measure their output with it, so max_tokens means the builder's tokens.
TokenCount = Callable[[str], int]


@dataclass(frozen=True, slots=True)
class SummaryItem:
    """One input to a summary: a turn (level 0) or a lower-level summary (level >= 1).

    `stream_version` is where the item sits in the session (a summary gives its last
    covered version), so callers can record the range a summary covers.
    """

    role: str
    content: str
    stream_version: int
    created_at: datetime | None = None
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class SummaryText:
    text: str
    summarizer: str  # recorded in SummaryRecorded.summarizer


class SummarizerError(Exception):
    """A summarizer could not produce a summary (network, HTTP status, bad answer).

    Falling back (e.g. to the extractive summarizer) is the caller's decision."""


class Summarizer(Protocol):
    async def summarize(
        self, items: Sequence[SummaryItem], *, max_tokens: int, level: int
    ) -> SummaryText:
        """A summary of `items` (in stream order) of at most `max_tokens` tokens.

        Level 0 summarizes turns; level n >= 1 summarizes summaries of level n - 1."""
        ...
