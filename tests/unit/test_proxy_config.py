"""The proxy's configuration: environment-only defaults, the TOML schema, validation
errors that name the key, the shipped price table and the example file."""

from __future__ import annotations

import json
import random
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from app import settings as app_settings
from app.model_catalog import CATALOG
from app.proxy_config import (
    CacheConfig,
    ContextConfig,
    ModelLimits,
    ProxyConfig,
    load_price_table,
    load_proxy_config,
    shipped_price_table_text,
)
from app.settings import SettingsError
from domain.context.inputs import BudgetShares
from domain.errors import ValidationError
from domain.proxy.chat import ProxyError, Usage
from domain.proxy.pricing import FREE, Price, cost

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "ops" / "contextgate.example.toml"
SECRET = "sk-do-not-leak-1234567890"
KEYS = {"OPENAI_API_KEY": SECRET, "ANTHROPIC_API_KEY": SECRET + "-a"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "contextgate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ProxyConfig:
    return load_proxy_config(write(tmp_path, text), KEYS if env is None else env)


# ---- no config file ---------------------------------------------------------------


def test_with_no_key_the_echo_model_answers_every_name() -> None:
    config = load_proxy_config(None, {})
    assert sorted(config.providers) == ["echo"]
    assert config.default_provider == "echo" and config.anthropic_provider is None
    assert config.model_names() == ["echo"]
    for name in ("gpt-4o", "claude-sonnet-4-5", "anything at all", "echo"):
        alias = config.resolve(name)
        (d,) = alias.deployments
        assert d.provider.kind == "echo" and d.local and d.price == FREE
    assert config.resolve("gpt-4o").deployments[0].context_limit == 128_000  # table's limits
    assert config.resolve("echo").deployments[0].model == "echo"
    assert not config.resolve("echo").passthrough and config.resolve("gpt-4o").passthrough
    assert config.source is None


def test_openai_key_alone_makes_openai_the_default_for_every_name() -> None:
    config = load_proxy_config(None, {"OPENAI_API_KEY": SECRET})
    assert sorted(config.providers) == ["echo", "openai"]
    openai = config.providers["openai"]
    assert (openai.kind, openai.base_url, openai.api_key_env) == (
        "openai",
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
    )
    d = config.resolve("gpt-4o-2024-08-06").deployments[0]
    assert (d.id, d.provider.name, d.model) == (
        "openai/gpt-4o-2024-08-06",
        "openai",
        "gpt-4o-2024-08-06",
    )
    assert d.price == Price.of("2.50", "10.00", "1.25") and not d.local
    # No Anthropic key: claude names go to the default provider too.
    assert config.resolve("claude-sonnet-4-5").deployments[0].provider.name == "openai"
    # The echo alias still exists.
    assert config.resolve("echo").deployments[0].provider.kind == "echo"


def test_openai_base_url_from_the_environment() -> None:
    env = {"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": "http://vllm:8000/v1/"}
    config = load_proxy_config(None, env)
    assert config.providers["openai"].base_url == "http://vllm:8000/v1"


def test_a_bad_base_url_in_the_environment_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="OPENAI_BASE_URL must be an http"):
        load_proxy_config(None, {"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": "vllm:8000"})


def test_anthropic_key_alone_makes_anthropic_the_default() -> None:
    env = {"ANTHROPIC_API_KEY": SECRET, "ANTHROPIC_BASE_URL": "https://proxy.example/anthropic"}
    config = load_proxy_config(None, env)
    assert config.default_provider == "anthropic"
    assert config.providers["anthropic"].base_url == "https://proxy.example/anthropic"
    assert config.resolve("gpt-4o").deployments[0].provider.name == "anthropic"


def test_with_both_keys_claude_names_go_to_anthropic_and_the_rest_to_openai() -> None:
    config = load_proxy_config(None, KEYS)
    assert config.default_provider == "openai" and config.anthropic_provider == "anthropic"
    for name in ("claude-sonnet-4-5-20250929", "Claude-3-5-Haiku-latest", "claude-opus-4-7"):
        assert config.resolve(name).deployments[0].provider.name == "anthropic"
    for name in ("gpt-4.1", "o3-mini", "my-own-model"):
        assert config.resolve(name).deployments[0].provider.name == "openai"
    # PROVIDER/MODEL picks the provider explicitly.
    d = config.resolve("anthropic/claude-haiku-4-5").deployments[0]
    assert (d.provider.name, d.model, d.id) == (
        "anthropic",
        "claude-haiku-4-5",
        "anthropic/claude-haiku-4-5",
    )
    d = config.resolve("echo/gpt-4o").deployments[0]
    assert d.provider.kind == "echo" and d.price == FREE
    # A slash that names no provider is part of the model name.
    d = config.resolve("meta-llama/llama-3.1-8b-instruct").deployments[0]
    assert (d.provider.name, d.model, d.context_limit) == (
        "openai",
        "meta-llama/llama-3.1-8b-instruct",
        131_072,
    )
    assert not d.price.priced


