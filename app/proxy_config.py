"""The proxy's configuration: providers, model aliases and their deployments, routing,
caches, context defaults and prices; read from the TOML file and the environment and
checked at start (every error names the TOML key and says what to fix).

    config = load_proxy_config(path_or_None, os.environ)
    router = config.router()                 # one per process
    alias = config.resolve("fast")           # an alias, or a pass-through model name
    info = config.model_info("gpt-4o")       # context_limit, max_output (for windows)

The file is the one the settings read (CONTEXTGATE_CONFIG or --config); its tables are
read here, at the top level or inside [contextgate]. Amounts are USD per million tokens.

    [providers.NAME]            # any number; the name is what deployments refer to
    kind = "openai"             # "openai" (and compatible: vLLM, Ollama...), "anthropic",
                                #   "echo"; defaults to NAME when NAME is one of these
    base_url = "https://..."    # default: the official API of the kind
    api_key_env = "OPENAI_API_KEY"  # the NAME of the variable holding the key (never
                                #   the key itself); omit for a server that needs none
    local = false               # default `local` of its deployments (echo: true)

    [models.ALIAS]              # what callers put in `model`
    strategy = "priority"       # priority | weighted | least_latency | least_cost
                                #   (default: [routing] strategy)
    fallbacks = ["other"]       # aliases (or pass-through names) tried after these

    [[models.ALIAS.deployments]]
    provider = "openai"         # required: a [providers] name (or openai / anthropic /
                                #   echo from the environment)
    model = "gpt-4o"            # required: the provider's model name
    id = "..."                  # default "ALIAS/PROVIDER/MODEL"; keys health and records
    weight = 1                  # > 0, for `weighted`
    tier = 0                    # >= 0; lower tiers are tried first by every strategy
    price = { input = 2.5, output = 10, cached = 1.25 }   # default: the price table
    context_limit = 128000      # default: the price table (required for unknown models)
    max_output = 16384          # default: the price table; below context_limit
    capabilities = ["tools", "json", "vision", "stream"]  # default: the price table
    local = false               # may see data that must stay local (default: provider's)
    timeout_s = 60              # default: [routing] timeout_s
    max_retries = 2             # default: [routing] retries

    [routing]
    strategy = "priority"       # for aliases that set none (and pass-through names)
    retries = 2                 # retries per deployment (0-10)
    backoff_base_s = 0.5        # exponential backoff with full jitter: up to base * 2^n
    backoff_cap_s = 8.0         #   and never above this
    max_retry_after_s = 30.0    # a longer Retry-After moves on to the next deployment
    timeout_s = 60.0
    ewma_alpha = 0.3            # weight of the newest latency (least_latency)
    latency_prior_s = 1.0       # optional: assumed latency of an unobserved deployment
                                #   (unset: unobserved deployments are tried first)
    output_reserve = 1024       # output tokens assumed when a request sets no max
    default_provider = "openai" # where pass-through names go (default: openai, else
                                #   anthropic, else the first configured, else echo)
    passthrough = true          # false: only configured aliases are served
    unknown_context_limit = 8192  # limits assumed for models the price table lacks
    unknown_max_output = 2048

    [routing.breaker]
    failures = 5                # consecutive failures that open a deployment's circuit
    cooldown_s = 30.0           # before probe calls are let through (half-open)
    probes = 1                  # probe calls at once

    [cache]
    exact = true                # identical requests answered from the cache
    semantic = false            # similar requests (embedding similarity) too
    similarity_threshold = 0.95 # cosine similarity for a semantic hit (0-1]
    ttl_s = 86400
    semantic_max_temperature = 0.3  # no semantic hits for requests sampled hotter

    [context]
    strategy = "hybrid"         # full | sliding_window | summary | retrieval | hybrid
    budget = 8000               # optional: window tokens (default: the model's limit)
    shares = { recent = 0.15, summary = 0.05, retrieved = 0.8 }

    [prices."model-name"]       # add to or correct the shipped table (app/data/prices.toml)
    input = 1.0
    output = 2.0
    cached = 0.5                # default: input
    context_limit = 131072
    max_output = 8192
    capabilities = ["tools", "json", "stream"]

Environment: OPENAI_API_KEY (with OPENAI_BASE_URL when set) makes an `openai`
provider, ANTHROPIC_API_KEY (with ANTHROPIC_BASE_URL) an `anthropic` one, unless the file
defines a provider of that name. The `echo` provider (local, no key) and the `echo`
alias always exist. A model name that is not an alias passes through to a provider:
`PROVIDER/MODEL` to that provider; `claude-*` to the anthropic provider when there is
one; anything else to the default provider (echo when no key is set, so a fresh install
answers out of the box). Its limits, capabilities and price come from the price table.
"""

