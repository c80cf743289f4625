"""Prices and the model catalog: what a call costs, and what a model can take.

Prices are USD per million tokens, held as Decimals so that cost arithmetic is exact
(sums of many calls never drift). A provider's prompt-cache reads are billed at the
cached price, the rest of the input at the input price, the output at the output price.
Anthropic's cache *writes* (1.25x input) are not modelled: they are billed as input.

The catalog (`PriceTable`) maps a model name to its context limit, maximum output,
capabilities and price. Names are matched case-insensitively, after dropping any
`provider/` prefix, exactly or by the longest known prefix followed by `-` or `@`, so
dated snapshots (`gpt-4o-2024-08-06`, `claude-sonnet-4@20250514`) take their family's
entry. A name it does not know gets a conservative default and `known=False`, with a
zero price flagged `priced=False`: the cost of such a call is recorded as unknown, not
as free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from domain.proxy.chat import Usage

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)

# The capabilities a deployment may declare and a request may need.
CAPABILITIES: frozenset[str] = frozenset(("tools", "json", "vision", "stream"))


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. `priced=False`: the price is not known (reported as
    such next to a cost of zero)."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_per_mtok: Decimal
    priced: bool = True

    @classmethod
    def of(
        cls,
        input_per_mtok: Decimal | int | str,
        output_per_mtok: Decimal | int | str,
        cached_per_mtok: Decimal | int | str | None = None,
    ) -> Price:
        """A known price; the cached price defaults to the input price (no discount).
        Floats are refused: they are not exact."""
        values = [input_per_mtok, output_per_mtok, cached_per_mtok]
        if any(isinstance(v, float) for v in values):
            raise TypeError("prices are Decimal, int or str, not float")
        inp = Decimal(input_per_mtok)
        cached = inp if cached_per_mtok is None else Decimal(cached_per_mtok)
        return cls(inp, Decimal(output_per_mtok), cached)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the amounts as strings (exact)."""
        return {
            "input_per_mtok": str(self.input_per_mtok),
            "output_per_mtok": str(self.output_per_mtok),
            "cached_per_mtok": str(self.cached_per_mtok),
            "priced": self.priced,
        }


FREE = Price(ZERO, ZERO, ZERO, priced=True)  # local models, the echo model
UNPRICED = Price(ZERO, ZERO, ZERO, priced=False)  # a model the price table does not know


def cost(usage: Usage, price: Price) -> Decimal:
    """The exact cost in USD of one call. Cached tokens are part of `input_tokens`
    (OpenAI's convention; the Anthropic adapter adds its cache reads to input): they are
    billed at the cached price, the rest of the input at the input price. Negative
    counts are treated as zero and cached tokens as at most the input tokens."""
    inp = max(usage.input_tokens, 0)
    cached = min(max(usage.cached_tokens, 0), inp)
    out = max(usage.output_tokens, 0)
    with localcontext() as ctx:
        ctx.prec = 50  # token counts times prices, exactly: far below 50 digits
        total = (
            (inp - cached) * price.input_per_mtok
            + cached * price.cached_per_mtok
            + out * price.output_per_mtok
        )
        return total / MILLION


def estimate(price: Price, input_tokens: int, output_tokens: int) -> float:
    """A quick float estimate (for ordering deployments by cost, not for billing)."""
    return (
        input_tokens * float(price.input_per_mtok) + output_tokens * float(price.output_per_mtok)
    ) / 1e6


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What the catalog knows of a model. `provider` is a hint ("openai", "anthropic")
    used for documentation only; routing never depends on it."""

    name: str
    context_limit: int
    max_output: int
    price: Price = UNPRICED
    capabilities: frozenset[str] = CAPABILITIES
    known: bool = True
    provider: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "context_limit": self.context_limit,
            "max_output": self.max_output,
            "price": self.price.to_dict(),
            "capabilities": sorted(self.capabilities),
            "known": self.known,
            "provider": self.provider,
        }


def normalize_model_name(model: str) -> str:
    """The catalog's key for a model name: lower case, without a `provider/` prefix."""
    return model.strip().lower().rsplit("/", 1)[-1]


class PriceTable:
    """Model name -> ModelCard, with the longest-prefix rule for dated snapshots and a
    conservative card for unknown names. Lookups are memoized (bounded)."""

    __slots__ = (
        "_by_length",
        "_cards",
        "_memo",
        "compiled",
        "unknown_context_limit",
        "unknown_max_output",
    )

    MEMO_SIZE = 4096

    def __init__(
        self,
        cards: Iterable[ModelCard],
        *,
        unknown_context_limit: int = 8_192,
        unknown_max_output: int = 2_048,
        compiled: str | None = None,
    ) -> None:
        if not 0 < unknown_max_output < unknown_context_limit:
            raise ValueError("unknown_max_output must be positive and below the context limit")
        self._cards: dict[str, ModelCard] = {}
        for card in cards:
            self._cards[normalize_model_name(card.name)] = card
        self._by_length = sorted(self._cards, key=len, reverse=True)
        self._memo: dict[str, ModelCard] = {}
        self.unknown_context_limit = unknown_context_limit
        self.unknown_max_output = unknown_max_output
        self.compiled = compiled

    def __len__(self) -> int:
        return len(self._cards)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.lookup(model).known

    def names(self) -> list[str]:
        return sorted(self._cards)

    def cards(self) -> list[ModelCard]:
        return [self._cards[n] for n in sorted(self._cards)]

    def lookup(self, model: str) -> ModelCard:
        card = self._memo.get(model)
        if card is not None:
            return card
        card = self._find(model)
        if len(self._memo) >= self.MEMO_SIZE:
            self._memo.clear()
        self._memo[model] = card
        return card

    def _find(self, model: str) -> ModelCard:
        name = normalize_model_name(model)
        card = self._cards.get(name)
        if card is not None:
            return card
        for known in self._by_length:
            if name.startswith(known) and name[len(known) : len(known) + 1] in ("-", "@"):
                return self._cards[known]
        return ModelCard(
            name=model,
            context_limit=self.unknown_context_limit,
            max_output=self.unknown_max_output,
            price=UNPRICED,
            capabilities=CAPABILITIES,
            known=False,
        )