def test_keys_are_never_held_in_the_config() -> None:
    config = load_proxy_config(None, KEYS)
    config.resolve("gpt-4o")
    text = repr(config) + json.dumps(config.to_dict()) + repr(config.router().plan("gpt-4o"))
    assert SECRET not in text
    assert config.providers["openai"].api_key(KEYS) == SECRET  # resolved when needed


def test_pass_through_of_an_unknown_model_is_conservative_and_unpriced() -> None:
    config = load_proxy_config(None, {"OPENAI_API_KEY": SECRET})
    d = config.resolve("brand-new-model").deployments[0]
    assert (d.context_limit, d.max_output) == (8192, 2048)
    assert not d.price.priced
    assert config.model_info("brand-new-model") == ModelLimits("brand-new-model", 8192, 2048, False)


def test_pass_through_aliases_are_memoized() -> None:
    config = load_proxy_config(None, KEYS)
    assert config.resolve("gpt-4o") is config.resolve("gpt-4o")


def test_an_empty_model_name_is_refused() -> None:
    with pytest.raises(ProxyError) as caught:
        load_proxy_config(None, {}).resolve("  ")
    assert (caught.value.status, caught.value.param) == (400, "model")


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[routing]\nstrategy = "least_cost"\n')
    config = load_proxy_config(None, {"CONTEXTGATE_CONFIG": str(path)})
    assert config.routing.strategy == "least_cost" and config.source == str(path)


def test_the_router_plans_pass_through_names() -> None:
    config = load_proxy_config(None, KEYS)
    router = config.router(rng=random.Random(1))
    decision = router.plan("claude-haiku-4-5", window_tokens=1_000)
    assert decision.ids == ["anthropic/claude-haiku-4-5"] and decision.passthrough


# ---- a full file ------------------------------------------------------------------

FULL = """
port = 9000

[providers.openai]
api_key_env = "OPENAI_API_KEY"

[providers.azure]
kind = "openai"
base_url = "https://example.openai.azure.com/openai/v1/"
api_key_env = "AZURE_KEY"

[providers.vllm]
kind = "openai"
base_url = "http://10.0.0.5:8000/v1"
local = true

[models.fast]
strategy = "weighted"
fallbacks = ["safe", "gpt-4o-mini"]

[[models.fast.deployments]]
provider = "openai"
model = "gpt-4.1-mini"
weight = 3

[[models.fast.deployments]]
provider = "azure"
model = "gpt-4.1-mini"
weight = 1.5
tier = 1
price = { input = 0.44, output = 1.76 }
timeout_s = 20
max_retries = 0

[[models.fast.deployments]]
provider = "openai"
model = "gpt-4.1-mini"

[models.safe]

[[models.safe.deployments]]
id = "safe-local"
provider = "vllm"
model = "qwen2.5-72b-instruct"
capabilities = ["stream"]

[[models.safe.deployments]]
provider = "vllm"
model = "my-finetune"
local = false

[routing]
strategy = "least_latency"
retries = 4
backoff_base_s = 0.25
backoff_cap_s = 5
max_retry_after_s = 12.5
timeout_s = 45
ewma_alpha = 0.5
latency_prior_s = 0.8
output_reserve = 512
unknown_context_limit = 16000
unknown_max_output = 1000

[routing.breaker]
failures = 3
cooldown_s = 15
probes = 2

[cache]
exact = true
semantic = true
similarity_threshold = 0.9
ttl_s = 600
semantic_max_temperature = 0.5

[context]
strategy = "summary"
budget = 6000
shares = { recent = 0.5, summary = 0.2, retrieved = 0.3 }

[prices."my-finetune"]
input = 0.5
output = 1.5
context_limit = 32768
max_output = 4096
capabilities = ["tools", "stream"]

[prices."gpt-4o-mini"]
input = 0.2
output = 0.8
"""

