"""The embedder `serve` runs: the same sentence-transformers model, exported once to ONNX
and run by ONNX Runtime.

One short query on one core of the 2-core development box (all-MiniLM-L6-v2, 21 word
pieces): torch 12.4 ms for the forward pass, ONNX Runtime 5.9 ms, the vectors equal to
within float rounding (cosine 0.9999998). The query vector is the one model call on the
request path, so this halves the largest share of the context endpoint's latency. The
embeddings worker's batches of short turns take ~25% less CPU than torch's, and torch is
not even imported once the export is cached (~300 MB less memory, seconds off start-up).

The export (~1 s, torch and the `onnx` package) happens once per model: the file is
cached under `cache_dir`, named after the model folder's files and the versions that
shape the graph, and written atomically so replicas starting together do not clash.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.embedder import DIMENSIONS, bundled_model_path

log = logging.getLogger("contextgate.embedder")

EXPORT_FORMAT = 1  # bump when the exported graph changes (inputs, pooling, opset)
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _model_key(model_dir: Path) -> str:
    """Names the export after what it was made from: the model's files (path, size,
    modification time) and the versions of the exporter."""
    # The installed version, not `torch.__version__`: importing torch (~4 s, ~300 MB)
    # only to name a file that is already there would undo what ONNX saves.
    h = hashlib.sha256(f"{EXPORT_FORMAT}:{OPSET}:{_torch_version()}".encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        h.update(f"{path.relative_to(model_dir)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _torch_version() -> str:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _max_seq_length(model_dir: Path) -> int:
    """sentence-transformers' truncation length for this model (256 for MiniLM)."""
    config = model_dir / "sentence_bert_config.json"
    if config.exists():
        value = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    return 512


def export(model_dir: Path, target: Path) -> None:
    """Export the transformer with sentence-transformers' mean pooling and normalization
    (the model's modules.json: Transformer, Pooling(mean), Normalize) as one graph."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    modules = [type(m).__name__ for m in st]
    pooling = getattr(st[1], "pooling_mode", None) if len(st) > 1 else None
    if modules != ["Transformer", "Pooling", "Normalize"] or pooling != "mean":
        raise ValueError(f"cannot export {model_dir}: modules {modules}, pooling {pooling}")
    transformer: Any = st[0].auto_model
    transformer.eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    sample = st.tokenizer(["an example sentence"], return_tensors="pt")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
        torch.onnx.export(
            MeanPooled(),
            tuple(sample[name] for name in INPUTS),
            str(partial),
            input_names=list(INPUTS),
            output_names=["embedding"],
            dynamic_axes={**axes, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(partial, target)


def quantize(source: Path, target: Path) -> None:
    """int8 weights (per output channel) and dynamically quantized activations for every
    MatMul: ~2.6x faster than fp32 for one short query on this kind of CPU (AVX-512
    VNNI), vectors at cosine ~0.993 to fp32's. With AVX2 alone (no VNNI) ~1.6x faster
    (7.5 against 11.5-13.4 ms on a 2-core EPYC) and less exact: a few texts near 0.97
    (the empty one 0.968). Weights as uint8 came closer there (0.980) but took 9.3 ms."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    partial = target.with_suffix(f".{os.getpid()}.part")
    root = logging.getLogger()
    quiet = _Quiet()  # the quantizer's advice to pre-process, logged on the root logger
    root.addFilter(quiet)
    try:
        quantize_dynamic(str(source), str(partial), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.removeFilter(quiet)
    os.replace(partial, target)


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


_EXPORTING = threading.Lock()


class OnnxEmbedder:
    """Synchronous, like SentenceTransformerEmbedder, with which it is interchangeable
    (see AsyncEmbedder): `load()` once, then `embed(texts)`, from several threads at
    once if need be: ONNX Runtime runs one session from many threads, and the fast
    tokenizer, which is not re-entrant ("Already borrowed"), takes its turn under a lock
    (~0.1 ms of a ~3 ms query)."""

    dimensions = DIMENSIONS

    def __init__(
        self, model: str | Path | None, cache_dir: Path, *, threads: int = 1, int8: bool = False
    ) -> None:
        self.model_dir = Path(model) if model is not None else bundled_model_path()
        self.cache_dir = cache_dir
        self.threads = threads
        self.int8 = int8
        self.load_seconds: float | None = None
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._tokenizing = threading.Lock()

    def load(self) -> None:
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            started = time.perf_counter()
            import onnxruntime
            from tokenizers import Tokenizer

            if not (self.model_dir / "tokenizer.json").exists():
                raise ValueError(f"{self.model_dir} has no tokenizer.json (a fast tokenizer)")
            target = self.cache_dir / f"{self.model_dir.name}-{_model_key(self.model_dir)}.onnx"
            with _EXPORTING:  # two embedders of one process loading at once export once
                if not target.exists():
                    log.info("exporting %s to ONNX in %s (once)", self.model_dir, target)
                    export(self.model_dir, target)
                if self.int8:
                    source, target = target, target.with_suffix(".int8.onnx")
                    if not target.exists():
                        log.info("quantizing %s to int8 in %s (once)", source, target)
                        quantize(source, target)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                str(target), options, providers=["CPUExecutionProvider"]
            )
            dims = session.get_outputs()[0].shape[-1]
            if dims != self.dimensions:
                raise ValueError(
                    f"embedding model {self.model_dir} has {dims} dimensions; the "
                    f"turn_embeddings table holds vector({self.dimensions})"
                )
            tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
            tokenizer.enable_truncation(_max_seq_length(self.model_dir))
            tokenizer.no_padding()  # padded per batch in embed(), to its longest text
            self._tokenizer = tokenizer
            self._session = session
            self.load_seconds = time.perf_counter() - started
            log.info(
                "ONNX query embedder ready in %.2f s (%s, %d threads)",
                self.load_seconds, target, self.threads,
            )  # fmt: skip

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        self.load()
        import numpy as np

        with self._tokenizing:
            encodings = self._tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        feed = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in INPUTS}
        for row, e in enumerate(encodings):
            n = len(e.ids)
            feed["input_ids"][row, :n] = e.ids
            feed["attention_mask"][row, :n] = e.attention_mask
            feed["token_type_ids"][row, :n] = e.type_ids
        vectors = self._session.run(None, feed)[0]
        result: list[list[float]] = vectors.tolist()
        return result
