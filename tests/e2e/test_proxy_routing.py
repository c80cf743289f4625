"""Routing through the real server process and a real TOML config, against the fake
upstream: streams that fail before or after their first delta, timeouts retried or
fallen back from, the weighted / least-cost / least-latency strategies, deployments
skipped for their context limit, and fallbacks across aliases. Each test checks what
the client got, what the fake received, and what the session's log recorded (the
answer's routing decision and attempts)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.conftest import Server, start_server, stop_server
from tests.e2e.proxy_helpers import events
from tests.fakes.fake_upstream import Behavior, FakeUpstream

LIMITS = "context_limit = 16000\nmax_output = 2048\n"


def deployment(alias: str, name: str, model: str, extra: str = "") -> str:
    """One [[models.ALIAS.deployments]] table of the fake provider, id `ALIAS/NAME`."""
    body = extra if "context_limit" in extra else LIMITS + extra
    return (
        f'[[models.{alias}.deployments]]\nid = "{alias}/{name}"\nprovider = "fake"\n'
        f'model = "{model}"\n{body}\n'
    )


CONFIG = (
    """
[providers.fake]
kind = "openai"
base_url = "{fake}/v1"
api_key_env = "FAKE_KEY"

[routing]
default_provider = "fake"
retries = 0
backoff_base_s = 0.05
backoff_cap_s = 0.1

[routing.breaker]
failures = 1000
cooldown_s = 1.0

[models.stream-500]
[models.stream-cut]
[models.stream-err]
[models.timeout-retry]
[models.timeout-fb]
[models.timeout-stall]
[models.midway-error]
[models.midway-cut]
[models.weighted]
strategy = "weighted"
[models.cheapest]
strategy = "least_cost"
[models.small-first]
[models.primary]
fallbacks = ["backup"]
[models.backup]
[models.timing-out-first]
strategy = "least_latency"
[models.fastest]
strategy = "least_latency"
"""
    # 1. a stream failing before its first delta: an HTTP 500; a connection dropped
    # after the role chunk (no text yet); an in-stream error event before any text.
    + deployment("stream-500", "broken", "s500-broken+fail-500")
    + deployment("stream-500", "good", "s500-good")
    + deployment("stream-cut", "broken", "scut-broken+cut-1")
    + deployment("stream-cut", "good", "scut-good")
    + deployment("stream-err", "broken", "serr-broken+stream-error-1")
    + deployment("stream-err", "good", "serr-good")
    # 2. timeouts: retried on the same deployment, or fallen back from.
    + deployment("timeout-retry", "only", "to-retry", "timeout_s = 0.4\nmax_retries = 1\n")
    + deployment("timeout-fb", "slow", "to-slow+slow-3000", "timeout_s = 0.4\n")
    + deployment("timeout-fb", "good", "to-good")
    + deployment("timeout-stall", "slow", "stall-slow+drip-1500", "timeout_s = 0.4\n")
    + deployment("timeout-stall", "good", "stall-good")
    # 3. a stream failing after its first delta: no fallback, the partial text is kept.
    + deployment("midway-error", "broken", "mid-broken+stream-error-4")
    + deployment("midway-error", "good", "mid-good")
    + deployment("midway-cut", "broken", "midcut-broken+cut-4")
    + deployment("midway-cut", "good", "midcut-good")
    # 4. strategies. The light one first: a priority order would always pick it.
    + deployment("weighted", "light", "w-light", "weight = 1\n")
    + deployment("weighted", "heavy", "w-heavy", "weight = 3\n")
    # The pricey one first: a priority order would pick it.
    + deployment("cheapest", "pricey", "c-pricey", "price = { input = 10, output = 30 }\n")
    + deployment("cheapest", "cheap", "c-cheap", "price = { input = 0.5, output = 1.5 }\n")
    + deployment("small-first", "tiny", "ctx-tiny", "context_limit = 600\nmax_output = 100\n")
    + deployment("small-first", "roomy", "ctx-roomy")
    + deployment("primary", "a", "pa+fail-500")
    + deployment("primary", "b", "pb+fail-503")
    + deployment("backup", "only", "backup-model")
    # 5. least latency: the slow one first (both unobserved: configuration order).
    + deployment("timing-out-first", "stalled", "tof-stalled+slow-3000", "timeout_s = 0.3\n")
    + deployment("timing-out-first", "ok", "tof-ok")
    + deployment("fastest", "slow", "lat-slow+slow-200")
    + deployment("fastest", "fast", "lat-fast")
)


@pytest.fixture(scope="module")
def proxy_server(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("proxy-routing")
    config = folder / "contextgate.toml"
    config.write_text(CONFIG.replace("{fake}", fake.base_url))
    srv = start_server(
        module_database_url,
        folder / "serve.log",
        CONTEXTGATE_CONFIG=str(config),
        FAKE_KEY="sk-fake-upstream",
    )
    yield srv
    stop_server(srv)


def sid() -> str:
    return f"route-{uuid.uuid4().hex[:10]}"


def sent(fake: FakeUpstream) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.path == "/v1/chat/completions"]


def sent_models(fake: FakeUpstream) -> list[str]:
    return [b["model"] for b in sent(fake)]


def attempts(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["deployment"], a["outcome"]) for a in answer["metadata"]["attempts"]]


async def the_answer(http: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    """The session's one AssistantMessage event."""
    answers = [e for e in await events(http, session_id) if e["type"] == "AssistantMessage"]
    assert len(answers) == 1, answers
    return answers[0]


