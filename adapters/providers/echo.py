"""The local `echo` model: answers without a network or a key, so a fresh install works
out of the box and the proxy's own cost can be measured. It repeats the last user
message (and says how much context it was given), streamed word by word."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

from domain.ids import uuid7
from domain.proxy.chat import ChatRequest, ChatResponse, Delta, FinishReason, Usage

_WORD = re.compile(r"\S+")


def _words(text: str) -> int:
    return len(text.split())


def _cut(text: str, limit: int) -> str | None:
    """The first `limit` words of `text` with their spacing (newlines kept), or None
    when the text has no more words than that."""
    end = 0
    for n, match in enumerate(_WORD.finditer(text)):
        if n == limit:
            return text[:end]
        end = match.end()
    return None


class EchoProvider:
    name = "echo"

    def _answer(self, request: ChatRequest) -> tuple[str, Usage, FinishReason]:
        """The answer, its usage (whitespace words), and "length" when max_tokens cut
        it (an answer that fits exactly is whole: "stop")."""
        last = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        turns = len(request.messages)
        text = f"Echo: {last}" if last else "Echo: (no user message)"
        if turns > 1:
            text += f" [{turns} messages in context]"
        finish: FinishReason = "stop"
        if request.max_tokens is not None:
            cut = _cut(text, request.max_tokens)
            if cut is not None:
                text, finish = cut, "length"
        prompt = (request.system or "") + " " + " ".join(m.content for m in request.messages)
        return text, Usage(input_tokens=_words(prompt), output_tokens=_words(text)), finish

    async def complete(self, request: ChatRequest, model: str, *, timeout_s: float) -> ChatResponse:
        text, usage, finish = self._answer(request)
        return ChatResponse(
            id=f"echo-{uuid7().hex}",
            model=model,
            content=text,
            finish_reason=finish,
            usage=usage,
            created=int(time.time()),
        )

    async def stream(
        self, request: ChatRequest, model: str, *, timeout_s: float
    ) -> AsyncIterator[Delta]:
        answer = await self.complete(request, model, timeout_s=timeout_s)
        words = answer.content.split(" ")
        for i, word in enumerate(words):
            yield Delta(text=word if i == 0 else " " + word)
        yield Delta(finish_reason=answer.finish_reason, usage=answer.usage)
