"""A circuit breaker per deployment, on an injected clock.

    closed --(N consecutive failures)--> open --(cool-down elapsed)--> half_open
    half_open --(a probe succeeds)--> closed
    half_open --(a probe fails)--> open (the cool-down starts again)

Why consecutive failures rather than a failure rate over a window: a gateway's
deployments range from busy to rarely used; a rate needs a minimum volume to mean
anything (and a window to keep), while N failures in a row means the same thing at any
traffic level, costs one counter, and any success in between resets it.

Half-open lets `probes` calls through (`allow()` grants them); their result decides.
A probe whose result never comes (the caller was cancelled) is forgotten after another
cool-down, so the breaker cannot stay stuck half-open.

Results that arrive while the circuit is open (calls granted before it opened) are
ignored: a late success does not close it, a late failure does not extend the cool-down.

State changes are reported to `on_transition` (to be logged, counted and recorded). The
open -> half_open change happens lazily, when the breaker is next asked (`allow`,
`available` or `state`). Not thread-safe, by design: one event loop per process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 5  # consecutive failures that open the circuit
    cooldown_s: float = 30.0  # open this long before probes are let through
    probes: int = 1  # calls let through at once while half-open

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError(f"failures must be at least 1, not {self.failures}")
        if not self.cooldown_s > 0:
            raise ValueError(f"cooldown_s must be positive, not {self.cooldown_s}")
        if self.probes < 1:
            raise ValueError(f"probes must be at least 1, not {self.probes}")


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state of the breaker named `key` (a deployment id) at clock time `at`."""

    key: str
    before: CircuitState
    after: CircuitState
    at: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.key,
            "from": str(self.before),
            "to": str(self.after),
            "at": self.at,
            "reason": self.reason,
        }


TransitionListener = Callable[[Transition], None]


class CircuitBreaker:
    __slots__ = (
        "_clock",
        "_failures",
        "_in_flight",
        "_listener",
        "_opened_at",
        "_probed_at",
        "_state",
        "key",
        "policy",
    )

    def __init__(
        self,
        key: str,
        policy: BreakerPolicy,
        clock: Callable[[], float],
        on_transition: TransitionListener | None = None,
    ) -> None:
        self.key = key
        self.policy = policy
        self._clock = clock
        self._listener = on_transition
        self._state = CLOSED
        self._failures = 0  # consecutive, while closed
        self._opened_at = 0.0
        self._in_flight = 0  # probes granted and not yet answered, while half-open
        self._probed_at = 0.0

    @property
    def state(self) -> CircuitState:
        if self._state is OPEN:
            self._maybe_half_open(self._clock())
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May a call go to this deployment now? Closed: yes. Half-open: yes while a
        probe is free (the call takes it). Open: no, until the cool-down has elapsed."""
        if self._state is CLOSED:
            return True
        now = self._clock()
        if self._state is OPEN and not self._maybe_half_open(now):
            return False
        if self._in_flight < self.policy.probes:
            self._in_flight += 1
            self._probed_at = now
            return True
        if now - self._probed_at >= self.policy.cooldown_s:  # the probes never answered
            self._in_flight = 1
            self._probed_at = now
            return True
        return False

    def available(self) -> bool:
        """Would `allow()` say yes? Takes no probe (for planning)."""
        if self._state is CLOSED:
            return True
        now = self._clock()
        if self._state is OPEN:
            return now - self._opened_at >= self.policy.cooldown_s
        return (
            self._in_flight < self.policy.probes or now - self._probed_at >= self.policy.cooldown_s
        )

    def retry_in(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when it would now)."""
        if self._state is not OPEN:
            return 0.0
        return max(0.0, self.policy.cooldown_s - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        if self._state is CLOSED:
            self._failures = 0
        elif self._state is HALF_OPEN:
            self._failures = 0
            self._in_flight = 0
            self._move(CLOSED, self._clock(), "a probe call succeeded")

    def record_failure(self) -> None:
        if self._state is CLOSED:
            self._failures += 1
            if self._failures >= self.policy.failures:
                now = self._clock()
                self._opened_at = now
                self._move(OPEN, now, f"{self._failures} consecutive failures")
        elif self._state is HALF_OPEN:
            now = self._clock()
            self._opened_at = now
            self._in_flight = 0
            self._move(OPEN, now, "a probe call failed")

    def _maybe_half_open(self, now: float) -> bool:
        if now - self._opened_at < self.policy.cooldown_s:
            return False
        self._in_flight = 0
        self._failures = 0
        self._move(HALF_OPEN, now, f"cool-down of {self.policy.cooldown_s:g}s elapsed")
        return True

    def _move(self, to: CircuitState, now: float, reason: str) -> None:
        before = self._state
        self._state = to
        if self._listener is not None:
            self._listener(Transition(self.key, before, to, now, reason))

    def snapshot(self) -> dict[str, Any]:
        state = self.state
        return {
            "state": str(state),
            "consecutive_failures": self._failures,
            "retry_in_s": self.retry_in() if state is OPEN else 0.0,
        }
