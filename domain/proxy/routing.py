"""Routing: which deployments a call goes to, in which order, and when to try again.

An *alias* (the `model` a caller names) lists *deployments*: one model at one provider,
with its weight, tier, price, context limit, maximum output, capabilities and whether it
keeps data local. `Router.plan()` turns an alias and the facts of one request (the
capabilities it needs, the tokens of its window, its max output, whether its data must
stay local) into a `RouteDecision`: the ordered deployments to try and every deployment
it skipped, with the reason. The service then walks the plan:

    decision = router.plan(model, needs=required_capabilities(request), window_tokens=n,
                           max_output=request.max_tokens, local_only=...)
    if not decision.deployments:
        raise decision.unroutable()
    for d in decision.deployments:
        for attempt in range(d.max_retries + 1):
            if not router.allow(d.id):      # its circuit opened meanwhile: next one
                break
            try:
                answer = await call(d)      # with timeout d.timeout_s
            except UpstreamFailure as f:
                verdict = classify(f.status or "timeout" or "connect")
                if verdict is Verdict.FAIL:  # the request is at fault
                    router.observe(d.id, None, ok=True)
                    raise
                router.observe(d.id, elapsed, ok=False, timed_out=f is a timeout)
                wait = router.backoff(attempt + 1, f.retry_after)
                if verdict is Verdict.NEXT or wait is None or attempt == d.max_retries:
                    break                   # next deployment
                await sleep(wait)
                continue
            router.observe(d.id, elapsed, ok=True)
            return answer
    (a streamed answer is retried only until its first byte has reached the caller)

Tiers order every strategy: deployments of tier 0 come before tier 1, and so on; the
alias's strategy orders the deployments within a tier:
- `priority`: configuration order;
- `weighted`: one drawn at random in proportion to its weight (an injected
  `random.Random`), then the others in configuration order (predictable fallbacks);
- `least_latency`: by the EWMA of observed latency (answers, and timeouts: a deployment
  that timed out is at least that slow); deployments never observed come first (so
  each is measured), or are given `latency_prior_s` when it is set;
- `least_cost`: by the price of the expected tokens (the window plus the max output, or
  the output reserve); deployments without a known price come after priced ones.

Skipped (and recorded with a reason): `not_local` (the data must stay local and the
deployment is not), `capability` (it lacks one that is needed), `output_limit` (the
requested max output exceeds its maximum), `context_limit` (window + output exceed its
context limit), `circuit_open` (its breaker refuses calls). Then the deployments of the
alias's `fallbacks` aliases follow (each ordered by its own strategy; breadth first;
each deployment at most once).

Failures (`classify`): 408, 409, 429, 5xx (but 501), timeouts and connection errors are
worth retrying on the same deployment (`RETRY`); 401, 402, 403, 404 and 501 say that
*this deployment* cannot serve the call (a wrong key, no access to the model, a wrong
model name, a feature it lacks): another deployment may, so the router moves on
(`NEXT`) without retrying; any other 4xx (400, 413, 422, ...) says the *request* is
wrong and would fail everywhere, so the call fails at once (`FAIL`). RETRY and NEXT
failures count against the deployment's health (its breaker); FAIL ones do not (the
deployment answered properly: report them as `ok=True` with no latency).

Planning is pure and cheap: the alias, its fallbacks and its tiers are resolved once
per model name and memoized; a plan then costs a few attribute checks per deployment.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Literal

from domain.proxy.breaker import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitState,
    TransitionListener,
)
from domain.proxy.chat import ChatRequest, ProxyError
from domain.proxy.pricing import CAPABILITIES, Price

ProviderKind = Literal["openai", "anthropic", "echo"]
PROVIDER_KINDS: tuple[str, ...] = ("openai", "anthropic", "echo")
Strategy = Literal["priority", "weighted", "least_latency", "least_cost"]
STRATEGIES: tuple[str, ...] = ("priority", "weighted", "least_latency", "least_cost")

SkipReason = Literal["not_local", "capability", "output_limit", "context_limit", "circuit_open"]


@dataclass(frozen=True, slots=True)
class Provider:
    """An upstream API. The key is never held here: `api_key_env` names the environment
    variable that holds it, read when a call is made (`api_key(os.environ)`), so a
    Provider can be logged, recorded or returned as it is."""

    name: str
    kind: ProviderKind
    base_url: str | None = None
    api_key_env: str | None = None
    local: bool = False  # the default of its deployments' `local`

    def api_key(self, env: Mapping[str, str]) -> str | None:
        if self.api_key_env is None:
            return None
        return env.get(self.api_key_env) or None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "local": self.local,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    """One model at one provider, as one alias uses it. `id` keys its health (latency
    EWMA and circuit breaker) and is what decisions record."""

    id: str
    alias: str
    provider: Provider
    model: str
    weight: float = 1.0
    tier: int = 0
    price: Price
    context_limit: int
    max_output: int
    capabilities: frozenset[str] = CAPABILITIES
    local: bool = False
    timeout_s: float = 60.0
    max_retries: int = 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "alias": self.alias,
            "provider": self.provider.name,
            "model": self.model,
            "weight": self.weight,
            "tier": self.tier,
            "price": self.price.to_dict(),
            "context_limit": self.context_limit,
            "max_output": self.max_output,
            "capabilities": sorted(self.capabilities),
            "local": self.local,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
        }


@dataclass(frozen=True, slots=True)
class Alias:
    """A model name callers use. `passthrough`: built for a provider's own model name
    rather than configured."""

    name: str
    deployments: tuple[Deployment, ...]
    strategy: Strategy = "priority"
    fallbacks: tuple[str, ...] = ()
    passthrough: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "strategy": self.strategy,
            "fallbacks": list(self.fallbacks),
            "passthrough": self.passthrough,
            "deployments": [d.to_dict() for d in self.deployments],
        }


@dataclass(frozen=True, slots=True)
class Skip:
    deployment_id: str
    alias: str
    reason: SkipReason
    detail: str
    retry_after: float | None = None  # circuit_open: seconds until a probe is let through

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "deployment": self.deployment_id,
            "alias": self.alias,
            "reason": self.reason,
            "detail": self.detail,
        }
        if self.retry_after is not None:
            out["retry_after_s"] = round(self.retry_after, 3)
        return out


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The plan for one call: `deployments` in the order to try them, and what was
    skipped and why. `to_dict()` is what gets recorded."""

    model: str  # as the caller named it
    alias: str
    strategy: Strategy
    deployments: tuple[Deployment, ...]
    skips: tuple[Skip, ...] = ()
    passthrough: bool = False
    window_tokens: int = 0
    max_output: int | None = None
    needs: frozenset[str] = frozenset()
    local_only: bool = False

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.deployments]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "alias": self.alias,
            "strategy": self.strategy,
            "passthrough": self.passthrough,
            "plan": self.ids,
            "skips": [s.to_dict() for s in self.skips],
            "window_tokens": self.window_tokens,
            "max_output": self.max_output,
            "needs": sorted(self.needs),
            "local_only": self.local_only,
        }

    def unroutable(self) -> ProxyError:
        """The error for a plan with no deployment left: 503 when a circuit is open
        (with the seconds until one may take calls again), else 400 naming what to
        change."""
        why = "; ".join(f"{s.deployment_id}: {s.detail}" for s in self.skips)
        message = f"no deployment of model {self.model!r} can take this request ({why})"
        reasons = {s.reason for s in self.skips}
        if not self.skips:
            return ProxyError(503, "overloaded", f"model {self.model!r} has no deployments")
        if "circuit_open" in reasons:
            waits = [s.retry_after for s in self.skips if s.retry_after is not None]
            return ProxyError(503, "overloaded", message, retry_after=min(waits, default=None))
        param: str | None = None
        if reasons == {"output_limit"}:
            param = "max_tokens"
        elif reasons <= {"context_limit", "output_limit"}:
            param = "messages"
        elif reasons == {"capability"}:
            param = "tools" if "tools" in self.needs else None
        return ProxyError(400, "invalid_request", message, param=param)


