"""Which embedding model copies `serve` composes, from its settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.embedder import FallbackEmbedder
from adapters.onnx_embedder import OnnxEmbedder
from app import embedders
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
    ],
)
def test_bad_embedder_settings_say_what_to_write(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(env=env)
