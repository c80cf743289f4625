"""Prices and the catalog: exact cost arithmetic and model-name lookups."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.proxy.chat import Usage
from domain.proxy.pricing import (
    CAPABILITIES,
    FREE,
    UNPRICED,
    ModelCard,
    Price,
    PriceTable,
    cost,
    estimate,
    normalize_model_name,
)

GPT_4O = Price.of("2.50", "10.00", "1.25")


def test_cached_tokens_are_billed_at_the_cached_price_and_the_rest_at_the_input_price() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000, cached_tokens=200_000)
    # 800k * 2.50 + 200k * 1.25 + 500k * 10.00, per million
    assert cost(usage, GPT_4O) == Decimal("2.0") + Decimal("0.25") + Decimal("5.0")
    assert cost(usage, GPT_4O) == Decimal("7.25")


def test_cost_is_exact_for_tiny_calls() -> None:
    price = Price.of("0.15", "0.60", "0.075")
    assert cost(Usage(input_tokens=1, output_tokens=1), price) == Decimal("0.00000075")
    assert cost(Usage(input_tokens=1, cached_tokens=1), price) == Decimal("0.000000075")


def test_sums_of_many_costs_do_not_drift() -> None:
    price = Price.of("0.1", "0.3")
    total = sum((cost(Usage(input_tokens=1, output_tokens=1), price) for _ in range(10_000)),
                Decimal(0))  # fmt: skip
    assert total == Decimal("0.004")


def test_cost_of_no_usage_is_zero() -> None:
    assert cost(Usage(), GPT_4O) == 0


def test_cached_tokens_beyond_the_input_and_negative_counts_are_clamped() -> None:
    assert cost(Usage(input_tokens=100, cached_tokens=500), GPT_4O) == cost(
        Usage(input_tokens=100, cached_tokens=100), GPT_4O
    )
    assert cost(Usage(input_tokens=-5, output_tokens=-1, cached_tokens=-3), GPT_4O) == 0


def test_large_counts_stay_exact() -> None:
    price = Price.of("0.000001", "123456.789", "0.0000001")
    usage = Usage(input_tokens=10**12, output_tokens=10**9 + 1, cached_tokens=1)
    expected = (
        (Decimal(10**12) - 1) * Decimal("0.000001")
        + Decimal("0.0000001")
        + Decimal(10**9 + 1) * Decimal("123456.789")
    ) / Decimal(10**6)
    assert cost(usage, price) == expected
    assert str(cost(usage, price)) == "123456790.1234567889991"


def test_unpriced_and_free_cost_nothing_but_say_so_differently() -> None:
    usage = Usage(input_tokens=1000, output_tokens=1000)
    assert cost(usage, UNPRICED) == 0 and cost(usage, FREE) == 0
    assert not UNPRICED.priced and FREE.priced


def test_price_of_defaults_the_cached_price_to_the_input_price_and_refuses_floats() -> None:
    price = Price.of(3, "15")
    assert price == Price(Decimal(3), Decimal(15), Decimal(3))
    with pytest.raises(TypeError, match="not float"):
        Price.of(0.1, 1)  # type: ignore[arg-type]


def test_price_to_dict_is_exact_text() -> None:
    assert GPT_4O.to_dict() == {
        "input_per_mtok": "2.50",
        "output_per_mtok": "10.00",
        "cached_per_mtok": "1.25",
        "priced": True,
    }


def test_estimate_is_a_float_for_ordering() -> None:
    assert estimate(GPT_4O, 1_000_000, 100_000) == pytest.approx(3.5)


def card(name: str, limit: int = 1000, out: int = 100, price: Price = FREE) -> ModelCard:
    return ModelCard(name=name, context_limit=limit, max_output=out, price=price)


TABLE = PriceTable(
    [
        card("gpt-4o", 128_000),
        card("gpt-4o-mini", 64_000),
        card("gpt-5", 400_000),
        card("o1", 200_000),
        card("o1-mini", 128_000),
        card("claude-sonnet-4", 200_000),
        card("claude-sonnet-4-5", 250_000),
    ],
    unknown_context_limit=4096,
    unknown_max_output=512,
    compiled="2026-01-01",
)


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("  gpt-4o ", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("o1-preview", "o1"),
        ("o1-mini-2024-09-12", "o1-mini"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4@20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ],
)
def test_lookup_by_name_and_by_longest_prefix(name: str, found: str) -> None:
    hit = TABLE.lookup(name)
    assert hit.known and hit.name == found


@pytest.mark.parametrize("name", ["gpt-4o2", "gpt-5.4", "o10", "llama3", "claude", ""])
def test_unknown_names_get_the_conservative_default_and_no_price(name: str) -> None:
    hit = TABLE.lookup(name)
    assert not hit.known
    assert (hit.context_limit, hit.max_output) == (4096, 512)
    assert hit.price == UNPRICED and not hit.price.priced
    assert hit.capabilities == CAPABILITIES
    assert name not in TABLE


def test_lookups_are_memoized_and_bounded() -> None:
    table = PriceTable([card("m")])
    assert table.lookup("m-1") is table.lookup("m-1")
    for i in range(PriceTable.MEMO_SIZE + 10):
        table.lookup(f"x{i}")
    assert table.lookup("m-2").known


def test_table_metadata() -> None:
    assert len(TABLE) == 7
    assert "gpt-4o-2024-05-13" in TABLE
    assert TABLE.names()[0] == "claude-sonnet-4"
    assert TABLE.compiled == "2026-01-01"
    assert TABLE.cards()[0].to_dict()["name"] == "claude-sonnet-4"
    with pytest.raises(ValueError, match="unknown_max_output"):
        PriceTable([], unknown_context_limit=100, unknown_max_output=100)


def test_normalize_model_name() -> None:
    assert normalize_model_name(" Anthropic/Claude-Sonnet-4 ") == "claude-sonnet-4"
    assert normalize_model_name("meta-llama/llama-3.1-8b-instruct") == "llama-3.1-8b-instruct"