async def read_stream(
    oa: openai.AsyncOpenAI, model: str, text: str, session_id: str
) -> tuple[str, str | None]:
    stream = await oa.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        stream=True,
        extra_headers={"X-Session-Id": session_id},
    )
    got, finish = "", None
    async for chunk in stream:
        if chunk.choices:
            got += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    return got, finish


# --- 1. a stream failing before its first delta falls back ------------------------------


@pytest.mark.parametrize(
    ("alias", "broken_model", "outcome"),
    [
        ("stream-500", "s500-broken+fail-500", "500"),  # the HTTP status of the stream
        ("stream-cut", "scut-broken+cut-1", "connect"),  # 200, role chunk, then dropped
        ("stream-err", "serr-broken+stream-error-1", "connect"),  # 200, then an error event
    ],
)
async def test_a_stream_failing_before_its_first_delta_falls_back(
    oa: openai.AsyncOpenAI,
    fake: FakeUpstream,
    http: httpx.AsyncClient,
    alias: str,
    broken_model: str,
    outcome: str,
) -> None:
    s = sid()
    got, finish = await read_stream(oa, alias, "stream me five words please", s)
    assert got == "Echo: stream me five words please"  # the second deployment's, whole
    assert finish == "stop"
    good_model = broken_model.split("-broken")[0] + "-good"
    assert sent_models(fake) == [broken_model, good_model]
    assert all(b["stream"] is True for b in sent(fake))
    answer = await the_answer(http, s)
    assert answer["data"]["content"] == got
    assert answer["data"]["finish_reason"] == "stop"
    assert answer["data"]["model"] == good_model
    assert attempts(answer) == [(f"{alias}/broken", outcome), (f"{alias}/good", "ok")]
    assert answer["metadata"]["deployment"] == f"{alias}/good"
    assert answer["metadata"]["route"]["plan"] == [f"{alias}/broken", f"{alias}/good"]


