"""Models the gateway knows: context limits and the output tokens to reserve.

A built-in table for now; the proxy's configuration (model aliases and deployments)
will extend it. Dated snapshots (`gpt-4o-2024-08-06`) match their family's entry by the
longest known prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import ValidationError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    context_limit: int
    max_output: int  # reserved for the answer when no budget is given


_TABLE = [
    ModelInfo("echo", 32_768, 1_024),  # the local model that needs no key
    ModelInfo("gpt-4o", 128_000, 16_384),
    ModelInfo("gpt-4o-mini", 128_000, 16_384),
    ModelInfo("gpt-4.1", 1_047_576, 32_768),
    ModelInfo("gpt-4.1-mini", 1_047_576, 32_768),
    ModelInfo("gpt-4.1-nano", 1_047_576, 32_768),
    ModelInfo("gpt-4-turbo", 128_000, 4_096),
    ModelInfo("gpt-4", 8_192, 4_096),
    ModelInfo("gpt-3.5-turbo", 16_385, 4_096),
    ModelInfo("gpt-5", 400_000, 128_000),
    ModelInfo("gpt-5-mini", 400_000, 128_000),
    ModelInfo("o1", 200_000, 100_000),
    ModelInfo("o3", 200_000, 100_000),
    ModelInfo("o3-mini", 200_000, 100_000),
    ModelInfo("o4-mini", 200_000, 100_000),
    ModelInfo("claude-3-haiku", 200_000, 4_096),
    ModelInfo("claude-3-5-haiku", 200_000, 8_192),
    ModelInfo("claude-3-5-sonnet", 200_000, 8_192),
    ModelInfo("claude-3-7-sonnet", 200_000, 64_000),
    ModelInfo("claude-sonnet-4", 200_000, 64_000),
    ModelInfo("claude-opus-4", 200_000, 32_000),
    ModelInfo("llama-3.1-8b-instruct", 131_072, 4_096),
    ModelInfo("llama-3.1-70b-instruct", 131_072, 4_096),
    ModelInfo("mistral-large", 128_000, 4_096),
    ModelInfo("qwen2.5-72b-instruct", 131_072, 8_192),
]
CATALOG = {m.name: m for m in _TABLE}
_BY_LENGTH = sorted(CATALOG, key=len, reverse=True)


def lookup(model: str) -> ModelInfo:
    name = model.strip().lower().rsplit("/", 1)[-1]
    if name in CATALOG:
        return CATALOG[name]
    for known in _BY_LENGTH:
        if name.startswith(known + "-") or name.startswith(known + "@"):
            return ModelInfo(model, CATALOG[known].context_limit, CATALOG[known].max_output)
    raise ValidationError(
        f"unknown model {model!r}; known models: {', '.join(sorted(CATALOG))}", "model"
    )