from __future__ import annotations

import os
import random
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, cast

from app.settings import SettingsError
from domain.context.inputs import BudgetShares
from domain.context.strategies import DEFAULT_SHARES, DEFAULT_STRATEGY
from domain.context.strategies import STRATEGIES as CONTEXT_STRATEGIES
from domain.errors import ValidationError
from domain.proxy.breaker import BreakerPolicy, TransitionListener
from domain.proxy.chat import ProxyError
from domain.proxy.pricing import (
    CAPABILITIES,
    FREE,
    UNPRICED,
    ModelCard,
    Price,
    PriceTable,
    normalize_model_name,
)
from domain.proxy.routing import (
    PROVIDER_KINDS,
    STRATEGIES,
    Alias,
    Deployment,
    Provider,
    ProviderKind,
    RetryPolicy,
    Router,
    RoutingPolicy,
    Strategy,
)

OPENAI_URL = "https://api.openai.com/v1"
ANTHROPIC_URL = "https://api.anthropic.com"
DEFAULT_BASE_URLS: dict[str, str | None] = {
    "openai": OPENAI_URL,
    "anthropic": ANTHROPIC_URL,
    "echo": None,
}
SECTIONS = ("providers", "models", "routing", "cache", "context", "prices")
ECHO = "echo"


@dataclass(frozen=True)
class CacheConfig:
    # Off unless configured: a cached answer to a repeated request at a temperature
    # above 0 (a "regenerate" button) changes what the caller gets.
    exact: bool = False
    semantic: bool = False
    similarity_threshold: float = 0.95
    ttl_s: int = 86_400
    semantic_max_temperature: float = 0.3


@dataclass(frozen=True)
class ContextConfig:
    strategy: str = DEFAULT_STRATEGY
    budget: int | None = None  # None: the model's context limit minus its output reserve
    shares: BudgetShares = DEFAULT_SHARES


@dataclass(frozen=True)
class ModelLimits:
    """What the context endpoint needs of a model (the fields of app.model_catalog's
    ModelInfo, plus `known`: False when the limits are the conservative defaults)."""

    name: str
    context_limit: int
    max_output: int
    known: bool = True


