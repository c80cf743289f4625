"""Use cases for auditors and operators: verify every hash chain, rebuild projections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from domain.events import RecordedEvent
from domain.hashing import GENESIS_HASH, chain_break


class HeadLike(Protocol):
    @property
    def version(self) -> int | None: ...

    @property
    def hash(self) -> bytes | None: ...


class AuditLog(Protocol):
    def streams_in_order(self) -> AsyncIterator[tuple[RecordedEvent, HeadLike]]: ...

    async def orphan_head(self) -> tuple[str, str, int] | None: ...


@dataclass(frozen=True)
class ChainBreak:
    tenant_id: str
    stream_id: str
    stream_version: int | None
    global_position: int | None
    event_id: str | None
    reason: str

    def describe(self) -> str:
        where = f"tenant {self.tenant_id!r} stream {self.stream_id!r}"
        if self.global_position is not None:
            where += (
                f" version {self.stream_version} (global position {self.global_position}, "
                f"event {self.event_id})"
            )
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class VerifyReport:
    streams: int
    events: int
    first_break: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.first_break is None


def _break(event: RecordedEvent, reason: str) -> ChainBreak:
    return ChainBreak(
        event.tenant_id,
        event.stream_id,
        event.stream_version,
        event.global_position,
        str(event.event_id),
        reason,
    )


async def verify_log(log: AuditLog) -> VerifyReport:
    """Recompute every stream's chain; stop at the first event that does not hold."""
    streams = events = 0
    key: tuple[str, str] | None = None
    prev_hash = GENESIS_HASH
    expected = 1
    last: tuple[RecordedEvent, HeadLike] | None = None

    def head_mismatch(event: RecordedEvent, head: HeadLike) -> ChainBreak | None:
        if head.version is None:
            return _break(event, "the stream has no head row")
        if head.version != event.stream_version or head.hash != event.hash:
            return _break(
                event,
                f"the stream head says version {head.version}, but the log ends at "
                f"version {event.stream_version} (events were removed or the head altered)",
            )
        return None

    async for event, head in log.streams_in_order():
        if key != (event.tenant_id, event.stream_id):
            if last is not None and (problem := head_mismatch(*last)):
                return VerifyReport(streams, events, problem)
            key = (event.tenant_id, event.stream_id)
            streams += 1
            prev_hash, expected = GENESIS_HASH, 1
        reason = chain_break(prev_hash, expected, event)
        if reason is not None:
            return VerifyReport(streams, events, _break(event, reason))
        events += 1
        prev_hash, expected = event.hash, expected + 1
        last = (event, head)
    if last is not None and (problem := head_mismatch(*last)):
        return VerifyReport(streams, events, problem)
    orphan = await log.orphan_head()
    if orphan is not None:
        tenant, stream, version = orphan
        reason = f"the stream head says version {version}, but the log holds no event of it"
        return VerifyReport(streams, events, ChainBreak(tenant, stream, None, None, None, reason))
    return VerifyReport(streams, events, None)
