"""Budget, shares and token accounting."""

from __future__ import annotations

import pytest

from domain.context import (
    MESSAGE_OVERHEAD_TOKENS,
    OTHER_SESSION_TOKENS,
    SECTION_LABEL_TOKENS,
    Budget,
    BudgetShares,
    state_text,
)
from domain.context.render import LABELS, OTHER_SESSION
from domain.errors import ValidationError


def test_default_shares() -> None:
    shares = BudgetShares()
    assert (shares.recent, shares.summary, shares.retrieved) == (0.15, 0.05, 0.8)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"recent": -0.1}, "shares.recent"),
        ({"summary": 1.5}, "shares.summary"),
        ({"retrieved": float("nan")}, "shares.retrieved"),
        ({"recent": 0.6, "summary": 0.2, "retrieved": 0.3}, "shares"),
    ],
)
def test_shares_are_validated(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        BudgetShares(**kwargs)
    assert info.value.field == field


def test_shares_may_add_up_to_less_than_one() -> None:
    BudgetShares(recent=0.2, summary=0.0, retrieved=0.1)
    BudgetShares(recent=1.0, summary=0.0, retrieved=0.0)
    BudgetShares(recent=0.7, summary=0.2, retrieved=0.1)  # 1.0000000000000002 in floats


def test_available_is_the_limit_minus_the_reserved_output() -> None:
    assert Budget(limit_tokens=8192, reserve_output_tokens=1024).available == 7168
    assert Budget(limit_tokens=100).available == 100


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit_tokens": 0}, "limit_tokens"),
        ({"limit_tokens": 100, "reserve_output_tokens": 100}, "reserve_output_tokens"),
        ({"limit_tokens": 100, "reserve_output_tokens": -1}, "reserve_output_tokens"),
        ({"limit_tokens": 100, "model_token_ratio": 0.0}, "model_token_ratio"),
        ({"limit_tokens": 100, "model_token_ratio": float("inf")}, "model_token_ratio"),
    ],
)
def test_budget_is_validated(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Budget(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_message_cost_scales_rounds_up_and_adds_the_overhead() -> None:
    assert Budget(100).message_cost(10) == 10 + MESSAGE_OVERHEAD_TOKENS
    assert Budget(100, model_token_ratio=1.1).message_cost(10) == 11 + MESSAGE_OVERHEAD_TOKENS
    assert Budget(100, model_token_ratio=1.15).message_cost(10) == 12 + MESSAGE_OVERHEAD_TOKENS
    assert Budget(100, model_token_ratio=0.5).message_cost(3) == 2 + MESSAGE_OVERHEAD_TOKENS
    assert Budget(100).message_cost(-5) == MESSAGE_OVERHEAD_TOKENS


def test_state_text_is_stable_json() -> None:
    assert state_text({"b": 1, "a": "é"}) == '{"a": "é", "b": 1}'


def test_labels_cost_no_more_than_they_are_charged() -> None:
    from adapters.tokenizers import TiktokenCounter

    counter = TiktokenCounter()
    for label in LABELS:
        # the label, and the blank lines the preamble puts around it
        assert counter.count(f"\n\n{label}\n\n") <= SECTION_LABEL_TOKENS, label
    assert counter.count(f" {OTHER_SESSION}") <= OTHER_SESSION_TOKENS
    # What the per-message overhead pays for in a transcript line: "assistant (name): "
    # without the name, and the blank line after it.
    assert counter.count("assistant: \n\n") <= MESSAGE_OVERHEAD_TOKENS