FULL_ENV = {"OPENAI_API_KEY": SECRET, "AZURE_KEY": "az"}


def test_a_full_file(tmp_path: Path) -> None:
    config = load(tmp_path, FULL, FULL_ENV)
    assert sorted(config.providers) == ["azure", "echo", "openai", "vllm"]
    azure = config.providers["azure"]
    assert (azure.kind, azure.base_url, azure.api_key_env, azure.local) == (
        "openai",
        "https://example.openai.azure.com/openai/v1",
        "AZURE_KEY",
        False,
    )
    assert config.providers["vllm"].api_key_env is None and config.providers["vllm"].local

    fast = config.aliases["fast"]
    assert fast.strategy == "weighted" and fast.fallbacks == ("safe", "gpt-4o-mini")
    one, two, three = fast.deployments
    assert one.id == "fast/openai/gpt-4.1-mini"
    assert three.id == "fast/openai/gpt-4.1-mini#2"  # the same model twice
    # From the price table and [routing]:
    assert (one.weight, one.tier, one.context_limit, one.max_output) == (3.0, 0, 1_047_576, 32_768)
    assert one.price == Price.of("0.40", "1.60", "0.10")
    assert (one.timeout_s, one.max_retries) == (45.0, 4)
    assert one.capabilities == frozenset({"tools", "json", "vision", "stream"})
    # Set in the file:
    assert (two.weight, two.tier, two.timeout_s, two.max_retries) == (1.5, 1, 20.0, 0)
    assert two.price == Price(Decimal("0.44"), Decimal("1.76"), Decimal("0.44"))

    local, finetune = config.aliases["safe"].deployments
    assert config.aliases["safe"].strategy == "least_latency"  # [routing] strategy
    assert (local.id, local.local, local.capabilities) == (
        "safe-local",
        True,
        frozenset({"stream"}),
    )
    assert (local.context_limit, local.price.priced) == (131_072, False)
    # [prices] adds a model the shipped table lacks...
    assert not finetune.local
    assert (finetune.context_limit, finetune.max_output) == (32_768, 4_096)
    assert finetune.price == Price.of("0.5", "1.5")
    assert finetune.capabilities == frozenset({"tools", "stream"})
    # ...and corrects one it has (limits kept from the shipped entry).
    mini = config.resolve("gpt-4o-mini").deployments[0]
    assert mini.price == Price.of("0.2", "0.8") and mini.context_limit == 128_000

    r = config.routing
    assert (r.strategy, r.ewma_alpha, r.latency_prior_s, r.output_reserve, r.timeout_s) == (
        "least_latency",
        0.5,
        0.8,
        512,
        45.0,
    )
    assert (r.retry.retries, r.retry.base_s, r.retry.cap_s, r.retry.max_retry_after_s) == (
        4,
        0.25,
        5.0,
        12.5,
    )
    assert (r.breaker.failures, r.breaker.cooldown_s, r.breaker.probes) == (3, 15.0, 2)
    unknown = config.resolve("never-heard-of-it").deployments[0]
    assert (unknown.context_limit, unknown.max_output) == (16_000, 1_000)

    assert config.cache == CacheConfig(
        exact=True, semantic=True, similarity_threshold=0.9, ttl_s=600,
        semantic_max_temperature=0.5,
    )  # fmt: skip
    assert config.context == ContextConfig(
        strategy="summary", budget=6000, shares=BudgetShares(0.5, 0.2, 0.3)
    )
    json.dumps(config.to_dict())  # JSON-able


def test_the_routers_plan_follows_the_fallbacks(tmp_path: Path) -> None:
    config = load(tmp_path, FULL, FULL_ENV)
    router = config.router(rng=random.Random(5))
    decision = router.plan("fast", window_tokens=20_000)
    assert decision.ids[2:] == [
        "fast/azure/gpt-4.1-mini",  # tier 1 of fast
        "safe-local",  # safe (least latency: neither observed, config order)
        # my-finetune (32k) fits 20k + 512
        "safe/vllm/my-finetune",
        "openai/gpt-4o-mini",  # the pass-through fallback
    ]
    assert set(decision.ids[:2]) == {"fast/openai/gpt-4.1-mini", "fast/openai/gpt-4.1-mini#2"}
    local = router.plan("fast", local_only=True)
    assert local.ids == ["safe-local"]
    assert {s.reason for s in local.skips} == {"not_local"}


