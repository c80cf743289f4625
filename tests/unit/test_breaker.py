"""The circuit breaker: closed -> open -> half-open -> closed/open, on a fake clock."""

from __future__ import annotations

import json

import pytest

from domain.proxy.breaker import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitState,
    Transition,
)

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(
    failures: int = 3, cooldown_s: float = 10.0, probes: int = 1
) -> tuple[CircuitBreaker, FakeClock, list[Transition]]:
    clock = FakeClock()
    seen: list[Transition] = []
    breaker = CircuitBreaker(
        "d1", BreakerPolicy(failures, cooldown_s, probes), clock, on_transition=seen.append
    )
    return breaker, clock, seen


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.policy.failures):
        breaker.record_failure()


def test_a_new_breaker_is_closed_and_allows_calls() -> None:
    breaker, _, seen = make()
    assert breaker.state is CLOSED
    assert breaker.allow() and breaker.available()
    assert breaker.retry_in() == 0.0
    assert seen == []


def test_it_opens_after_n_consecutive_failures() -> None:
    breaker, clock, seen = make(failures=3)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CLOSED and breaker.consecutive_failures == 2
    breaker.record_failure()
    assert breaker.state is OPEN
    assert not breaker.allow() and not breaker.available()
    assert [(t.before, t.after) for t in seen] == [(CLOSED, OPEN)]
    assert seen[0].reason == "3 consecutive failures"
    assert seen[0].at == clock.now and seen[0].key == "d1"


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker, _, _ = make(failures=3)
    for _ in range(10):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state is CLOSED and breaker.consecutive_failures == 0


def test_open_refuses_until_the_cool_down_has_elapsed() -> None:
    breaker, clock, _ = make(cooldown_s=10.0)
    trip(breaker)
    clock.advance(4.0)
    assert breaker.retry_in() == pytest.approx(6.0)
    assert not breaker.allow()
    clock.advance(5.999)
    assert not breaker.allow() and not breaker.available()
    clock.advance(0.001)
    assert breaker.available()  # asking does not change the state
    assert breaker.retry_in() == 0.0


def test_after_the_cool_down_half_open_lets_a_limited_number_of_probes_through() -> None:
    breaker, clock, seen = make(cooldown_s=10.0, probes=2)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.state is HALF_OPEN
    assert seen[-1].reason == "cool-down of 10s elapsed"
    assert breaker.available()
    assert breaker.allow()
    assert breaker.allow()
    assert not breaker.allow()  # both probes are out
    assert not breaker.available()


def test_available_takes_no_probe() -> None:
    breaker, clock, _ = make(cooldown_s=10.0, probes=1)
    trip(breaker)
    clock.advance(10.0)
    for _ in range(5):
        assert breaker.available()
    assert breaker.allow()
    assert not breaker.available()


def test_a_probe_that_succeeds_closes_the_circuit() -> None:
    breaker, clock, seen = make(cooldown_s=10.0)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CLOSED
    assert breaker.allow() and breaker.allow()  # closed: no probe limit
    assert [(t.before, t.after) for t in seen] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]
    assert seen[-1].reason == "a probe call succeeded"
    # It needs N fresh failures to open again.
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CLOSED


def test_a_probe_that_fails_reopens_it_and_the_cool_down_starts_again() -> None:
    breaker, clock, seen = make(cooldown_s=10.0)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    clock.advance(2.0)
    breaker.record_failure()  # one failure is enough when half-open
    assert breaker.state is OPEN
    assert seen[-1].reason == "a probe call failed"
    assert breaker.retry_in() == pytest.approx(10.0)
    clock.advance(9.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()
    assert breaker.state is HALF_OPEN


def test_a_probe_that_never_answers_is_forgotten_after_another_cool_down() -> None:
    breaker, clock, _ = make(cooldown_s=10.0, probes=1)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()  # the caller is cancelled and never reports
    clock.advance(9.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.available()
    assert breaker.allow()
    assert not breaker.allow()


def test_results_that_arrive_while_open_are_ignored() -> None:
    breaker, clock, seen = make(cooldown_s=10.0)
    trip(breaker)
    clock.advance(5.0)
    breaker.record_success()  # a call let through before the circuit opened
    assert breaker.state is OPEN
    breaker.record_failure()
    assert breaker.retry_in() == pytest.approx(5.0)  # the cool-down is not extended
    assert len(seen) == 1


def test_transitions_are_json_able() -> None:
    breaker, clock, seen = make()
    trip(breaker)
    clock.advance(10.0)
    _ = breaker.state
    data = [t.to_dict() for t in seen]
    assert json.loads(json.dumps(data)) == [
        {"deployment": "d1", "from": "closed", "to": "open", "at": 1000.0,
         "reason": "3 consecutive failures"},
        {"deployment": "d1", "from": "open", "to": "half_open", "at": 1010.0,
         "reason": "cool-down of 10s elapsed"},
    ]  # fmt: skip


def test_snapshot() -> None:
    breaker, clock, _ = make(cooldown_s=10.0)
    breaker.record_failure()
    assert breaker.snapshot() == {"state": "closed", "consecutive_failures": 1, "retry_in_s": 0.0}
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(3.0)
    snap = breaker.snapshot()
    assert snap["state"] == "open" and snap["retry_in_s"] == pytest.approx(7.0)


def test_no_listener_is_needed() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("d", BreakerPolicy(failures=1, cooldown_s=1.0), clock)
    breaker.record_failure()
    assert breaker.state is OPEN


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failures": 0}, "failures must be at least 1"),
        ({"cooldown_s": 0.0}, "cooldown_s must be positive"),
        ({"probes": 0}, "probes must be at least 1"),
    ],
)
def test_policy_is_checked(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerPolicy(**kwargs)  # type: ignore[arg-type]
