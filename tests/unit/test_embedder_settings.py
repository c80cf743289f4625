"""Which embedding model copies `serve` composes, from its settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.embedder import FallbackEmbedder
from adapters.onnx_embedder import OnnxEmbedder
from app import embedders
from app.embedders import query_threads
from app.settings import SettingsError, load


def _onnx(model: FallbackEmbedder) -> OnnxEmbedder | None:
    first = model.choices[0]
    return first if isinstance(first, OnnxEmbedder) else None


def test_queries_run_on_int8_and_batches_on_fp32_by_default(tmp_path: Path) -> None:
    settings = load(env={"CONTEXTGATE_DATA_DIR": str(tmp_path)})
    query, batch = embedders.query_embedder(settings), embedders.model(settings)
    assert (q := _onnx(query)) is not None and q.int8 and q.threads == 1
    assert (b := _onnx(batch)) is not None and not b.int8
    assert q.cache_dir == b.cache_dir == tmp_path / "models"


@pytest.mark.parametrize(
    ("env", "query_int8", "batch_int8"),
    [
        ({"CONTEXTGATE_QUERY_INT8": "false"}, False, False),
        ({"CONTEXTGATE_QUERY_INT8": "0", "CONTEXTGATE_EMBEDDER_RUNTIME": "onnx-int8"}, True, True),
        ({"CONTEXTGATE_EMBEDDER_RUNTIME": "onnx-int8"}, True, True),
    ],
)
def test_the_settings_choose_int8_per_copy(
    tmp_path: Path, env: dict[str, str], query_int8: bool, batch_int8: bool
) -> None:
    settings = load(env={"CONTEXTGATE_DATA_DIR": str(tmp_path), **env})
    q, b = _onnx(embedders.query_embedder(settings)), _onnx(embedders.model(settings))
    assert q is not None and b is not None
    assert (q.int8, b.int8) == (query_int8, batch_int8)


def test_torch_runtime_has_no_onnx_copy(tmp_path: Path) -> None:
    settings = load(env={"CONTEXTGATE_EMBEDDER_RUNTIME": "torch"})
    assert _onnx(embedders.query_embedder(settings)) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONTEXTGATE_EMBEDDER_RUNTIME": "int8"}, "one of onnx, onnx-int8, torch"),
        ({"CONTEXTGATE_QUERY_INT8": "maybe"}, "query_int8 must be true or false"),
        ({"CONTEXTGATE_EMBED_LINGER_MS": "-1"}, "embed_linger_ms must be between 0 and 10000"),
        ({"CONTEXTGATE_EMBED_LINGER_MS": "0.5"}, "embed_linger_ms"),
        ({"CONTEXTGATE_EMBED_YIELD_CALLS": "-1"}, r"embed_yield_calls must be 0 \(never wait\)"),
        ({"CONTEXTGATE_EMBED_YIELD_CALLS": "many"}, "embed_yield_calls must be an integer"),
        ({"CONTEXTGATE_EMBED_MAX_DEFER_S": "0"}, "embed_max_defer_s must be between 1 and 3600"),
        ({"CONTEXTGATE_QUERY_THREADS": "0"}, "query_threads must be between 1 and 64"),
    ],
)
def test_bad_embedder_settings_say_what_to_write(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(env=env)


def test_the_worker_gives_way_at_twice_the_cpus_unless_told(tmp_path: Path) -> None:
    assert load(env={}).embed_yield_calls is None  # twice the CPUs (app/services/load.py)
    settings = load(
        env={"CONTEXTGATE_EMBED_YIELD_CALLS": "0", "CONTEXTGATE_EMBED_MAX_DEFER_S": "5"}
    )
    assert (settings.embed_yield_calls, settings.embed_max_defer_s) == (0, 5)


def test_query_threads_follow_the_cpus_unless_told() -> None:
    threads = query_threads(load(env={}))
    assert threads == min(4, os.cpu_count() or 1)
    assert query_threads(load(env={"CONTEXTGATE_QUERY_THREADS": "3"})) == 3