def test_model_info_for_an_alias_is_the_smallest_of_its_deployments(tmp_path: Path) -> None:
    config = load(tmp_path, FULL, FULL_ENV)
    assert config.model_info("safe") == ModelLimits("safe", 32_768, 4_096, True)
    assert config.model_info("gpt-4.1") == ModelLimits("gpt-4.1", 1_047_576, 32_768, True)


def test_tables_may_live_inside_a_contextgate_table(tmp_path: Path) -> None:
    text = '[contextgate]\nport = 9000\n[contextgate.routing]\nstrategy = "least_cost"\n'
    config = load(tmp_path, text)
    assert config.routing.strategy == "least_cost"
    assert app_settings.load(write(tmp_path, text), {}).port == 9000


def test_passthrough_off_serves_only_the_aliases(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "[routing]\npassthrough = false\n[models.m]\n[[models.m.deployments]]\n"
        'provider = "openai"\nmodel = "gpt-4o"\n',
    )
    assert config.resolve("m").deployments[0].model == "gpt-4o"
    with pytest.raises(ProxyError) as caught:
        config.resolve("gpt-4o")
    assert (caught.value.status, caught.value.param) == (404, "model")
    assert "use one of: echo, m" in caught.value.message
    with pytest.raises(ValidationError) as invalid:
        config.model_info("gpt-4o")
    assert invalid.value.field == "model"


def test_a_configured_echo_alias_replaces_the_built_in_one(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[models.echo]\n[[models.echo.deployments]]\nprovider = "openai"\nmodel = "gpt-4o"\n',
    )
    assert config.resolve("echo").deployments[0].provider.name == "openai"


def test_the_default_provider_may_be_chosen(tmp_path: Path) -> None:
    config = load(tmp_path, '[routing]\ndefault_provider = "echo"\n')
    assert config.resolve("gpt-4o").deployments[0].provider.kind == "echo"
    assert config.resolve("claude-haiku-4-5").deployments[0].provider.name == "anthropic"


def test_a_configured_provider_is_the_default_when_no_key_is_set(tmp_path: Path) -> None:
    config = load(
        tmp_path, '[providers.vllm]\nkind = "openai"\nbase_url = "http://h:1/v1"\n', env={}
    )
    assert config.default_provider == "vllm"


# ---- validation -------------------------------------------------------------------

