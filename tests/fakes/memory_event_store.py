"""An in-memory `domain.ports.EventStore` for unit tests and the contract suite.

It follows adapters/postgres/event_store.py rule for rule: expected versions, idempotency
keys scoped per tenant (a retry returns the first result, a different request raises),
the per-stream sha256 chain built with domain.hashing, and reads of the whole log in
(transaction_id, global_position) order. Each append is one "transaction" with its own,
increasing id; appends are serialized by an asyncio.Lock, so every one is committed by the
time anyone can read it and `read_all` never has to hold anything back.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.errors import (
    IdempotencyKeyReused,
    StreamClosed,
    StreamNotFound,
    ValidationError,
    WrongExpectedVersion,
)
from domain.events import AppendResult, Checkpoint, NewEvent, RecordedEvent
from domain.hashing import GENESIS_HASH, event_hash, fingerprint, normalize_json

MAX_KEY_LENGTH = 200

StreamKey = tuple[str, str]  # (tenant_id, stream_id)


@dataclass(frozen=True)
class _StoredKey:
    stream_id: str
    fingerprint: bytes
    result: AppendResult


def _copy_event(event: RecordedEvent) -> RecordedEvent:
    """A copy whose dicts the caller may change without touching the log."""
    return dataclasses.replace(
        event, data=copy.deepcopy(event.data), metadata=copy.deepcopy(event.metadata)
    )


def _copy_result(result: AppendResult, *, replayed: bool) -> AppendResult:
    return dataclasses.replace(
        result, events=tuple(_copy_event(e) for e in result.events), replayed=replayed
    )


class InMemoryEventStore:
    """domain.ports.EventStore in a Python list; not shared between processes."""

    def __init__(self, *, first_transaction_id: int = 1000) -> None:
        self._lock = asyncio.Lock()
        self._log: list[RecordedEvent] = []
        self._streams: dict[StreamKey, list[RecordedEvent]] = {}
        self._keys: dict[tuple[str, str], _StoredKey] = {}  # (tenant_id, key)
        self._event_ids: set[tuple[str, uuid.UUID]] = set()
        self._next_transaction_id = first_transaction_id
        self._next_position = 1
        self._closed: set[StreamKey] = set()

    async def append(
        self,
        tenant_id: str,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
        must_exist: bool = False,
        close: bool = False,
        recorded_at: datetime | None = None,
    ) -> AppendResult:
        if not events:
            raise ValidationError("an append needs at least one event", "events")
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
            raise ValidationError(
                f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters", "Idempotency-Key"
            )
        # Validate (and normalize) everything before touching any state.
        normalized = [
            (normalize_json(e.data, "$.data"), normalize_json(e.metadata, "$.metadata"))
            for e in events
        ]
        fp = (
            fingerprint(
                stream_id,
                [(e.type, e.schema_version, n[0]) for e, n in zip(events, normalized, strict=True)],
            )
            if idempotency_key is not None
            else b""
        )
        async with self._lock:
            if must_exist and not self._streams.get((tenant_id, stream_id)):
                raise StreamNotFound(f"stream {stream_id!r} does not exist")
            if idempotency_key is not None:
                stored = self._keys.get((tenant_id, idempotency_key))
                if stored is not None:
                    if stored.stream_id != stream_id or stored.fingerprint != fp:
                        raise IdempotencyKeyReused(
                            f"Idempotency-Key {idempotency_key!r} was already used for a "
                            "different request; use a new key for a new request"
                        )
                    return _copy_result(stored.result, replayed=True)

            stream = self._streams.get((tenant_id, stream_id), [])
            version = len(stream)
            if expected_version is not None and expected_version != version:
                raise WrongExpectedVersion(stream_id, expected_version, version)
            if (tenant_id, stream_id) in self._closed:
                raise StreamClosed(f"stream {stream_id!r} is closed")
            if close:
                self._closed.add((tenant_id, stream_id))

            now = recorded_at or datetime.now(UTC)
            transaction_id = self._next_transaction_id
            prev_hash = stream[-1].hash if stream else GENESIS_HASH
            written: list[RecordedEvent] = []
            for offset, (event, (data, metadata)) in enumerate(
                zip(events, normalized, strict=True), start=1
            ):
                v = version + offset
                h = event_hash(
                    prev_hash,
                    event_id=event.event_id,
                    tenant_id=tenant_id,
                    stream_id=stream_id,
                    stream_version=v,
                    type=event.type,
                    schema_version=event.schema_version,
                    data=data,
                    metadata=metadata,
                    recorded_at=now,
                )
                written.append(
                    RecordedEvent(
                        global_position=self._next_position + offset - 1,
                        transaction_id=transaction_id,
                        event_id=event.event_id,
                        tenant_id=tenant_id,
                        stream_id=stream_id,
                        stream_version=v,
                        type=event.type,
                        schema_version=event.schema_version,
                        data=data,
                        metadata=metadata,
                        recorded_at=now,
                        prev_hash=prev_hash,
                        hash=h,
                    )
                )
                prev_hash = h
            ids = {(tenant_id, e.event_id) for e in events}
            if len(ids) != len(events) or ids & self._event_ids:
                # PostgreSQL's UNIQUE (tenant_id, event_id) refuses these as well.
                raise ValueError("an event id is repeated or already stored for this tenant")

            # Commit: nothing above has changed any state.
            self._next_transaction_id += 1
            self._next_position += len(written)
            self._streams[(tenant_id, stream_id)] = [*stream, *written]
            self._log.extend(written)
            self._event_ids |= ids
            result = AppendResult(
                tenant_id, stream_id, version + 1, version + len(written), tuple(written)
            )
            if idempotency_key is not None:
                self._keys[(tenant_id, idempotency_key)] = _StoredKey(stream_id, fp, result)
            return _copy_result(result, replayed=False)

    async def read_stream(
        self, tenant_id: str, stream_id: str, *, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        stream = self._streams.get((tenant_id, stream_id), [])
        return [_copy_event(e) for e in stream[max(after_version, 0) :][:limit]]

    async def read_all(
        self, after: Checkpoint, *, limit: int = 1000, tenant_id: str | None = None
    ) -> list[RecordedEvent]:
        out: list[RecordedEvent] = []
        for event in self._log:  # already in (transaction_id, global_position) order
            if Checkpoint(event.transaction_id, event.global_position) <= after:
                continue
            if tenant_id is not None and event.tenant_id != tenant_id:
                continue
            out.append(_copy_event(event))
            if len(out) >= limit:
                break
        return out

    async def stream_version(self, tenant_id: str, stream_id: str) -> int:
        return len(self._streams.get((tenant_id, stream_id), []))