def required_capabilities(request: ChatRequest) -> frozenset[str]:
    """What a request needs of a deployment: tools, json (a response format), stream."""
    needs = []
    if request.tools:
        needs.append("tools")
    if request.response_format is not None and request.response_format.get("type") != "text":
        needs.append("json")
    if request.stream:
        needs.append("stream")
    return frozenset(needs)


# ---- retries ----------------------------------------------------------------------

Failure = int | Literal["timeout", "connect"]


class Verdict(StrEnum):
    RETRY = "retry"  # try the same deployment again, after a backoff
    NEXT = "next"  # this deployment cannot serve the call: go to the next one
    FAIL = "fail"  # the request is at fault: answer the caller with the error


_RETRY_STATUSES = frozenset((408, 409, 425, 429))
_NEXT_STATUSES = frozenset((401, 402, 403, 404, 501))


def classify(failure: Failure) -> Verdict:
    """What to do after a failed call: see the module docstring."""
    if failure == "timeout" or failure == "connect":
        return Verdict.RETRY
    if not isinstance(failure, int) or failure < 400:
        raise ValueError(f"not a failure: {failure!r}")
    if failure in _NEXT_STATUSES:
        return Verdict.NEXT
    if failure >= 500 or failure in _RETRY_STATUSES:
        return Verdict.RETRY
    return Verdict.FAIL