async def test_an_anthropic_stream_failing_before_its_first_delta_falls_back(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    """The Anthropic dialect starts its event sequence only once a deployment is
    committed to: the SDK sees one clean message, from the second deployment."""
    s = sid()
    async with ant.messages.stream(
        model="stream-cut",
        max_tokens=100,
        messages=[{"role": "user", "content": "stream me five words please"}],
        extra_headers={"X-Session-Id": s},
    ) as stream:
        got = "".join([text async for text in stream.text_stream])
        final = await stream.get_final_message()
    assert got == "Echo: stream me five words please"
    assert final.stop_reason == "end_turn" and final.model == "stream-cut"
    assert sent_models(fake) == ["scut-broken+cut-1", "scut-good"]
    answer = await the_answer(http, s)
    assert answer["data"]["content"] == got
    assert attempts(answer) == [("stream-cut/broken", "connect"), ("stream-cut/good", "ok")]


# --- 2. a timeout is retried, or fallen back from ---------------------------------------


async def test_a_timeout_is_retried_on_the_same_deployment(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    fake.enqueue(Behavior(delay=2.0, model="to-retry"))  # the first call only
    raw = await oa.chat.completions.with_raw_response.create(
        model="timeout-retry", messages=[{"role": "user", "content": "second time lucky"}]
    )
    assert raw.parse().choices[0].message.content == "Echo: second time lucky"
    assert sent_models(fake) == ["to-retry", "to-retry"]
    assert fake.pending == 0
    answer = await the_answer(http, raw.headers["x-session-id"])
    assert attempts(answer) == [("timeout-retry/only", "timeout"), ("timeout-retry/only", "ok")]
    timed_out = answer["metadata"]["attempts"][0]
    assert 400 <= timed_out["latency_ms"] < 1900  # given up at timeout_s, not at the answer
    assert "time" in timed_out["detail"]
    assert answer["metadata"]["deployment"] == "timeout-retry/only"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_timeout_falls_back_to_the_next_deployment(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient, stream: bool
) -> None:
    s = sid()
    text = "are you awake?"
    if stream:
        got, finish = await read_stream(oa, "timeout-fb", text, s)
        assert (got, finish) == ("Echo: are you awake?", "stop")
    else:
        answer_ = await oa.chat.completions.create(
            model="timeout-fb",
            messages=[{"role": "user", "content": text}],
            extra_headers={"X-Session-Id": s},
        )
        assert answer_.choices[0].message.content == "Echo: are you awake?"
    assert sent_models(fake) == ["to-slow+slow-3000", "to-good"]
    answer = await the_answer(http, s)
    assert answer["data"]["content"] == "Echo: are you awake?"
    assert attempts(answer) == [("timeout-fb/slow", "timeout"), ("timeout-fb/good", "ok")]
    assert 400 <= answer["metadata"]["attempts"][0]["latency_ms"] < 2900
    assert answer["metadata"]["deployment"] == "timeout-fb/good"


async def test_a_stream_stalling_before_its_first_text_times_out_and_falls_back(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    """The slow deployment answers 200 and its role chunk at once, then waits 1.5 s
    before each next event: its stream times out (0.4 s) before any text came."""
    s = sid()
    got, finish = await read_stream(oa, "timeout-stall", "still there?", s)
    assert (got, finish) == ("Echo: still there?", "stop")
    assert sent_models(fake) == ["stall-slow+drip-1500", "stall-good"]
    answer = await the_answer(http, s)
    assert answer["data"]["content"] == got
    assert attempts(answer) == [("timeout-stall/slow", "timeout"), ("timeout-stall/good", "ok")]
    stalled = answer["metadata"]["attempts"][0]
    assert 400 <= stalled["latency_ms"] < 1400
    assert "timed out" in stalled["detail"]
    assert answer["metadata"]["deployment"] == "timeout-stall/good"


# --- 3. a stream failing after its first delta keeps the partial answer ------------------


@pytest.mark.parametrize(
    ("alias", "broken_model", "says"),
    [
        ("midway-error", "mid-broken+stream-error-4", "stream failed"),
        ("midway-cut", "midcut-broken+cut-4", "broke mid-stream"),
    ],
)
async def test_a_stream_failing_after_its_first_delta_keeps_the_partial_text(
    oa: openai.AsyncOpenAI,
    fake: FakeUpstream,
    http: httpx.AsyncClient,
    alias: str,
    broken_model: str,
    says: str,
) -> None:
    s = sid()
    stream = await oa.chat.completions.create(
        model=alias,
        messages=[{"role": "user", "content": "one two three four five six"}],
        stream=True,
        extra_headers={"X-Session-Id": s},
    )
    got = ""
    with pytest.raises(openai.APIError) as failed:
        async for chunk in stream:
            if chunk.choices:
                got += chunk.choices[0].delta.content or ""
    assert says in str(failed.value.message)
    # The fake sent the role chunk and two words, then failed: committed, no fallback.
    assert got == "Echo: one two "
    assert sent_models(fake) == [broken_model]
    answer = await the_answer(http, s)
    assert answer["data"]["content"] == got
    assert answer["data"]["finish_reason"] == "error"
    assert attempts(answer) == [(f"{alias}/broken", "ok"), (f"{alias}/broken", "stream_error")]
    assert says in answer["metadata"]["attempts"][1]["detail"]
    assert answer["metadata"]["deployment"] == f"{alias}/broken"


async def test_an_anthropic_stream_failing_after_its_first_delta_keeps_the_partial_text(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    got = ""
    with pytest.raises(anthropic.APIStatusError) as failed:
        async with ant.messages.stream(
            model="midway-error",
            max_tokens=100,
            messages=[{"role": "user", "content": "one two three four five six"}],
            extra_headers={"X-Session-Id": s},
        ) as stream:
            async for text in stream.text_stream:
                got += text
    assert "stream failed" in str(failed.value.message)
    assert got == "Echo: one two "
    assert sent_models(fake) == ["mid-broken+stream-error-4"]
    answer = await the_answer(http, s)
    assert answer["data"]["content"] == got
    assert answer["data"]["finish_reason"] == "error"
    assert attempts(answer) == [
        ("midway-error/broken", "ok"),
        ("midway-error/broken", "stream_error"),
    ]


# --- 4. strategies, skips and fallbacks across aliases -----------------------------------


async def test_weighted_routing_follows_the_weights(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    async def one(n: int) -> str:
        raw = await oa.chat.completions.with_raw_response.create(
            model="weighted", messages=[{"role": "user", "content": f"call {n}"}]
        )
        assert raw.parse().choices[0].message.content == f"Echo: call {n}"
        return raw.headers["x-session-id"]

    sessions: list[str] = []
    for batch in range(6):
        sessions += await asyncio.gather(*(one(batch * 10 + i) for i in range(10)))
    called = Counter(sent_models(fake))
    assert sum(called.values()) == 60  # one call each, no failure
    # Weights 1 : 3 over 60 calls. Light never drawn: 0.75^60 ~ 3e-8; heavy not ahead
    # (at most 30 of 60): ~3e-5. A priority order (light first) or a uniform draw fails.
    assert called["w-light"] >= 1 and called["w-heavy"] > called["w-light"]
    answers = await asyncio.gather(*(the_answer(http, s) for s in sessions))
    recorded = Counter(a["metadata"]["deployment"] for a in answers)
    assert recorded == {"weighted/light": called["w-light"], "weighted/heavy": called["w-heavy"]}
    for a in answers:
        route = a["metadata"]["route"]
        assert route["strategy"] == "weighted"
        # The one drawn first, then the other (a fallback in configuration order).
        assert route["plan"][0] == a["metadata"]["deployment"]
        assert sorted(route["plan"]) == ["weighted/heavy", "weighted/light"]


async def test_least_cost_calls_the_cheaper_deployment_first(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    for text in ("what is cheapest?", "and again"):
        raw = await oa.chat.completions.with_raw_response.create(
            model="cheapest", messages=[{"role": "user", "content": text}]
        )
        assert raw.parse().choices[0].message.content == f"Echo: {text}"
        answer = await the_answer(http, raw.headers["x-session-id"])
        assert answer["metadata"]["route"]["plan"] == ["cheapest/cheap", "cheapest/pricey"]
        assert attempts(answer) == [("cheapest/cheap", "ok")]
        usage = answer["data"]["usage"]
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
        # Billed at the cheap deployment's price (USD per million tokens).
        expected = (usage["input_tokens"] * 0.5 + usage["output_tokens"] * 1.5) / 1e6
        assert answer["data"]["cost"] == pytest.approx(expected, rel=1e-9)
    assert sent_models(fake) == ["c-cheap", "c-cheap"]


async def test_a_deployment_whose_context_is_too_small_is_skipped(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    short = await oa.chat.completions.with_raw_response.create(
        model="small-first", messages=[{"role": "user", "content": "short one"}]
    )
    assert short.parse().choices[0].message.content == "Echo: short one"
    assert sent_models(fake) == ["ctx-tiny"]  # it does serve what fits
    fake.clear()
    long_text = " ".join(f"word{i}" for i in range(800))
    raw = await oa.chat.completions.with_raw_response.create(
        model="small-first", messages=[{"role": "user", "content": long_text}], max_tokens=50
    )
    cut = raw.parse().choices[0]  # the fake stops at max_tokens words
    assert cut.message.content == "Echo: " + " ".join(f"word{i}" for i in range(49))
    assert cut.finish_reason == "length"
    assert sent_models(fake) == ["ctx-roomy"]  # the tiny one was never called
    answer = await the_answer(http, raw.headers["x-session-id"])
    route = answer["metadata"]["route"]
    assert route["plan"] == ["small-first/roomy"]
    assert [(s["deployment"], s["reason"]) for s in route["skips"]] == [
        ("small-first/tiny", "context_limit")
    ]
    assert "context limit of 600" in route["skips"][0]["detail"]
    assert route["window_tokens"] + 50 > 600
    assert attempts(answer) == [("small-first/roomy", "ok")]


async def test_an_alias_whose_deployments_all_fail_falls_back_to_its_fallback_alias(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    answer_ = await oa.chat.completions.create(
        model="primary",
        messages=[{"role": "user", "content": "anyone there?"}],
        extra_headers={"X-Session-Id": s},
    )
    assert answer_.choices[0].message.content == "Echo: anyone there?"
    assert answer_.model == "primary"  # the name the caller used
    assert sent_models(fake) == ["pa+fail-500", "pb+fail-503", "backup-model"]
    answer = await the_answer(http, s)
    assert answer["data"]["content"] == "Echo: anyone there?"
    assert answer["data"]["model"] == "backup-model"
    assert answer["metadata"]["route"]["plan"] == ["primary/a", "primary/b", "backup/only"]
    assert attempts(answer) == [
        ("primary/a", "500"),
        ("primary/b", "503"),
        ("backup/only", "ok"),
    ]
    assert answer["metadata"]["deployment"] == "backup/only"
    assert answer["metadata"]["alias"] == "primary"


# --- 5. least latency (EWMA) --------------------------------------------------------------


async def test_least_latency_prefers_the_faster_deployment_and_adapts(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    """The EWMA (alpha 0.3) of the slow deployment is ~0.2 s; the fast one's a few ms.
    One answer of the fast one taking 1 s lifts its EWMA to ~0.3 s: the slow one leads.
    Deterministic: the margins are tens of milliseconds at least."""
    slow, fast = "fastest/slow", "fastest/fast"

    async def call(n: int) -> dict[str, Any]:
        raw = await oa.chat.completions.with_raw_response.create(
            model="fastest", messages=[{"role": "user", "content": f"ping {n}"}]
        )
        assert raw.parse().choices[0].message.content == f"Echo: ping {n}"
        return await the_answer(http, raw.headers["x-session-id"])

    plans, used = [], []
    for n in range(4):
        if n == 3:
            fake.enqueue(Behavior(delay=1.0, model="lat-fast"))  # the fast one slows once
        answer = await call(n)
        plans.append(answer["metadata"]["route"]["plan"])
        used.append(answer["metadata"]["deployment"])
    answer = await call(4)
    plans.append(answer["metadata"]["route"]["plan"])
    used.append(answer["metadata"]["deployment"])
    assert plans == [
        [slow, fast],  # neither observed: configuration order
        [fast, slow],  # the unobserved one is measured next
        [fast, slow],  # ~0.005 s against ~0.2 s
        [fast, slow],
        [slow, fast],  # the fast one took 1 s: its EWMA is now above the slow one's
    ]
    assert used == [slow, fast, fast, fast, slow]
    assert sent_models(fake) == [
        "lat-slow+slow-200",
        "lat-fast",
        "lat-fast",
        "lat-fast",
        "lat-slow+slow-200",
    ]


async def test_least_latency_moves_a_deployment_that_timed_out_behind_the_others(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    """A deployment whose first call timed out is at least that slow: it is not kept
    first as "never observed", which would cost every call its timeout (until its
    circuit opens)."""
    stalled, ok = "timing-out-first/stalled", "timing-out-first/ok"
    recorded = []
    for n in range(3):
        raw = await oa.chat.completions.with_raw_response.create(
            model="timing-out-first", messages=[{"role": "user", "content": f"try {n}"}]
        )
        assert raw.parse().choices[0].message.content == f"Echo: try {n}"
        recorded.append(await the_answer(http, raw.headers["x-session-id"]))
    assert [a["metadata"]["route"]["plan"] for a in recorded] == [
        [stalled, ok],
        [ok, stalled],
        [ok, stalled],
    ]
    assert [attempts(a) for a in recorded] == [
        [(stalled, "timeout"), (ok, "ok")],
        [(ok, "ok")],
        [(ok, "ok")],
    ]
    assert sent_models(fake) == ["tof-stalled+slow-3000", "tof-ok", "tof-ok", "tof-ok"]
