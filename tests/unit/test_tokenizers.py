"""Offline token counts and the per-family estimate."""

from __future__ import annotations

import pytest

from adapters import tokenizers
from adapters.tokenizers import CharEstimateCounter, TiktokenCounter, model_family


def test_tiktoken_counts_offline_and_treats_special_tokens_as_text() -> None:
    counter = TiktokenCounter()
    assert counter.count("hello world") == 2
    assert counter.count("") == 0
    # A special-token string typed by a user is text, not a reason to fail.
    assert counter.count("<|endoftext|>") > 1
    long = "The quick brown fox jumps over the lazy dog. " * 100
    assert 900 < counter.count(long) < 1100


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o-mini", "openai"),
        ("o3-mini", "openai"),
        ("openai/gpt-4.1", "openai"),
        ("claude-3-5-sonnet-latest", "anthropic"),
        ("anthropic/claude-opus-4", "anthropic"),
        ("llama-3.1-8b-instruct", "other"),
        (None, "openai"),
    ],
)
def test_model_families(model: str | None, family: str) -> None:
    assert model_family(model) == family


def test_ratios_never_shrink_counts() -> None:
    for counter in (TiktokenCounter(), CharEstimateCounter()):
        assert counter.ratio("gpt-4o") == 1.0
        assert counter.ratio("claude-3-haiku") > 1.0
        assert counter.ratio("mistral-large") > 1.0


def test_counts_are_remembered_by_text_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = TiktokenCounter()
    encodes: list[str] = []
    real = counter._encoding.encode

    def encode(text: str, **kwargs: object) -> list[int]:
        encodes.append(text)
        return real(text, **kwargs)

    monkeypatch.setattr(counter._encoding, "encode", encode)
    monkeypatch.setattr(tokenizers, "REMEMBER_TEXTS", 2)
    first = counter.count("the same history, sent again with every call")
    assert counter.count("the same history, sent again with every call") == first
    assert len(encodes) == 1  # the second count came from memory
    counter.count("a second text")
    counter.count("a third text")  # over the bound: the oldest is let go
    assert counter.count("the same history, sent again with every call") == first
    assert len(encodes) == 4
    long = "word " * (tokenizers.REMEMBER_CHARS // 5 + 1)  # too long to remember
    assert counter.count(long) == counter.count(long) == len(real(long))
    assert encodes[-2:] == [long, long]
    assert len(counter._known) <= 2