DEPLOYMENT = '[models.fast]\n[[models.fast.deployments]]\nprovider = "openai"\nmodel = "gpt-4o"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[models.fast]\n[[models.fast.deployments]]\nprovider = "opnai"\nmodel = "gpt-4o"\n',
            "models.fast.deployments[0].provider 'opnai' is not a provider: define "
            "[providers.opnai]",
        ),
        (
            '[models.fast]\n[[models.fast.deployments]]\nprovider = "openai"\n',
            "models.fast.deployments[0].model is required",
        ),
        (DEPLOYMENT + "wieght = 2\n", "unknown key 'models.fast.deployments[0].wieght'"),
        (DEPLOYMENT + "weight = 0\n", "models.fast.deployments[0].weight must be a positive"),
        (DEPLOYMENT + 'weight = "heavy"\n', "weight must be a positive number, got 'heavy'"),
        (DEPLOYMENT + "tier = -1\n", "models.fast.deployments[0].tier must be an integer"),
        (DEPLOYMENT + "max_retries = 11\n", "max_retries must be an integer between 0 and 10"),
        (DEPLOYMENT + "timeout_s = 0\n", "timeout_s must be a positive number"),
        (DEPLOYMENT + "max_output = 128000\n", "max_output must be below context_limit (128000)"),
        (DEPLOYMENT + 'capabilities = ["tool"]\n', "unknown capabilities ['tool']"),
        (DEPLOYMENT + "price = { input = 1 }\n", "models.fast.deployments[0].price.output is"),
        (DEPLOYMENT + "price = { input = -1, output = 1 }\n", "price.input must be a price"),
        (DEPLOYMENT + "price = { input = 1, output = 1, cahced = 1 }\n", "price.cahced"),
        (DEPLOYMENT + "local = 1\n", "models.fast.deployments[0].local must be true or false"),
        (
            '[models.fast]\n[[models.fast.deployments]]\nprovider = "openai"\nmodel = "llama3"\n',
            "models.fast.deployments[0].context_limit is required: model 'llama3' is not in "
            "the price table",
        ),
        ('[models.fast]\nstrategy = "fastest"\n', "models.fast.strategy must be one of priority"),
        ("[models.fast]\n", "models.fast.deployments is required"),
        ("[models.fast]\ndeployments = []\n", "models.fast.deployments is required"),
        (DEPLOYMENT + '[models.fast2]\nfallbacks = "fast"\n', "fallbacks must be a list"),
        (
            '[models.fast]\nfallbacks = ["fast"]\n[[models.fast.deployments]]\n'
            'provider = "openai"\nmodel = "gpt-4o"\n',
            "models.fast.fallbacks must not name the alias itself",
        ),
        (
            '[models.fast]\nfallbacks = ["slwo"]\n[[models.fast.deployments]]\n'
            'provider = "openai"\nmodel = "gpt-4o"\n',
            "models.fast.fallbacks names 'slwo', which is not an alias",
        ),
        (
            DEPLOYMENT + '[models.other]\n[[models.other.deployments]]\nid = "fast/openai/gpt-4o"\n'
            'provider = "openai"\nmodel = "gpt-4o"\n',
            "id 'fast/openai/gpt-4o' is also used by models.fast",
        ),
        ('[providers.mine]\nbase_url = "http://h/v1"\n', "providers.mine.kind is required"),
        ('[providers.mine]\nkind = "gemini"\n', "providers.mine.kind must be one of openai"),
        ('[providers.openai]\napi_key = "sk-1"\n', "providers.openai.api_key is not read"),
        (
            '[providers.openai]\napi_key_env = "MISSING_KEY"\n',
            "providers.openai.api_key_env names MISSING_KEY, which is not set",
        ),
        ("[providers.openai]\n", "providers.openai.api_key_env is required for https://api"),
        (
            '[providers.mine]\nkind = "openai"\nbase_url = "ftp://x"\n',
            "providers.mine.base_url must be an http",
        ),
        ('[providers.mine]\nkind = "openai"\nbase_ur = "http://h"\n', "providers.mine.base_ur"),
        ("[routing]\nretries = -1\n", "routing.retries must be an integer between 0 and 10"),
        ('[routing]\nstrategy = "random"\n', "routing.strategy must be one of"),
        (
            "[routing]\nbackoff_base_s = 2\nbackoff_cap_s = 1\n",
            "routing.backoff_cap_s must be at least backoff_base_s",
        ),
        ("[routing]\newma_alpha = 1.5\n", "routing.ewma_alpha must be a positive number of at"),
        ('[routing]\ndefault_provider = "azure"\n', "routing.default_provider 'azure' is not"),
        ("[routing]\npassthrough = 1\n", "routing.passthrough must be true or false"),
        ("[routing]\nretry = 1\n", "unknown key 'routing.retry'"),
        ("[routing.breaker]\nfailures = 0\n", "routing.breaker.failures must be an integer"),
        ("[routing.breaker]\ncooldown_s = 0\n", "routing.breaker.cooldown_s must be a positive"),
        ("[routing.breaker]\nprobe = 1\n", "routing.breaker.probe"),
        (
            "[routing]\nunknown_context_limit = 100\nunknown_max_output = 100\n",
            "routing.unknown_max_output must be below unknown_context_limit",
        ),
        ("[cache]\nsimilarity_threshold = 1.5\n", "cache.similarity_threshold must be"),
        ("[cache]\nttl_s = 0\n", "cache.ttl_s must be an integer of at least 1"),
        ('[cache]\nsemantic = "yes"\n', "cache.semantic must be true or false"),
        ("[cache]\nsemantic_max_temperature = 3\n", "semantic_max_temperature must be a number"),
        ('[context]\nstrategy = "everything"\n', "context.strategy must be one of full"),
        ("[context]\nbudget = 0\n", "context.budget must be an integer of at least 1"),
        (
            "[context]\nshares = { recent = 0.6, summary = 0.3, retrieved = 0.3 }\n",
            "context.shares: shares must add up to at most 1",
        ),
        ('[prices."new-model"]\ninput = 1\noutput = 2\n', "prices.new-model.context_limit is"),
        ('[prices."new-model"]\ninput = 1\ncontext_limit = 1000\n', "prices.new-model.output"),
        ('[prices."gpt-4o"]\nmax_output = 200000\n', "prices.gpt-4o.max_output must be below"),
        ('routing = "fast"\n', "routing must be a table"),
        ("[routing]\n[contextgate.routing]\n", "[routing] appears both at the top level"),
        ("[routing\n", "is not valid TOML"),
    ],
)
def test_errors_name_the_key_and_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(tmp_path, text)
    assert message in str(caught.value)
    assert str(caught.value).startswith((str(tmp_path), "config file"))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"config file .*nope\.toml does not exist"):
        load_proxy_config(tmp_path / "nope.toml", {})


