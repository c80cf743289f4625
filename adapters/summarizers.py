"""Summarizers behind the `domain.summaries.Summarizer` port.

`ExtractiveSummarizer` is the default: offline and deterministic. `LLMSummarizer` asks an
OpenAI-compatible chat completions endpoint (usually the gateway's own router, model
alias `summarizer`). It raises `SummarizerError` on any failure; falling back to the
extractive summarizer is the caller's decision, not its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import httpx

from domain.summaries import (
    EXTRACTIVE_SUMMARIZER,
    SummarizerError,
    SummaryItem,
    SummaryText,
    TokenCount,
    Weights,
    summarize_extractive,
    truncate_to_tokens,
)

# Above this many items the pure function runs in a worker thread, so one big compaction
# does not stall the event loop that serves requests.
OFFLOAD_ITEMS = 2000


class ExtractiveSummarizer:
    def __init__(
        self,
        count_tokens: TokenCount,
        *,
        weights: Weights | None = None,
        offload_items: int = OFFLOAD_ITEMS,
    ) -> None:
        self._count = count_tokens
        self._weights = weights or Weights()
        self._offload_items = offload_items

    async def summarize(
        self, items: Sequence[SummaryItem], *, max_tokens: int, level: int
    ) -> SummaryText:
        def run() -> str:
            return summarize_extractive(
                items,
                max_tokens=max_tokens,
                level=level,
                count_tokens=self._count,
                weights=self._weights,
            )

        text = await asyncio.to_thread(run) if len(items) > self._offload_items else run()
        return SummaryText(text=text, summarizer=EXTRACTIVE_SUMMARIZER)


SYSTEM_PROMPT = (
    "You summarize conversations for a long-term memory. Write a factual summary of what "
    "you are given, in the third person and in the order things happened. Keep every "
    "name, date, time, number, amount of money, place, preference, plan and decision, "
    "and who said or did what; when a line starts with a [date], keep that date with its "
    "facts. Leave out greetings, small talk and anything not stated. Do not add advice or "
    "commentary. Plain text, no headings. Stay under {max_tokens} tokens."
)
MERGE_PROMPT = (
    "The text below is a series of earlier summaries of one conversation, oldest first. "
    "Merge them into one summary; when a later one corrects an earlier one, keep the later."
)
ERROR_EXCERPT_CHARS = 300


class LLMSummarizer:
    """Summaries written by a model through `POST {base_url}/chat/completions`.

    The client is either given (and then left open) or created here (close it with
    `aclose()` or `async with`). The API key is sent as a bearer token and kept out of
    reprs, errors and logs.
    """

    def __init__(
        self,
        *,
        base_url: str,
        count_tokens: TokenCount,
        model: str = "summarizer",
        api_key: str | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float = 60.0,
        temperature: float = 0.0,
    ) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._count = count_tokens
        self.model = model
        self._api_key = api_key
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()
        self._timeout = timeout
        self._temperature = temperature
        self.name = f"llm:{model}"

    def __repr__(self) -> str:
        return f"LLMSummarizer(url={self._url!r}, model={self.model!r})"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> LLMSummarizer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def summarize(
        self, items: Sequence[SummaryItem], *, max_tokens: int, level: int
    ) -> SummaryText:
        if max_tokens <= 0 or not any(item.content.strip() for item in items):
            return SummaryText(text="", summarizer=self.name)
        body = self.request_body(items, max_tokens=max_tokens, level=level)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        where = f"summarizer model {self.model!r} at {self._url}"
        try:
            response = await self._client.post(
                self._url, json=body, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException as error:
            raise SummarizerError(f"{where}: no answer within {self._timeout:g}s") from error
        except httpx.HTTPError as error:
            raise SummarizerError(f"{where}: {type(error).__name__}: {error}") from error
        if response.status_code >= 400:
            raise SummarizerError(
                f"{where}: HTTP {response.status_code}: {self._excerpt(response.text)}"
            )
        text, finish_reason = self._parse(response, where)
        if finish_reason == "length":
            text = _last_whole_sentences(text)
        # The model counts with its own tokenizer; the context builder counts with ours.
        text = truncate_to_tokens(text, max_tokens, self._count)
        return SummaryText(text=text, summarizer=self.name)

    def request_body(
        self, items: Sequence[SummaryItem], *, max_tokens: int, level: int
    ) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT.format(max_tokens=max_tokens)},
                {"role": "user", "content": render_transcript(items, level=level)},
            ],
            "max_tokens": max_tokens,
            "temperature": self._temperature,
            "stream": False,
        }

    def _parse(self, response: httpx.Response, where: str) -> tuple[str, str | None]:
        try:
            choice = response.json()["choices"][0]
            content = choice["message"]["content"]
            finish_reason = choice.get("finish_reason")
        except (ValueError, LookupError, TypeError) as error:
            raise SummarizerError(
                f"{where}: not a chat completion: {self._excerpt(response.text)}"
            ) from error
        if not isinstance(content, str) or not content.strip():
            raise SummarizerError(
                f"{where}: the answer has no text (finish_reason={finish_reason!r})"
            )
        return content.strip(), finish_reason if isinstance(finish_reason, str) else None

    def _excerpt(self, text: str) -> str:
        text = " ".join(text.split())[:ERROR_EXCERPT_CHARS]
        # Some servers echo the credentials they refused.
        return text.replace(self._api_key, "[redacted]") if self._api_key else text


def render_transcript(items: Sequence[SummaryItem], *, level: int) -> str:
    """The items as the model reads them: "[date] speaker: text" per turn (level 0), or
    the earlier summaries under a merge instruction (level >= 1)."""
    if level >= 1:
        parts = [
            f"Summary {n} (up to version {item.stream_version}):\n{item.content.strip()}"
            for n, item in enumerate(items, start=1)
            if item.content.strip()
        ]
        return MERGE_PROMPT + "\n\n" + "\n\n".join(parts)
    lines = []
    for item in items:
        content = item.content.strip()
        if not content:
            continue
        speaker = item.speaker or item.role
        date = f"[{item.created_at.date().isoformat()}] " if item.created_at else ""
        lines.append(f"{date}{speaker}: {content}")
    return "\n".join(lines)


def _last_whole_sentences(text: str) -> str:
    """A reply cut by the output limit ends mid-sentence; keep what ends cleanly."""
    end = max(text.rfind(mark) for mark in (". ", "! ", "? ", ".\n", "!\n", "?\n"))
    return text[: end + 1] if end > len(text) // 2 else text
