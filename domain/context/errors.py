"""Errors of the context engine; both are ValidationErrors, so the API answers 422."""

from __future__ import annotations

from domain.errors import ValidationError


class ContextBudgetTooSmall(ValidationError):
    """What must always be in the window (system prompt, state, current turn) does not
    fit the model's context limit minus the tokens reserved for the answer."""

    def __init__(self, needed_tokens: int, available_tokens: int, detail: str = "") -> None:
        super().__init__(
            f"the context needs at least {needed_tokens} tokens{detail} but only "
            f"{available_tokens} are available (the model's context limit minus the tokens "
            "reserved for the answer): shorten the message, reserve fewer output tokens or "
            "choose a model with a larger context",
            "budget",
        )
        self.needed_tokens = needed_tokens
        self.available_tokens = available_tokens


class UnknownStrategy(ValidationError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown context strategy {name!r}; use one of {', '.join(known)}", "strategy"
        )
        self.name = name
