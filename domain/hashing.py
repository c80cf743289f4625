"""The per-stream hash chain: sha256 over the previous hash and a canonical encoding.

The canonical encoding is JSON with sorted keys, no spaces, UTF-8, and integral floats
written as integers, because PostgreSQL's jsonb prints 1e20 as 100000000000000000000:
the bytes hashed at append must be the bytes `verify` rebuilds from what jsonb returns.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from domain.errors import ValidationError

GENESIS_HASH = bytes(32)


def normalize_json(value: Any, path: str = "$") -> Any:
    """Return `value` as jsonb will give it back; raise ValidationError for what jsonb refuses."""
    kind = type(value)
    if kind is str:
        return _checked_str(value, path)
    if value is None or kind is int or kind is bool:
        return value
    if kind is dict:
        # Events are mostly flat dicts of strings and numbers: those are checked here,
        # without a call and a path string a value (the path is spelled on error only).
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValidationError(f"{path} has a non-string key", path)
            _checked_str(k, path)
            t = type(v)
            if t is str:  # ASCII without NUL (checked in C) is all jsonb-safe
                plain = v.isascii() and "\x00" not in v
                out[k] = v if plain else _checked_str(v, f"{path}.{k}")
            elif v is None or t is int or t is bool:
                out[k] = v
            else:
                out[k] = normalize_json(v, f"{path}.{k}")
        return out
    if isinstance(value, str):  # a str subclass (json writes its text)
        return _checked_str(value, path)
    if isinstance(value, int):  # bools too
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValidationError(f"{path} is not a finite number", path)
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return normalize_json(dict(value), path)
    if isinstance(value, list | tuple):
        if all(type(v) is int for v in value):  # positions, counts: nothing to check
            return list(value)  # (not bools: type(True) is bool)
        return [normalize_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise ValidationError(f"{path} has a value of type {type(value).__name__}", path)


def _checked_str(value: str, path: str) -> str:
    if "\x00" in value:
        raise ValidationError(f"{path} contains a NUL character, which cannot be stored", path)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(f"{path} contains an unpaired surrogate", path) from None
    return value


# One encoder for every canonical encoding: json.dumps with these options built a new
# JSONEncoder a call. No circular check: what it encodes is a tree (normalize_json's
# output, or what jsonb gave back).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
    check_circular=False,
)  # fmt: skip


def canonical_json(value: Any) -> bytes:
    return _CANONICAL.encode(value).encode("utf-8")


def format_time(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


# A string as canonical JSON writes it. json.dumps(value, ensure_ascii=False) comes to
# this (C) function for a string, after building an encoder a call: called directly.
json_text: Callable[[str], str] = encode_basestring


def envelope(
    *,
    event_id: uuid.UUID,
    tenant_id: str,
    stream_id: str,
    type: str,
    schema_version: int,
    data: Any,
    metadata: Any,
    recorded_at: datetime,
) -> tuple[bytes, bytes]:
    """The canonical encoding of an event, cut around its stream version.

    `before + str(stream_version) + after` is exactly `canonical_json` of the event (keys
    sorted: data, event_id, metadata, recorded_at, schema_version, stream_id,
    stream_version, tenant_id, type). The cut lets PostgreSQL finish the chain under the
    stream lock, where the version is known, in the same call that appends.
    """
    return envelope_encoded(
        event_id=event_id,
        tenant_json=json_text(tenant_id),
        stream_json=json_text(stream_id),
        type_json=json_text(type),
        schema_version=schema_version,
        data_json=canonical_json(data).decode(),
        metadata_json=canonical_json(metadata).decode(),
        time_json=json_text(format_time(recorded_at)),
    )


def envelope_encoded(
    *,
    event_id: uuid.UUID,
    tenant_json: str,
    stream_json: str,
    type_json: str,
    schema_version: int,
    data_json: str,
    metadata_json: str,
    time_json: str,
) -> tuple[bytes, bytes]:
    """`envelope` from parts already encoded as canonical JSON (the append's fast path)."""
    before = (
        f'{{"data":{data_json},"event_id":"{event_id}","metadata":{metadata_json},'
        f'"recorded_at":{time_json},"schema_version":{int(schema_version)},'
        f'"stream_id":{stream_json},"stream_version":'
    )
    after = f',"tenant_id":{tenant_json},"type":{type_json}}}'
    return before.encode("utf-8"), after.encode("utf-8")


def chain_hash(prev_hash: bytes, before: bytes, stream_version: int, after: bytes) -> bytes:
    return hashlib.sha256(prev_hash + before + str(stream_version).encode() + after).digest()


def event_hash(
    prev_hash: bytes,
    *,
    event_id: uuid.UUID,
    tenant_id: str,
    stream_id: str,
    stream_version: int,
    type: str,
    schema_version: int,
    data: Any,
    metadata: Any,
    recorded_at: datetime,
) -> bytes:
    """sha256(prev_hash || canonical(event)). `data` and `metadata` must be normalized."""
    before, after = envelope(
        event_id=event_id,
        tenant_id=tenant_id,
        stream_id=stream_id,
        type=type,
        schema_version=schema_version,
        data=data,
        metadata=metadata,
        recorded_at=recorded_at,
    )
    return chain_hash(prev_hash, before, stream_version, after)


def fingerprint(stream_id: str, items: list[tuple[str, int, Any]]) -> bytes:
    """What an idempotent append is about: the stream and each event's type, version, data."""
    return hashlib.sha256(canonical_json([stream_id, [list(i) for i in items]])).digest()


def chain_break(prev_hash: bytes, expected_version: int, event: Any) -> str | None:
    """Why `event` (a RecordedEvent) does not follow its predecessor, or None when it does."""
    if event.stream_version != expected_version:
        return (
            f"stream version {event.stream_version} where {expected_version} was expected "
            "(an event is missing or out of place)"
        )
    if event.prev_hash != prev_hash:
        return "prev_hash differs from the hash of the event before it"
    recomputed = event_hash(
        prev_hash,
        event_id=event.event_id,
        tenant_id=event.tenant_id,
        stream_id=event.stream_id,
        stream_version=event.stream_version,
        type=event.type,
        schema_version=event.schema_version,
        data=normalize_json(event.data),
        metadata=normalize_json(event.metadata),
        recorded_at=event.recorded_at,
    )
    if recomputed != event.hash:
        return "hash differs from the sha256 of the event's contents (the event was altered)"
    return None