def is_retryable(failure: Failure) -> bool:
    return classify(failure) is Verdict.RETRY


def is_deployment_fault(failure: Failure) -> bool:
    """Does this failure count against the deployment's health (its breaker)?"""
    return classify(failure) is not Verdict.FAIL


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 2  # the default max_retries of a deployment
    base_s: float = 0.5  # the first retry waits up to this
    cap_s: float = 8.0  # no wait computed by backoff exceeds this
    max_retry_after_s: float = 30.0  # a longer Retry-After: move on to the next deployment

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be at least 0, not {self.retries}")
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("base_s must be positive and at most cap_s")
        if self.max_retry_after_s < 0:
            raise ValueError("max_retry_after_s must be at least 0")


DEFAULT_RETRY = RetryPolicy()
DEFAULT_BREAKER = BreakerPolicy()


def backoff(
    attempt: int,
    retry_after: float | None,
    rng: random.Random,
    policy: RetryPolicy = DEFAULT_RETRY,
) -> float | None:
    """Seconds to wait before retry number `attempt` (1 for the first retry), or None:
    do not retry this deployment, move on to the next one.

    Exponential with full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]. A
    Retry-After the provider sent is honoured exactly when it is at most
    `max_retry_after_s`; above that, waiting is worse than trying another deployment.
    """
    if retry_after is not None:
        if not math.isfinite(retry_after) or retry_after > policy.max_retry_after_s:
            return None
        return max(retry_after, 0.0)
    exponent = min(max(attempt, 1) - 1, 60)
    return rng.uniform(0.0, min(policy.cap_s, policy.base_s * 2.0**exponent))


