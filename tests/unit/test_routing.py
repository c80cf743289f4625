"""The router: strategies, skips, fallbacks, health (EWMA, breaker), retry policy."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

import pytest

from domain.proxy.breaker import BreakerPolicy, CircuitState, Transition
from domain.proxy.chat import ChatRequest, Message, ProxyError, Tool
from domain.proxy.pricing import FREE, UNPRICED, Price
from domain.proxy.routing import (
    Alias,
    Deployment,
    Provider,
    RetryPolicy,
    Router,
    RoutingPolicy,
    Strategy,
    Verdict,
    backoff,
    classify,
    is_deployment_fault,
    is_retryable,
    required_capabilities,
    retry_after_s,
)

OPENAI = Provider("openai", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY")
LOCAL = Provider("local", "openai", "http://127.0.0.1:8000/v1", None, local=True)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def dep(
    id: str,
    *,
    alias: str = "a",
    tier: int = 0,
    weight: float = 1.0,
    price: Price = FREE,
    context_limit: int = 100_000,
    max_output: int = 4_000,
    capabilities: frozenset[str] = frozenset({"tools", "json", "stream"}),
    local: bool = False,
) -> Deployment:
    return Deployment(
        id=id,
        alias=alias,
        provider=LOCAL if local else OPENAI,
        model=id,
        weight=weight,
        tier=tier,
        price=price,
        context_limit=context_limit,
        max_output=max_output,
        capabilities=capabilities,
        local=local,
    )


class Resolver:
    """Aliases by name; anything else raises (as the config does with passthrough off)."""

    def __init__(self, *aliases: Alias) -> None:
        self.aliases = {a.name: a for a in aliases}
        self.calls: Counter[str] = Counter()

    def __call__(self, model: str) -> Alias:
        self.calls[model] += 1
        try:
            return self.aliases[model]
        except KeyError:
            raise ProxyError(404, "not_found", f"model {model!r} is not configured") from None


def router_for(
    *aliases: Alias,
    seed: int = 7,
    policy: RoutingPolicy | None = None,
    clock: FakeClock | None = None,
    **kwargs: object,
) -> Router:
    return Router(
        Resolver(*aliases),
        policy or RoutingPolicy(breaker=BreakerPolicy(failures=2, cooldown_s=10.0)),
        rng=random.Random(seed),
        clock=clock or FakeClock(),
        **kwargs,  # type: ignore[arg-type]
    )


def alias(
    name: str, strategy: Strategy, *deps: Deployment, fallbacks: tuple[str, ...] = ()
) -> Alias:
    return Alias(name, tuple(replace(d, alias=name) for d in deps), strategy, fallbacks)


# ---- strategies -------------------------------------------------------------------


def test_priority_orders_by_tier_then_configuration_order() -> None:
    a = alias("a", "priority", dep("x", tier=1), dep("y"), dep("z", tier=2), dep("w"))
    decision = router_for(a).plan("a")
    assert decision.ids == ["y", "w", "x", "z"]
    assert decision.strategy == "priority" and decision.alias == "a"
    assert decision.skips == ()


def test_weighted_draws_the_first_in_proportion_to_the_weights() -> None:
    a = alias("a", "weighted", dep("x", weight=1), dep("y", weight=3), dep("z", weight=6))
    router = router_for(a, seed=12345)
    draws = 20_000
    firsts = Counter(router.plan("a").ids[0] for _ in range(draws))
    for name, share in (("x", 0.1), ("y", 0.3), ("z", 0.6)):
        assert firsts[name] / draws == pytest.approx(share, abs=0.015)


def test_weighted_puts_the_others_after_in_configuration_order() -> None:
    a = alias("a", "weighted", dep("x"), dep("y"), dep("z"), dep("w"))
    router = router_for(a, seed=3)
    for _ in range(200):
        ids = router.plan("a").ids
        rest = [i for i in ["x", "y", "z", "w"] if i != ids[0]]
        assert ids[1:] == rest


def test_weighted_is_reproducible_with_a_seeded_rng() -> None:
    a = alias("a", "weighted", dep("x"), dep("y"), dep("z"))
    first = router_for(a, seed=99)
    second = router_for(a, seed=99)
    plans = [first.plan("a").ids for _ in range(50)]
    assert plans == [second.plan("a").ids for _ in range(50)]
    assert len({tuple(p) for p in plans}) == 3  # yet every one comes first sometimes


def test_weighted_draws_within_the_first_tier_only() -> None:
    a = alias("a", "weighted", dep("backup", tier=1, weight=1000), dep("x"), dep("y"))
    router = router_for(a)
    for _ in range(300):
        ids = router.plan("a").ids
        assert ids[-1] == "backup" and set(ids[:2]) == {"x", "y"}


def test_weighted_skips_do_not_skew_the_draw_to_ineligible_ones() -> None:
    a = alias("a", "weighted", dep("small", weight=9, context_limit=2_000), dep("big", weight=1))
    router = router_for(a)
    for _ in range(100):
        decision = router.plan("a", window_tokens=5_000)
        assert decision.ids == ["big"]


def test_least_latency_tries_unobserved_deployments_first_then_the_fastest() -> None:
    a = alias("a", "least_latency", dep("x"), dep("y"), dep("z"))
    router = router_for(a)
    assert router.plan("a").ids == ["x", "y", "z"]
    router.observe("x", 0.9, ok=True)
    router.observe("z", 0.2, ok=True)
    assert router.plan("a").ids == ["y", "z", "x"]
    router.observe("y", 0.5, ok=True)
    assert router.plan("a").ids == ["z", "y", "x"]


def test_least_latency_with_a_prior_places_unobserved_deployments_by_it() -> None:
    a = alias("a", "least_latency", dep("x"), dep("y"), dep("z"))
    router = router_for(a, policy=RoutingPolicy(latency_prior_s=0.5))
    router.observe("x", 0.9, ok=True)
    router.observe("z", 0.2, ok=True)
    assert router.plan("a").ids == ["z", "y", "x"]


def test_ewma_updates() -> None:
    router = router_for(policy=RoutingPolicy(ewma_alpha=0.5))
    assert router.latency("d") is None
    router.observe("d", 1.0, ok=True)
    assert router.latency("d") == 1.0  # the first observation is taken as it is
    router.observe("d", 2.0, ok=True)
    assert router.latency("d") == pytest.approx(1.5)
    router.observe("d", 0.5, ok=True)
    assert router.latency("d") == pytest.approx(1.0)
    router.observe("d", None, ok=True)  # no latency: the EWMA is unchanged
    assert router.latency("d") == pytest.approx(1.0)


def test_a_fast_failure_does_not_look_like_speed_but_a_slow_one_counts() -> None:
    router = router_for(policy=RoutingPolicy(ewma_alpha=0.5, breaker=BreakerPolicy(failures=99)))
    router.observe("new", 0.001, ok=False)
    assert router.latency("new") is None
    router.observe("d", 1.0, ok=True)
    router.observe("d", 0.01, ok=False)
    assert router.latency("d") == 1.0
    router.observe("d", 3.0, ok=False)  # a timeout after 3 s
    assert router.latency("d") == pytest.approx(2.0)


def test_least_cost_orders_by_the_price_of_the_expected_tokens() -> None:
    cheap_in = dep("cheap_in", price=Price.of("0.10", "20.00"))  # cheap prompts, dear answers
    cheap_out = dep("cheap_out", price=Price.of("5.00", "1.00"))
    unpriced = dep("unpriced", price=UNPRICED)
    a = alias("a", "least_cost", unpriced, cheap_out, cheap_in)
    router = router_for(a)
    # A long window and a short answer: input dominates.
    assert router.plan("a", window_tokens=50_000, max_output=100).ids == [
        "cheap_in",
        "cheap_out",
        "unpriced",  # unknown price: after every priced one
    ]
    # A short prompt and a long answer: output dominates.
    assert router.plan("a", window_tokens=100, max_output=3_000).ids == [
        "cheap_out",
        "cheap_in",
        "unpriced",
    ]


def test_least_cost_uses_the_output_reserve_when_no_max_is_given() -> None:
    a = alias(
        "a",
        "least_cost",
        dep("x", price=Price.of("1.00", "10.00")),
        dep("y", price=Price.of("2.00", "1.00")),
    )
    policy = RoutingPolicy(output_reserve=10)
    assert router_for(a, policy=policy).plan("a", window_tokens=1_000).ids == ["x", "y"]
    policy = RoutingPolicy(output_reserve=1_000)
    assert router_for(a, policy=policy).plan("a", window_tokens=1_000).ids == ["y", "x"]


def test_least_cost_keeps_free_before_dear_and_respects_tiers() -> None:
    a = alias(
        "a",
        "least_cost",
        dep("dear", price=Price.of("10", "10")),
        dep("free", tier=1),
        dep("cheap", price=Price.of("1", "1")),
    )
    assert router_for(a).plan("a", window_tokens=10).ids == ["cheap", "dear", "free"]


# ---- skips ------------------------------------------------------------------------


def test_a_deployment_whose_context_limit_is_too_small_is_skipped() -> None:
    a = alias("a", "priority", dep("small", context_limit=8_000), dep("big", context_limit=200_000))
    router = router_for(a, policy=RoutingPolicy(output_reserve=1_000))
    assert router.plan("a", window_tokens=7_000).ids == ["small", "big"]
    decision = router.plan("a", window_tokens=7_001)
    assert decision.ids == ["big"]
    (skip,) = decision.skips
    assert (skip.deployment_id, skip.reason) == ("small", "context_limit")
    assert skip.detail == "7001 window + 1000 output tokens exceed its context limit of 8000"
    # The request's own max output counts instead of the reserve.
    assert router.plan("a", window_tokens=7_500, max_output=500).ids == ["small", "big"]
    assert router.plan("a", window_tokens=7_500, max_output=501).ids == ["big"]


def test_the_output_reserve_is_bounded_by_the_deployments_maximum_output() -> None:
    a = alias("a", "priority", dep("x", context_limit=10_000, max_output=100))
    router = router_for(a, policy=RoutingPolicy(output_reserve=4_000))
    assert router.plan("a", window_tokens=9_900).ids == ["x"]


def test_a_requested_max_output_above_the_deployments_maximum_is_skipped() -> None:
    a = alias("a", "priority", dep("short", max_output=4_096), dep("long", max_output=64_000))
    decision = router_for(a).plan("a", max_output=8_000)
    assert decision.ids == ["long"]
    assert decision.skips[0].reason == "output_limit"
    assert decision.skips[0].detail == "max output 8000 exceeds its maximum of 4096"


def test_a_deployment_without_a_needed_capability_is_skipped() -> None:
    a = alias(
        "a",
        "priority",
        dep("plain", capabilities=frozenset({"stream"})),
        dep("able", capabilities=frozenset({"stream", "tools", "vision"})),
    )
    router = router_for(a)
    decision = router.plan("a", needs=frozenset({"tools", "vision"}))
    assert decision.ids == ["able"]
    skip = decision.skips[0]
    assert (skip.deployment_id, skip.reason, skip.detail) == (
        "plain",
        "capability",
        "does not support tools, vision",
    )
    assert router.plan("a", needs=frozenset({"stream"})).ids == ["plain", "able"]


def test_local_only_keeps_local_deployments() -> None:
    a = alias("a", "priority", dep("cloud"), dep("onprem", local=True))
    router = router_for(a)
    decision = router.plan("a", local_only=True)
    assert decision.ids == ["onprem"]
    assert decision.skips[0].reason == "not_local"
    assert router.plan("a").ids == ["cloud", "onprem"]


def test_a_deployment_whose_circuit_is_open_is_skipped_until_its_cool_down_ends() -> None:
    clock = FakeClock()
    a = alias("a", "priority", dep("x"), dep("y"))
    router = router_for(a, clock=clock)
    router.observe("x", 1.0, ok=False)
    router.observe("x", 1.0, ok=False)  # failures=2 opens it
    assert router.circuit("x") is CircuitState.OPEN
    clock.now = 4.0
    decision = router.plan("a")
    assert decision.ids == ["y"]
    (skip,) = decision.skips
    assert skip.reason == "circuit_open" and skip.detail == "circuit open"
    assert skip.retry_after == pytest.approx(6.0)
    clock.now = 10.0
    assert router.plan("a").ids == ["x", "y"]  # half-open: one probe may go


def test_planning_takes_no_probe_but_allow_does() -> None:
    clock = FakeClock()
    a = alias("a", "priority", dep("x"), dep("y"))
    router = router_for(a, clock=clock)
    router.observe("x", None, ok=False)
    router.observe("x", None, ok=False)
    clock.now = 10.0
    for _ in range(5):
        assert router.plan("a").ids == ["x", "y"]
    assert router.allow("x")  # the probe
    decision = router.plan("a")
    assert decision.ids == ["y"] and decision.skips[0].detail == "circuit half_open"
    assert not router.allow("x")
    router.observe("x", 0.3, ok=True)
    assert router.circuit("x") is CircuitState.CLOSED
    assert router.plan("a").ids == ["x", "y"]


def test_allow_for_an_unknown_deployment_is_true() -> None:
    assert router_for().allow("never-seen")


def test_the_first_failing_check_is_the_reason_recorded() -> None:
    a = alias("a", "priority", dep("x", context_limit=100, capabilities=frozenset()))
    decision = router_for(a).plan("a", needs=frozenset({"tools"}), window_tokens=1_000)
    assert [s.reason for s in decision.skips] == ["capability"]


# ---- fallbacks --------------------------------------------------------------------


def test_fallback_aliases_deployments_follow_in_their_own_order() -> None:
    main = alias("main", "priority", dep("m1"), dep("m2", tier=1), fallbacks=("backup", "last"))
    backup = alias("backup", "least_cost", dep("b1", price=Price.of(9, 9)), dep("b2"))
    last = alias("last", "priority", dep("l1"))
    decision = router_for(main, backup, last).plan("main")
    assert decision.ids == ["m1", "m2", "b2", "b1", "l1"]
    assert [d.alias for d in decision.deployments] == ["main", "main", "backup", "backup", "last"]
    assert decision.alias == "main" and decision.strategy == "priority"


def test_fallbacks_are_breadth_first_deduplicated_and_cycle_safe() -> None:
    shared = dep("shared")
    a = Alias("a", (dep("a1", alias="a"), shared), "priority", ("b", "c"))
    b = Alias("b", (dep("b1", alias="b"), shared), "priority", ("d", "a"))
    c = Alias("c", (dep("c1", alias="c"),), "priority", ("a",))
    d = Alias("d", (dep("d1", alias="d"),), "priority", ("b",))
    assert router_for(a, b, c, d).plan("a").ids == ["a1", "shared", "b1", "c1", "d1"]


def test_fallback_deployments_are_skipped_for_the_same_reasons() -> None:
    main = alias("main", "priority", dep("m1", context_limit=300_000), fallbacks=("small",))
    small = alias("small", "priority", dep("s1", context_limit=8_000))
    decision = router_for(main, small).plan("main", window_tokens=50_000)
    assert decision.ids == ["m1"]
    assert [(s.deployment_id, s.alias, s.reason) for s in decision.skips] == [
        ("s1", "small", "context_limit")
    ]


def test_aliases_are_resolved_once_per_model_name() -> None:
    main = alias("main", "priority", dep("m1"), fallbacks=("other",))
    other = alias("other", "priority", dep("o1"))
    resolver = Resolver(main, other)
    router = Router(resolver, rng=random.Random(1))
    for _ in range(100):
        router.plan("main")
    assert resolver.calls == Counter({"main": 1, "other": 1})


def test_an_unknown_model_raises_the_resolvers_error() -> None:
    with pytest.raises(ProxyError) as caught:
        router_for().plan("nope")
    assert caught.value.status == 404


# ---- decisions --------------------------------------------------------------------


def test_a_decision_is_recorded_as_json() -> None:
    clock = FakeClock()
    main = alias("main", "weighted", dep("m1"), dep("m2", context_limit=1_000), fallbacks=("b",))
    b = alias("b", "priority", dep("b1"))
    router = router_for(main, b, clock=clock)
    router.observe("b1", None, ok=False)
    router.observe("b1", None, ok=False)
    decision = router.plan("main", needs=frozenset({"tools"}), window_tokens=2_000, max_output=10)
    data = json.loads(json.dumps(decision.to_dict()))
    assert data == {
        "model": "main",
        "alias": "main",
        "strategy": "weighted",
        "passthrough": False,
        "plan": ["m1"],
        "skips": [
            {
                "deployment": "m2",
                "alias": "main",
                "reason": "context_limit",
                "detail": "2000 window + 10 output tokens exceed its context limit of 1000",
            },
            {
                "deployment": "b1",
                "alias": "b",
                "reason": "circuit_open",
                "detail": "circuit open",
                "retry_after_s": 10.0,
            },
        ],
        "window_tokens": 2000,
        "max_output": 10,
        "needs": ["tools"],
        "local_only": False,
    }


def test_unroutable_for_a_window_too_long_everywhere_is_a_400_on_messages() -> None:
    a = alias("a", "priority", dep("x", context_limit=1_000), dep("y", context_limit=2_000))
    decision = router_for(a).plan("a", window_tokens=5_000)
    assert decision.deployments == ()
    error = decision.unroutable()
    assert (error.status, error.kind, error.param) == (400, "invalid_request", "messages")
    assert "no deployment of model 'a' can take this request" in error.message
    assert "x: 5000 window" in error.message and "y: 5000 window" in error.message


def test_unroutable_for_max_tokens_names_max_tokens() -> None:
    a = alias("a", "priority", dep("x", max_output=100))
    error = router_for(a).plan("a", max_output=1_000).unroutable()
    assert (error.status, error.param) == (400, "max_tokens")


def test_unroutable_for_tools_names_tools() -> None:
    a = alias("a", "priority", dep("x", capabilities=frozenset()))
    error = router_for(a).plan("a", needs=frozenset({"tools"})).unroutable()
    assert (error.status, error.param) == (400, "tools")


def test_unroutable_with_open_circuits_is_a_503_with_retry_after() -> None:
    clock = FakeClock()
    a = alias("a", "priority", dep("x"), dep("y", context_limit=10))
    router = router_for(a, clock=clock)
    router.observe("x", None, ok=False)
    router.observe("x", None, ok=False)
    clock.now = 3.0
    error = router.plan("a", window_tokens=100).unroutable()
    assert (error.status, error.kind) == (503, "overloaded")
    assert error.retry_after == pytest.approx(7.0)


def test_required_capabilities_of_a_request() -> None:
    plain = ChatRequest(model="m", messages=(Message("user", "hi"),))
    assert required_capabilities(plain) == frozenset()
    rich = replace(plain, tools=(Tool("f"),), response_format={"type": "json_object"}, stream=True)
    assert required_capabilities(rich) == frozenset({"tools", "json", "stream"})
    assert required_capabilities(replace(plain, response_format={"type": "text"})) == frozenset()


# ---- health bookkeeping -----------------------------------------------------------


def test_transitions_are_reported_through_the_router() -> None:
    seen: list[Transition] = []
    clock = FakeClock()
    router = router_for(clock=clock, on_transition=seen.append)
    router.observe("x", None, ok=False)
    router.observe("x", None, ok=False)
    clock.now = 10.0
    assert router.allow("x")
    router.observe("x", 0.1, ok=True)
    assert [(t.key, str(t.after)) for t in seen] == [
        ("x", "open"),
        ("x", "half_open"),
        ("x", "closed"),
    ]


def test_snapshot_reports_each_tracked_deployment() -> None:
    router = router_for()
    router.observe("x", 0.25, ok=True)
    router.observe("y", None, ok=False)
    assert router.snapshot() == {
        "x": {"state": "closed", "consecutive_failures": 0, "retry_in_s": 0.0,
              "latency_ewma_s": 0.25},
        "y": {"state": "closed", "consecutive_failures": 1, "retry_in_s": 0.0,
              "latency_ewma_s": None},
    }  # fmt: skip


def test_health_is_kept_for_a_bounded_number_of_deployments_open_ones_first() -> None:
    router = router_for(max_tracked=10)
    router.observe("broken", None, ok=False)
    router.observe("broken", None, ok=False)
    for i in range(100):
        router.observe(f"d{i}", 0.1, ok=True)
    snapshot = router.snapshot()
    assert len(snapshot) <= 10
    assert snapshot["broken"]["state"] == "open"  # an open circuit is never forgotten
    assert "d99" in snapshot


# ---- retries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "verdict"),
    [
        (408, Verdict.RETRY),
        (409, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (529, Verdict.RETRY),  # Anthropic: overloaded
        ("timeout", Verdict.RETRY),
        ("connect", Verdict.RETRY),
        (401, Verdict.NEXT),
        (402, Verdict.NEXT),
        (403, Verdict.NEXT),
        (404, Verdict.NEXT),
        (501, Verdict.NEXT),
        (400, Verdict.FAIL),
        (413, Verdict.FAIL),
        (422, Verdict.FAIL),
        (451, Verdict.FAIL),
    ],
)
def test_classify(failure: int | str, verdict: Verdict) -> None:
    assert classify(failure) is verdict  # type: ignore[arg-type]
    assert is_retryable(failure) is (verdict is Verdict.RETRY)  # type: ignore[arg-type]
    assert is_deployment_fault(failure) is (verdict is not Verdict.FAIL)  # type: ignore[arg-type]


@pytest.mark.parametrize("not_a_failure", [200, 302, 399, "oops"])
def test_classify_refuses_what_is_not_a_failure(not_a_failure: int | str) -> None:
    with pytest.raises(ValueError, match="not a failure"):
        classify(not_a_failure)  # type: ignore[arg-type]


def test_backoff_is_full_jitter_within_an_exponential_capped_ceiling() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)
    rng = random.Random(42)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (50, 4.0)]:
        waits = [backoff(attempt, None, rng, policy) for _ in range(2_000)]
        assert all(w is not None and 0.0 <= w <= ceiling for w in waits)
        values = [w for w in waits if w is not None]
        assert max(values) > ceiling * 0.95  # the whole range is used
        assert sum(values) / len(values) == pytest.approx(ceiling / 2, rel=0.08)


def test_backoff_does_not_overflow_for_huge_attempts() -> None:
    wait = backoff(10_000, None, random.Random(1), RetryPolicy(base_s=1.0, cap_s=2.0))
    assert wait is not None and 0 <= wait <= 2.0
    assert backoff(0, None, random.Random(1), RetryPolicy(base_s=1.0, cap_s=2.0)) is not None


def test_a_retry_after_within_the_maximum_is_honoured_exactly() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=4.0, max_retry_after_s=20.0)
    rng = random.Random(1)
    assert backoff(1, 12.5, rng, policy) == 12.5  # above the backoff cap: still honoured
    assert backoff(3, 0.25, rng, policy) == 0.25
    assert backoff(1, 20.0, rng, policy) == 20.0
    assert backoff(1, -3.0, rng, policy) == 0.0


@pytest.mark.parametrize("retry_after", [20.001, 3600.0, float("inf"), float("nan")])
def test_a_retry_after_above_the_maximum_means_move_on(retry_after: float) -> None:
    policy = RetryPolicy(max_retry_after_s=20.0)
    assert backoff(1, retry_after, random.Random(1), policy) is None


def test_the_router_backs_off_with_its_policy_and_rng() -> None:
    router = router_for(policy=RoutingPolicy(retry=RetryPolicy(base_s=1.0, cap_s=1.0)))
    waits = [router.backoff(1, None) for _ in range(100)]
    assert all(w is not None and 0 <= w <= 1.0 for w in waits)
    assert router.backoff(1, 31.0) is None  # the default maximum wait is 30 s


def test_retry_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="retries"):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError, match="cap_s"):
        RetryPolicy(base_s=5.0, cap_s=1.0)
    with pytest.raises(ValueError, match="strategy"):
        RoutingPolicy(strategy="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ewma_alpha"):
        RoutingPolicy(ewma_alpha=0.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),  # in the past
        ({"retry-after": "soon"}, None),
        ({"retry-after": "inf"}, None),
    ],
)
def test_retry_after_from_headers(headers: Mapping[str, str], expected: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert retry_after_s(headers, now) == expected


# ---- keys and speed ---------------------------------------------------------------


def test_a_provider_holds_the_name_of_its_key_not_the_key() -> None:
    env = {"OPENAI_API_KEY": "sk-secret"}
    assert OPENAI.api_key(env) == "sk-secret"
    assert "sk-secret" not in repr(OPENAI) and "sk-secret" not in json.dumps(OPENAI.to_dict())
    assert OPENAI.api_key({}) is None
    assert LOCAL.api_key(env) is None


def test_planning_takes_microseconds() -> None:
    main = alias(
        "main",
        "least_latency",
        dep("m1"),
        dep("m2", tier=1),
        dep("m3", capabilities=frozenset()),
        fallbacks=("b",),
    )
    b = alias("b", "weighted", dep("b1"), dep("b2"))
    router = router_for(main, b)
    for d in ("m1", "m2", "b1"):
        router.observe(d, 0.2, ok=True)
    needs = frozenset({"tools"})
    router.plan("main", needs=needs, window_tokens=1_000)
    runs = 2_000
    start = time.perf_counter()
    for _ in range(runs):
        router.plan("main", needs=needs, window_tokens=1_000)
    per_plan = (time.perf_counter() - start) / runs
    assert per_plan < 200e-6, f"{per_plan * 1e6:.1f} us per plan"  # typically ~5 us