# ---- the shipped price table and the example file -----------------------------------


def test_the_shipped_price_table_parses() -> None:
    table = load_price_table()
    assert table.compiled is not None and table.compiled >= "2026-01-01"
    assert len(table) >= 30
    for card in table.cards():
        assert 0 < card.max_output < card.context_limit, card.name
        p = card.price
        if p.priced:
            assert p.cached_per_mtok <= p.input_per_mtok, card.name
            assert p.input_per_mtok >= 0 and p.output_per_mtok >= p.input_per_mtok, card.name
    raw = tomllib.loads(shipped_price_table_text())
    assert raw["currency"] == "USD"


@pytest.mark.parametrize(
    "name",
    [
        "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5", "o1",
        "o3", "o3-mini", "o4-mini", "claude-3-5-haiku", "claude-haiku-4-5", "claude-sonnet-4",
        "claude-sonnet-4-5", "claude-opus-4", "claude-opus-4-1", "claude-3-7-sonnet",
    ],
)  # fmt: skip
def test_the_shipped_table_prices_the_common_models(name: str) -> None:
    card = load_price_table().lookup(name)
    assert card.known and card.price.priced and card.price.output_per_mtok > 0


def test_the_shipped_table_has_exact_known_prices() -> None:
    table = load_price_table()
    assert table.lookup("gpt-4o").price == Price.of("2.50", "10.00", "1.25")
    assert table.lookup("claude-sonnet-4-5-20250929").price == Price.of("3.00", "15.00", "0.30")
    assert table.lookup("echo").price == FREE
    usage = Usage(input_tokens=10_000, output_tokens=1_000, cached_tokens=4_000)
    assert cost(usage, table.lookup("gpt-4o-mini").price) == Decimal("0.0018")


def test_the_shipped_table_knows_every_model_the_old_catalog_knew() -> None:
    table = load_price_table()
    for name, info in CATALOG.items():
        card = table.lookup(name)
        assert card.known, name
        assert card.context_limit == info.context_limit, name


def test_the_unknown_model_defaults_come_from_the_table() -> None:
    card = load_price_table().lookup("mystery")
    assert (card.known, card.context_limit, card.max_output) == (False, 8192, 2048)


def test_a_price_table_must_say_when_it_was_compiled() -> None:
    with pytest.raises(SettingsError, match="compiled must be the date"):
        load_price_table('compiled = "recently"\n')


def test_the_example_file_loads_for_settings_and_for_the_proxy() -> None:
    settings = app_settings.load(EXAMPLE, {})
    assert settings.port == 8080
    config = load_proxy_config(EXAMPLE, KEYS)
    assert set(config.model_names()) == {"smart", "cheap", "bulk", "private", "echo"}
    router = config.router(rng=random.Random(0))
    assert router.plan("smart").ids == [
        "smart/openai/gpt-4.1",
        "smart/anthropic/claude-sonnet-4-5",
        "cheap/openai/gpt-4.1-mini",
        "cheap/openai-eu",
    ] or router.plan("smart").ids[2:] == ["cheap/openai-eu", "cheap/openai/gpt-4.1-mini"]
    assert router.plan("private", local_only=True).ids == [
        "private/ollama/qwen2.5-72b-instruct",
        "private/echo/echo",
    ]
    assert router.plan("bulk", window_tokens=1_000).ids[0] == "bulk/ollama/llama3.1:8b"


def test_the_example_file_needs_the_keys_it_names() -> None:
    with pytest.raises(SettingsError, match=r"providers\.openai\.api_key_env names OPENAI_API_KEY"):
        load_proxy_config(EXAMPLE, {})