def retry_after_s(headers: Mapping[str, str], now: float) -> float | None:
    """The wait a provider asks for: `retry-after-ms` (OpenAI), else `retry-after` in
    seconds or as an HTTP date (compared with `now`, unix seconds). None when absent
    or unreadable. Header names as sent or in lower case."""

    def header(name: str) -> str | None:
        value = headers.get(name)
        return value if value is not None else headers.get(name.title())

    ms = header("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(value, 0.0)
    raw = header("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        return max(when.timestamp() - now, 0.0)
    return max(value, 0.0) if math.isfinite(value) else None


# ---- the router -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    strategy: Strategy = "priority"  # for aliases that name none
    retry: RetryPolicy = DEFAULT_RETRY
    breaker: BreakerPolicy = DEFAULT_BREAKER
    ewma_alpha: float = 0.3  # weight of the newest latency in the EWMA
    latency_prior_s: float | None = None  # None: never-observed deployments come first
    output_reserve: int = 1024  # output tokens assumed when a request sets no max
    timeout_s: float = 60.0  # the default timeout of a deployment

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {self.strategy!r}")
        if not 0 < self.ewma_alpha <= 1:
            raise ValueError(f"ewma_alpha must be in (0, 1], not {self.ewma_alpha}")
        if self.latency_prior_s is not None and self.latency_prior_s < 0:
            raise ValueError("latency_prior_s must be at least 0")
        if self.output_reserve < 0:
            raise ValueError("output_reserve must be at least 0")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be positive")


@dataclass(slots=True)
class _Health:
    breaker: CircuitBreaker
    ewma: float | None = None


@dataclass(frozen=True, slots=True)
class _Candidate:
    deployment: Deployment
    weight: float
    input_price: float
    output_price: float
    priced: bool


@dataclass(frozen=True, slots=True)
class _Group:
    alias: str
    strategy: Strategy
    tiers: tuple[tuple[_Candidate, ...], ...]


@dataclass(frozen=True, slots=True)
class _Chain:
    alias: Alias
    groups: tuple[_Group, ...]


def _group(alias: Alias, seen: set[str]) -> _Group:
    by_tier: dict[int, list[_Candidate]] = {}
    for d in alias.deployments:
        if d.id in seen:
            continue
        seen.add(d.id)
        by_tier.setdefault(d.tier, []).append(
            _Candidate(
                d,
                d.weight,
                float(d.price.input_per_mtok),
                float(d.price.output_per_mtok),
                d.price.priced,
            )
        )
    tiers = tuple(tuple(by_tier[t]) for t in sorted(by_tier))
    return _Group(alias.name, alias.strategy, tiers)


Resolver = Callable[[str], Alias]


class Router:
    """Plans calls and keeps each deployment's health (latency EWMA, circuit breaker).

    `resolve` maps a model name to its Alias (configured or pass-through) and raises
    ProxyError for a name nothing serves. One Router per process; not thread-safe (one
    event loop). Health is kept for at most `max_tracked` deployments: beyond that the
    oldest entries with a closed circuit are forgotten (pass-through names are
    unbounded)."""

    MEMO_SIZE = 4096

    def __init__(
        self,
        resolve: Resolver,
        policy: RoutingPolicy | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_transition: TransitionListener | None = None,
        max_tracked: int = 4096,
    ) -> None:
        self._resolve = resolve
        self.policy = policy or RoutingPolicy()
        self.rng = rng or random.Random()
        self._clock = clock
        self._on_transition = on_transition
        self._max_tracked = max(max_tracked, 1)
        self._chains: dict[str, _Chain] = {}
        self._health: dict[str, _Health] = {}

    # -- planning --

    def plan(
        self,
        model: str,
        *,
        needs: frozenset[str] = frozenset(),
        window_tokens: int = 0,
        max_output: int | None = None,
        local_only: bool = False,
    ) -> RouteDecision:
        """The deployments to try for `model`, in order. `window_tokens`: the prompt's
        tokens; `max_output`: the request's max tokens (None: the policy's output
        reserve, bounded by each deployment's maximum)."""
        chain = self._chains.get(model)
        if chain is None:
            chain = self._chain(model)
        planned: list[Deployment] = []
        skips: list[Skip] = []
        reserve = self.policy.output_reserve
        health = self._health
        for group in chain.groups:
            for tier in group.tiers:
                eligible: list[_Candidate] = []
                for c in tier:
                    d = c.deployment
                    if local_only and not d.local:
                        skips.append(
                            Skip(d.id, d.alias, "not_local", "not local; the data must stay local")
                        )
                        continue
                    if needs and not needs <= d.capabilities:
                        missing = ", ".join(sorted(needs - d.capabilities))
                        skips.append(
                            Skip(d.id, d.alias, "capability", f"does not support {missing}")
                        )
                        continue
                    if max_output is None:
                        out = reserve if reserve < d.max_output else d.max_output
                    elif max_output > d.max_output:
                        skips.append(
                            Skip(
                                d.id,
                                d.alias,
                                "output_limit",
                                f"max output {max_output} exceeds its maximum of {d.max_output}",
                            )
                        )
                        continue
                    else:
                        out = max_output
                    if window_tokens + out > d.context_limit:
                        skips.append(
                            Skip(
                                d.id,
                                d.alias,
                                "context_limit",
                                f"{window_tokens} window + {out} output tokens exceed its "
                                f"context limit of {d.context_limit}",
                            )
                        )
                        continue
                    h = health.get(d.id)
                    if h is not None and not h.breaker.available():
                        wait = h.breaker.retry_in()
                        skips.append(
                            Skip(
                                d.id,
                                d.alias,
                                "circuit_open",
                                f"circuit {h.breaker.state}",
                                retry_after=wait,
                            )
                        )
                        continue
                    eligible.append(c)
                if eligible:
                    self._order(group.strategy, eligible, window_tokens, max_output, planned)
        alias = chain.alias
        return RouteDecision(
            model=model,
            alias=alias.name,
            strategy=alias.strategy,
            deployments=tuple(planned),
            skips=tuple(skips),
            passthrough=alias.passthrough,
            window_tokens=window_tokens,
            max_output=max_output,
            needs=needs,
            local_only=local_only,
        )

    def _order(
        self,
        strategy: Strategy,
        eligible: list[_Candidate],
        window_tokens: int,
        max_output: int | None,
        into: list[Deployment],
    ) -> None:
        if len(eligible) == 1 or strategy == "priority":
            into.extend(c.deployment for c in eligible)
        elif strategy == "weighted":
            total = 0.0
            for c in eligible:
                total += c.weight
            x = self.rng.random() * total
            pick = len(eligible) - 1
            for i, c in enumerate(eligible):
                x -= c.weight
                if x < 0:
                    pick = i
                    break
            into.append(eligible[pick].deployment)
            into.extend(c.deployment for i, c in enumerate(eligible) if i != pick)
        elif strategy == "least_latency":
            health = self._health
            prior = self.policy.latency_prior_s
            unknown = -1.0 if prior is None else prior

            def latency(c: _Candidate) -> float:
                h = health.get(c.deployment.id)
                return unknown if h is None or h.ewma is None else h.ewma

            into.extend(c.deployment for c in sorted(eligible, key=latency))
        else:  # least_cost
            reserve = self.policy.output_reserve

            def price(c: _Candidate) -> tuple[bool, float]:
                d = c.deployment
                if max_output is not None:
                    out = max_output
                else:
                    out = reserve if reserve < d.max_output else d.max_output
                return (not c.priced, window_tokens * c.input_price + out * c.output_price)

            into.extend(c.deployment for c in sorted(eligible, key=price))

    def _chain(self, model: str) -> _Chain:
        alias = self._resolve(model)
        groups: list[_Group] = []
        seen_ids: set[str] = set()
        seen_aliases: set[str] = set()
        queue = [alias]
        while queue:
            current = queue.pop(0)
            if current.name in seen_aliases:
                continue
            seen_aliases.add(current.name)
            groups.append(_group(current, seen_ids))
            queue.extend(self._resolve(name) for name in current.fallbacks)
        chain = _Chain(alias, tuple(groups))
        if len(self._chains) >= self.MEMO_SIZE:
            self._chains.clear()
        self._chains[model] = chain
        return chain

    # -- health --

    def allow(self, deployment_id: str) -> bool:
        """Call right before each attempt: False when the deployment's circuit refuses
        calls (half-open: the attempt takes one of the probes)."""
        h = self._health.get(deployment_id)
        return True if h is None else h.breaker.allow()

    def observe(
        self, deployment_id: str, latency_s: float | None, ok: bool, *, timed_out: bool = False
    ) -> None:
        """Report an attempt's outcome. `latency_s` (seconds to the answer, or to the
        first byte of a stream; None: not meaningful) feeds the EWMA on success; a
        failure only raises the EWMA (a slow failure counts, a fast one is not taken as
        speed). A deployment never observed gets its first EWMA from a success, or from
        a timeout (`timed_out`: it is at least that slow; left unobserved it would stay
        first in a least_latency order, costing every call its timeout until its
        circuit opens). `ok` feeds the breaker."""
        h = self._health.get(deployment_id)
        if h is None:
            h = self._track(deployment_id)
        if latency_s is not None and latency_s >= 0:
            previous = h.ewma
            if previous is None:
                if ok or timed_out:
                    h.ewma = latency_s
            elif ok or latency_s > previous:
                h.ewma = previous + self.policy.ewma_alpha * (latency_s - previous)
        if ok:
            h.breaker.record_success()
        else:
            h.breaker.record_failure()

    def backoff(self, attempt: int, retry_after: float | None) -> float | None:
        """`backoff()` with this router's policy and random source."""
        return backoff(attempt, retry_after, self.rng, self.policy.retry)

    def latency(self, deployment_id: str) -> float | None:
        h = self._health.get(deployment_id)
        return None if h is None else h.ewma

    def circuit(self, deployment_id: str) -> CircuitState:
        h = self._health.get(deployment_id)
        return CircuitState.CLOSED if h is None else h.breaker.state

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Health per tracked deployment, JSON-able (for metrics and the admin API)."""
        return {
            key: {**h.breaker.snapshot(), "latency_ewma_s": h.ewma}
            for key, h in self._health.items()
        }

    def _track(self, deployment_id: str) -> _Health:
        if len(self._health) >= self._max_tracked:
            self._evict()
        h = _Health(
            CircuitBreaker(deployment_id, self.policy.breaker, self._clock, self._on_transition)
        )
        self._health[deployment_id] = h
        return h

    def _evict(self) -> None:
        target = self._max_tracked * 9 // 10
        for key in [k for k, h in self._health.items() if h.breaker.state is CircuitState.CLOSED]:
            if len(self._health) <= target:
                break
            del self._health[key]


__all__ = [
    "PROVIDER_KINDS",
    "STRATEGIES",
    "Alias",
    "Deployment",
    "Failure",
    "Provider",
    "ProviderKind",
    "RetryPolicy",
    "RouteDecision",
    "Router",
    "RoutingPolicy",
    "Skip",
    "SkipReason",
    "Strategy",
    "Verdict",
    "backoff",
    "classify",
    "is_deployment_fault",
    "is_retryable",
    "required_capabilities",
    "retry_after_s",
]