@dataclass(frozen=True, eq=False)
class ProxyConfig:
    providers: Mapping[str, Provider]
    aliases: Mapping[str, Alias]
    routing: RoutingPolicy
    prices: PriceTable
    default_provider: str
    anthropic_provider: str | None = None  # where claude-* names pass through to
    passthrough: bool = True
    cache: CacheConfig = field(default_factory=CacheConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    source: str | None = None  # the file read, if any
    _memo: dict[str, Alias] = field(default_factory=dict, repr=False)

    MEMO_SIZE = 4096

    def resolve(self, model: str) -> Alias:
        """The alias `model` names, or a pass-through alias of one deployment. Raises
        ProxyError (404, param "model") when nothing serves the name."""
        alias = self.aliases.get(model)
        if alias is not None:
            return alias
        alias = self._memo.get(model)
        if alias is not None:
            return alias
        alias = self._passthrough(model)
        if len(self._memo) >= self.MEMO_SIZE:
            self._memo.clear()
        self._memo[model] = alias
        return alias

    def _passthrough(self, model: str) -> Alias:
        if not model.strip():
            raise ProxyError(400, "invalid_request", "model must not be empty", param="model")
        if not self.passthrough:
            raise ProxyError(
                404,
                "not_found",
                f"model {model!r} is not configured; use one of: {', '.join(sorted(self.aliases))}",
                param="model",
            )
        provider, name = self.provider_for(model)
        return _passthrough_alias(model, provider, name, self.prices, self.routing)

    def provider_for(self, model: str) -> tuple[Provider, str]:
        """The provider a pass-through name goes to, and the model name it is sent."""
        head, slash, rest = model.partition("/")
        if slash and rest and head in self.providers:
            return self.providers[head], rest
        if self.anthropic_provider is not None and normalize_model_name(model).startswith(
            "claude-"
        ):
            return self.providers[self.anthropic_provider], model
        return self.providers[self.default_provider], model

    def model_info(self, model: str) -> ModelLimits:
        """Context limit and output reserve for building a window for `model`: for an
        alias, the smallest of its own deployments' (a window that fits every one of
        them); for a pass-through name, the price table's (conservative defaults with
        `known=False` for a model it lacks). Raises ValidationError (field "model") for
        a name nothing serves."""
        try:
            alias = self.resolve(model)
        except ProxyError as exc:
            raise ValidationError(exc.message, "model") from None
        ds = alias.deployments
        known = True
        if alias.passthrough:
            known = self.prices.lookup(ds[0].model).known
        return ModelLimits(
            model,
            min(d.context_limit for d in ds),
            min(d.max_output for d in ds),
            known,
        )

    def model_names(self) -> list[str]:
        """The configured aliases (for GET /v1/models; pass-through names are open-ended)."""
        return sorted(self.aliases)

    def router(
        self,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_transition: TransitionListener | None = None,
    ) -> Router:
        return Router(self.resolve, self.routing, rng=rng, clock=clock, on_transition=on_transition)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, with no secret in it (providers name their key's variable only)."""
        r = self.routing
        return {
            "source": self.source,
            "providers": {n: p.to_dict() for n, p in sorted(self.providers.items())},
            "models": {n: a.to_dict() for n, a in sorted(self.aliases.items())},
            "default_provider": self.default_provider,
            "anthropic_provider": self.anthropic_provider,
            "passthrough": self.passthrough,
            "routing": {
                "strategy": r.strategy,
                "retries": r.retry.retries,
                "backoff_base_s": r.retry.base_s,
                "backoff_cap_s": r.retry.cap_s,
                "max_retry_after_s": r.retry.max_retry_after_s,
                "timeout_s": r.timeout_s,
                "ewma_alpha": r.ewma_alpha,
                "latency_prior_s": r.latency_prior_s,
                "output_reserve": r.output_reserve,
                "breaker": {
                    "failures": r.breaker.failures,
                    "cooldown_s": r.breaker.cooldown_s,
                    "probes": r.breaker.probes,
                },
            },
            "cache": {f.name: getattr(self.cache, f.name) for f in fields(self.cache)},
            "context": {
                "strategy": self.context.strategy,
                "budget": self.context.budget,
                "shares": {
                    "recent": self.context.shares.recent,
                    "summary": self.context.shares.summary,
                    "retrieved": self.context.shares.retrieved,
                },
            },
            "prices": {"compiled": self.prices.compiled, "models": len(self.prices)},
        }


def _passthrough_alias(
    name: str, provider: Provider, model: str, prices: PriceTable, routing: RoutingPolicy
) -> Alias:
    card = prices.lookup(model)
    echo = provider.kind == "echo"
    deployment = Deployment(
        id=f"{provider.name}/{model}",
        alias=name,
        provider=provider,
        model=model,
        price=FREE if echo else card.price,
        context_limit=card.context_limit,
        max_output=card.max_output,
        capabilities=CAPABILITIES if echo else card.capabilities,
        local=provider.local or echo,
        timeout_s=routing.timeout_s,
        max_retries=routing.retry.retries,
    )
    return Alias(name, (deployment,), routing.strategy, (), passthrough=True)


# ---- reading TOML tables ----------------------------------------------------------

_MISSING: Any = object()


class _Table:
    """One TOML table: typed getters whose errors name the key; `done()` refuses keys
    nobody asked for (typos)."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        if not isinstance(data, dict):
            raise SettingsError(f"{source}: {path} must be a table, got {data!r}")
        self.data: dict[str, Any] = data
        self.path = path
        self.source = source
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> SettingsError:
        return SettingsError(f"{self.source}: {self.key(name)} {message}")

    def raw(self, name: str) -> Any:
        self.used.add(name)
        return self.data.get(name, _MISSING)

    def has(self, name: str) -> bool:
        return name in self.data

    def opt_text(self, name: str) -> str | None:
        value = self.raw(name)
        if value is _MISSING:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(name, f"must be a non-empty string, got {value!r}")
        return value.strip()

    def text(self, name: str, default: str) -> str:
        value = self.opt_text(name)
        return default if value is None else value

    def required_text(self, name: str, what: str) -> str:
        value = self.opt_text(name)
        if value is None:
            raise self.error(name, f"is required: {what}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def opt_int(self, name: str, low: int | None = None, high: int | None = None) -> int | None:
        value = self.raw(name)
        if value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer{_range(low, high)}, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(name, f"must be an integer{_range(low, high)}, got {value}")
        return value

    def integer(
        self, name: str, default: int, low: int | None = None, high: int | None = None
    ) -> int:
        value = self.opt_int(name, low, high)
        return default if value is None else value

    def opt_number(
        self,
        name: str,
        low: float | None = None,
        high: float | None = None,
        *,
        positive: bool = False,
    ) -> float | None:
        value = self.raw(name)
        if value is _MISSING:
            return None
        words = (
            f"a {'positive ' if positive else ''}number{_range(None if positive else low, high)}"
        )
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
            raise self.error(name, f"must be {words}, got {value!r}")
        number = float(value)
        if (
            number != number
            or (positive and number <= 0)
            or (low is not None and number < low)
            or (high is not None and number > high)
        ):
            raise self.error(name, f"must be {words}, got {value}")
        return number

    def number(
        self,
        name: str,
        default: float,
        low: float | None = None,
        high: float | None = None,
        *,
        positive: bool = False,
    ) -> float:
        value = self.opt_number(name, low, high, positive=positive)
        return default if value is None else value

    def opt_decimal(self, name: str) -> Decimal | None:
        value = self.raw(name)
        if value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise self.error(name, f"must be a number (USD per million tokens), got {value!r}")
        amount = Decimal(value)
        if not amount.is_finite() or amount < 0:
            raise self.error(name, f"must be a price of 0 or more, got {value}")
        return amount

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {value!r}")
        return value

    def strings(self, name: str) -> tuple[str, ...] | None:
        value = self.raw(name)
        if value is _MISSING:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.error(name, f"must be a list of non-empty strings, got {value!r}")
        return tuple(v.strip() for v in value)

    def capabilities(self, name: str) -> frozenset[str] | None:
        values = self.strings(name)
        if values is None:
            return None
        unknown = sorted(set(values) - CAPABILITIES)
        if unknown:
            raise self.error(
                name,
                f"has unknown capabilities {unknown}; use any of {sorted(CAPABILITIES)}",
            )
        return frozenset(values)

    def sub(self, name: str) -> _Table | None:
        value = self.raw(name)
        if value is _MISSING:
            return None
        return _Table(value, self.key(name), self.source)

    def expect(self, *names: str) -> None:
        """Refuse unknown keys before reading any (a typo explains later errors)."""
        unknown = sorted(set(self.data) - set(names))
        if unknown:
            where = f"[{self.path}]" if self.path else "the file"
            raise SettingsError(
                f"{self.source}: unknown key {self.key(unknown[0])!r} in {where}; "
                f"known keys here: {', '.join(names)}"
            )

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            where = f"[{self.path}]" if self.path else "the file"
            known = ", ".join(sorted(self.used))
            raise SettingsError(
                f"{self.source}: unknown key {self.key(unknown[0])!r} in {where}; "
                f"known keys here: {known}"
            )


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" between {low:g} and {high:g}"
    if low is not None:
        return f" of at least {low:g}"
    if high is not None:
        return f" of at most {high:g}"
    return ""


# ---- the price table --------------------------------------------------------------


def shipped_price_table_text() -> str:
    return resources.files("app").joinpath("data/prices.toml").read_text(encoding="utf-8")


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{source} is not valid TOML: {exc}") from None


def _card(name: str, t: _Table, base: ModelCard | None = None) -> ModelCard:
    """A [prices."NAME"] entry; `base` (the shipped entry) fills what it leaves out."""
    t.expect("provider", "input", "output", "cached", "context_limit", "max_output", "capabilities")
    inp, out, cached = t.opt_decimal("input"), t.opt_decimal("output"), t.opt_decimal("cached")
    if (inp is None) != (out is None):
        raise t.error("input" if inp is None else "output", "is required with the other price")
    if cached is not None and inp is None:
        raise t.error("cached", "needs input and output prices too")
    if inp is not None and out is not None:
        price = Price(inp, out, inp if cached is None else cached)
    else:
        price = base.price if base is not None else UNPRICED
    limit = t.opt_int("context_limit", 1)
    max_output = t.opt_int("max_output", 1)
    if limit is None:
        if base is None:
            raise t.error("context_limit", "is required (the model's context window, in tokens)")
        limit = base.context_limit
    if max_output is None:
        max_output = base.max_output if base is not None else max(1, min(limit // 4, 4096))
    if max_output >= limit:
        raise t.error("max_output", f"must be below context_limit ({limit}), got {max_output}")
    caps = t.capabilities("capabilities")
    provider = t.opt_text("provider")
    t.done()
    return ModelCard(
        name=name,
        context_limit=limit,
        max_output=max_output,
        price=price,
        capabilities=caps if caps is not None else (base.capabilities if base else CAPABILITIES),
        known=True,
        provider=provider if provider is not None else (base.provider if base else None),
    )


def _read_cards(
    raw: Any, source: str, base: Mapping[str, ModelCard] | None = None
) -> dict[str, ModelCard]:
    table = _Table(raw, "prices", source)
    cards: dict[str, ModelCard] = {}
    for name in list(table.data):
        entry = table.sub(name)
        assert entry is not None
        key = normalize_model_name(name)
        cards[key] = _card(name, entry, (base or {}).get(key))
    return cards


def load_price_table(
    text: str | None = None,
    *,
    source: str = "app/data/prices.toml",
    overrides: Any = None,
    overrides_source: str = "config",
    unknown_context_limit: int | None = None,
    unknown_max_output: int | None = None,
) -> PriceTable:
    """The shipped table (or `text`), with `overrides` (a config's [prices] table)
    merged over it entry by entry."""
    raw = _parse_toml(shipped_price_table_text() if text is None else text, source)
    top = _Table(raw, "", source)
    compiled = top.raw("compiled")
    if not isinstance(compiled, date):
        raise top.error("compiled", f"must be the date the table was compiled, got {compiled!r}")
    top.text("currency", "USD")
    defaults = top.sub("defaults") or _Table({}, "defaults", source)
    default_limit = defaults.integer("context_limit", 8192, 1)
    default_output = defaults.integer("max_output", 2048, 1)
    defaults.done()
    cards = _read_cards(top.raw("prices"), source) if top.has("prices") else {}
    top.done()
    if overrides is not None:
        cards.update(_read_cards(overrides, overrides_source, cards))
    limit = unknown_context_limit or default_limit
    output = unknown_max_output or default_output
    if output >= limit:
        output = max(1, limit // 4)
    return PriceTable(
        cards.values(),
        unknown_context_limit=limit,
        unknown_max_output=output,
        compiled=compiled.isoformat(),
    )


# ---- the configuration ------------------------------------------------------------


def _base_url(value: str, where: str) -> str:
    url = value.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise SettingsError(f"{where} must be an http:// or https:// URL, got {value!r}")
    return url


def _env_providers(env: Mapping[str, str]) -> dict[str, Provider]:
    providers = {ECHO: Provider(ECHO, "echo", None, None, local=True)}
    if env.get("OPENAI_API_KEY"):
        url = env.get("OPENAI_BASE_URL") or OPENAI_URL
        providers["openai"] = Provider(
            "openai", "openai", _base_url(url, "OPENAI_BASE_URL"), "OPENAI_API_KEY"
        )
    if env.get("ANTHROPIC_API_KEY"):
        url = env.get("ANTHROPIC_BASE_URL") or ANTHROPIC_URL
        providers["anthropic"] = Provider(
            "anthropic", "anthropic", _base_url(url, "ANTHROPIC_BASE_URL"), "ANTHROPIC_API_KEY"
        )
    return providers


def _provider(name: str, t: _Table, env: Mapping[str, str]) -> Provider:
    t.expect("kind", "base_url", "api_key_env", "local", "api_key")
    if t.has("api_key"):
        raise t.error(
            "api_key",
            "is not read: keep the key in an environment variable and name that variable "
            'with api_key_env (for example api_key_env = "OPENAI_API_KEY")',
        )
    default_kind = name if name in PROVIDER_KINDS else None
    kind = t.opt_text("kind") or default_kind
    if kind is None:
        raise t.error("kind", f"is required: one of {', '.join(PROVIDER_KINDS)}")
    if kind not in PROVIDER_KINDS:
        raise t.error("kind", f"must be one of {', '.join(PROVIDER_KINDS)}; got {kind!r}")
    url = t.opt_text("base_url")
    base_url = _base_url(url, f"{t.source}: {t.key('base_url')}") if url else None
    if base_url is None:
        base_url = DEFAULT_BASE_URLS[kind]
    key_env = t.opt_text("api_key_env")
    if key_env is not None and not env.get(key_env):
        raise t.error(
            "api_key_env",
            f"names {key_env}, which is not set (or empty): export {key_env}=<key>, or "
            "remove api_key_env for a server that needs no key",
        )
    if key_env is None and base_url in (OPENAI_URL, ANTHROPIC_URL):
        raise t.error(
            "api_key_env",
            f"is required for {base_url}: name the environment variable holding the key",
        )
    local = t.boolean("local", kind == "echo")
    t.done()
    return Provider(name, cast(ProviderKind, kind), base_url, key_env, local=local)


def _deployment(
    alias: str,
    t: _Table,
    providers: Mapping[str, Provider],
    prices: PriceTable,
    routing: RoutingPolicy,
) -> Deployment:
    t.expect(
        "provider", "model", "id", "weight", "tier", "price", "context_limit", "max_output",
        "capabilities", "local", "timeout_s", "max_retries",
    )  # fmt: skip
    pname = t.required_text("provider", "the name of a [providers.NAME] table")
    provider = providers.get(pname)
    if provider is None:
        raise t.error(
            "provider",
            f"{pname!r} is not a provider: define [providers.{pname}] (or set its API key "
            f"variable); known: {', '.join(sorted(providers))}",
        )
    model = t.required_text("model", "the provider's model name, e.g. gpt-4o")
    card = prices.lookup(model)
    echo = provider.kind == "echo"
    did = t.opt_text("id") or f"{alias}/{pname}/{model}"
    weight = t.number("weight", 1.0, positive=True)
    tier = t.integer("tier", 0, 0, 1000)
    price_table = t.sub("price")
    price: Price
    if price_table is not None:
        price_table.expect("input", "output", "cached")
        inp = price_table.opt_decimal("input")
        out = price_table.opt_decimal("output")
        cached = price_table.opt_decimal("cached")
        if inp is None or out is None:
            raise price_table.error(
                "input" if inp is None else "output", "is required (USD per million tokens)"
            )
        price_table.done()
        price = Price(inp, out, inp if cached is None else cached)
    else:
        price = FREE if echo else card.price
    limit = t.opt_int("context_limit", 1)
    if limit is None:
        if not card.known and not echo:
            raise t.error(
                "context_limit",
                f"is required: model {model!r} is not in the price table (add "
                f'context_limit and max_output here, or a [prices."{model}"] table)',
            )
        limit = card.context_limit
    max_output = t.opt_int("max_output", 1)
    if max_output is None:
        max_output = min(card.max_output, max(1, limit // 2))
    if max_output >= limit:
        raise t.error("max_output", f"must be below context_limit ({limit}), got {max_output}")
    caps = t.capabilities("capabilities")
    if caps is None:
        caps = CAPABILITIES if echo else card.capabilities
    local = t.boolean("local", provider.local or echo)
    timeout = t.number("timeout_s", routing.timeout_s, positive=True)
    retries = t.integer("max_retries", routing.retry.retries, 0, 10)
    t.done()
    return Deployment(
        id=did,
        alias=alias,
        provider=provider,
        model=model,
        weight=weight,
        tier=tier,
        price=price,
        context_limit=limit,
        max_output=max_output,
        capabilities=caps,
        local=local,
        timeout_s=timeout,
        max_retries=retries,
    )


def _alias(
    name: str,
    t: _Table,
    providers: Mapping[str, Provider],
    prices: PriceTable,
    routing: RoutingPolicy,
) -> Alias:
    t.expect("strategy", "fallbacks", "deployments")
    strategy = t.choice("strategy", routing.strategy, STRATEGIES)
    fallbacks = t.strings("fallbacks") or ()
    if name in fallbacks:
        raise t.error("fallbacks", f"must not name the alias itself ({name!r})")
    raw = t.raw("deployments")
    if raw is _MISSING or not isinstance(raw, list) or not raw:
        raise t.error(
            "deployments",
            "is required: at least one [[models." + name + ".deployments]] table with "
            "provider and model",
        )
    deployments = []
    for i, entry in enumerate(raw):
        dt = _Table(entry, f"{t.key('deployments')}[{i}]", t.source)
        deployments.append(_deployment(name, dt, providers, prices, routing))
    seen: dict[str, int] = {}
    unique = []
    for d in deployments:
        count = seen.get(d.id, 0) + 1
        seen[d.id] = count
        if count > 1:
            d = _replace_id(d, f"{d.id}#{count}")
        unique.append(d)
    t.done()
    return Alias(name, tuple(unique), cast(Strategy, strategy), fallbacks)


def _replace_id(d: Deployment, new_id: str) -> Deployment:
    values = {f.name: getattr(d, f.name) for f in fields(d)}
    values["id"] = new_id
    return Deployment(**values)


def _routing(t: _Table) -> tuple[RoutingPolicy, _Table]:
    t.expect(
        "strategy", "retries", "backoff_base_s", "backoff_cap_s", "max_retry_after_s",
        "timeout_s", "ewma_alpha", "latency_prior_s", "output_reserve", "default_provider",
        "passthrough", "unknown_context_limit", "unknown_max_output", "breaker",
    )  # fmt: skip
    retries = t.integer("retries", 2, 0, 10)
    base = t.number("backoff_base_s", 0.5, positive=True)
    cap = t.number("backoff_cap_s", max(8.0, base), positive=True)
    if cap < base:
        raise t.error("backoff_cap_s", f"must be at least backoff_base_s ({base:g}), got {cap:g}")
    max_ra = t.number("max_retry_after_s", 30.0, 0)
    b = t.sub("breaker") or _Table({}, t.key("breaker"), t.source)
    b.expect("failures", "cooldown_s", "probes")
    breaker = BreakerPolicy(
        failures=b.integer("failures", 5, 1, 1000),
        cooldown_s=b.number("cooldown_s", 30.0, positive=True),
        probes=b.integer("probes", 1, 1, 100),
    )
    b.done()
    policy = RoutingPolicy(
        strategy=cast(Strategy, t.choice("strategy", "priority", STRATEGIES)),
        retry=RetryPolicy(retries=retries, base_s=base, cap_s=cap, max_retry_after_s=max_ra),
        breaker=breaker,
        ewma_alpha=t.number("ewma_alpha", 0.3, positive=True, high=1.0),
        latency_prior_s=t.opt_number("latency_prior_s", 0),
        output_reserve=t.integer("output_reserve", 1024, 0),
        timeout_s=t.number("timeout_s", 60.0, positive=True),
    )
    return policy, t


def _cache(t: _Table) -> CacheConfig:
    t.expect("exact", "semantic", "similarity_threshold", "ttl_s", "semantic_max_temperature")
    config = CacheConfig(
        exact=t.boolean("exact", False),
        semantic=t.boolean("semantic", False),
        similarity_threshold=t.number("similarity_threshold", 0.95, positive=True, high=1.0),
        ttl_s=t.integer("ttl_s", 86_400, 1),
        semantic_max_temperature=t.number("semantic_max_temperature", 0.3, 0, 2),
    )
    t.done()
    return config


def _context(t: _Table) -> ContextConfig:
    t.expect("strategy", "budget", "shares")
    strategy = t.choice("strategy", DEFAULT_STRATEGY, tuple(CONTEXT_STRATEGIES))
    budget = t.opt_int("budget", 1)
    shares = DEFAULT_SHARES
    st = t.sub("shares")
    if st is not None:
        st.expect("recent", "summary", "retrieved")
        values = {
            name: st.number(name, getattr(DEFAULT_SHARES, name), 0, 1)
            for name in ("recent", "summary", "retrieved")
        }
        st.done()
        try:
            shares = BudgetShares(**values)
        except ValidationError as exc:
            raise SettingsError(f"{t.source}: {t.key('shares')}: {exc}") from None
    t.done()
    return ContextConfig(strategy=strategy, budget=budget, shares=shares)


def _sections(raw: dict[str, Any], source: str) -> dict[str, Any]:
    nested = raw.get("contextgate")
    nested = nested if isinstance(nested, dict) else {}
    out: dict[str, Any] = {}
    for name in SECTIONS:
        if name in raw and name in nested:
            raise SettingsError(
                f"{source}: [{name}] appears both at the top level and in [contextgate]; keep one"
            )
        value = raw.get(name, nested.get(name, _MISSING))
        if value is not _MISSING:
            if not isinstance(value, dict):
                raise SettingsError(f"{source}: {name} must be a table ([{name}]), got {value!r}")
            out[name] = value
    return out


def load_proxy_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> ProxyConfig:
    """Read and check the proxy's configuration. `path` None: CONTEXTGATE_CONFIG from
    `env` when set, else no file (the environment alone). Raises SettingsError."""
    env = os.environ if env is None else env
    file = path or env.get("CONTEXTGATE_CONFIG") or None
    sections: dict[str, Any] = {}
    source = "environment"
    if file:
        source = str(file)
        try:
            text = Path(file).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SettingsError(f"config file {file} does not exist") from None
        sections = _sections(_parse_toml(text, f"config file {file}"), source)

    routing_table = _Table(sections.get("routing", {}), "routing", source)
    routing, rt = _routing(routing_table)
    unknown_limit = rt.opt_int("unknown_context_limit", 1)
    unknown_output = rt.opt_int("unknown_max_output", 1)
    if unknown_limit and unknown_output and unknown_output >= unknown_limit:
        raise rt.error("unknown_max_output", "must be below unknown_context_limit")
    prices = load_price_table(
        overrides=sections.get("prices"),
        overrides_source=source,
        unknown_context_limit=unknown_limit,
        unknown_max_output=unknown_output,
    )

    providers = _env_providers(env)
    ptable = _Table(sections.get("providers", {}), "providers", source)
    for name in list(ptable.data):
        sub = ptable.sub(name)
        assert sub is not None
        providers[name] = _provider(name, sub, env)
    ptable.done()

    passthrough = rt.boolean("passthrough", True)
    default = rt.opt_text("default_provider")
    if default is not None and default not in providers:
        raise rt.error(
            "default_provider",
            f"{default!r} is not a provider; known: {', '.join(sorted(providers))}",
        )
    if default is None:
        default = _default_provider(providers)
    anthropic = _anthropic_provider(providers)
    rt.done()

    aliases: dict[str, Alias] = {}
    mtable = _Table(sections.get("models", {}), "models", source)
    for name in list(mtable.data):
        sub = mtable.sub(name)
        assert sub is not None
        aliases[name] = _alias(name, sub, providers, prices, routing)
    mtable.done()
    if ECHO not in aliases:
        echo = _passthrough_alias(ECHO, providers[ECHO], ECHO, prices, routing)
        aliases[ECHO] = Alias(ECHO, echo.deployments, routing.strategy)

    ids: dict[str, str] = {}
    for alias in aliases.values():
        for d in alias.deployments:
            other = ids.setdefault(d.id, alias.name)
            if other != alias.name:
                raise SettingsError(
                    f"{source}: models.{alias.name}.deployments: id {d.id!r} is also used by "
                    f"models.{other}; give one of them another id"
                )

    config = ProxyConfig(
        providers=providers,
        aliases=aliases,
        routing=routing,
        prices=prices,
        default_provider=default,
        anthropic_provider=anthropic,
        passthrough=passthrough,
        cache=_cache(_Table(sections.get("cache", {}), "cache", source)),
        context=_context(_Table(sections.get("context", {}), "context", source)),
        source=str(file) if file else None,
    )
    for alias in aliases.values():
        for fallback in alias.fallbacks:
            if fallback in aliases:
                continue
            head, slash, rest = fallback.partition("/")
            servable = bool(slash and rest and head in providers) or fallback in prices
            if not passthrough or not servable:
                why = (
                    "[routing] passthrough is off"
                    if not passthrough
                    else "nor a model of the price table or PROVIDER/MODEL"
                )
                raise SettingsError(
                    f"{source}: models.{alias.name}.fallbacks names {fallback!r}, which is "
                    f"not an alias ({why}); aliases: {', '.join(sorted(aliases))}"
                )
    return config


def _default_provider(providers: Mapping[str, Provider]) -> str:
    for name in ("openai", "anthropic"):
        if name in providers:
            return name
    for name, provider in providers.items():
        if provider.kind != "echo":
            return name
    return ECHO


def _anthropic_provider(providers: Mapping[str, Provider]) -> str | None:
    if "anthropic" in providers and providers["anthropic"].kind == "anthropic":
        return "anthropic"
    for name, provider in providers.items():
        if provider.kind == "anthropic":
            return name
    return None
